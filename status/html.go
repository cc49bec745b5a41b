package status

import (
	"html/template"
	"strconv"
	"time"
)

// page is the HTML view of a Document: backends grouped by upstream label, values pre-formatted.
type page struct {
	Doc       Document
	Generated string
	Refresh   int // seconds; 0 for no meta refresh
	Used      int
	Groups    []group
	Workers   []workerRow
}

type group struct {
	Upstream string
	Rows     []row
}

type row struct {
	Backend
	Class     string // CSS classes: the state, and the admin state when not ready
	Owner     string
	Stale     bool // owner is not a ready worker of the current generation
	Result    string
	Detail    string // shown beside the result: the failure's detail
	OldDetail string // the last failure's detail while the last check passed
	RTT       string
	Checked   string
	Since     string
	Interval  string
	Marks     []bool // history, oldest first, true for a pass
}

type workerRow struct {
	Worker
	Heartbeat string
	Started   string
}

func newPage(d Document, now time.Time, refresh int) page {
	p := page{
		Doc:       d,
		Generated: now.UTC().Format("2006-01-02 15:04:05 UTC"),
		Refresh:   refresh,
		Used:      len(d.Backends),
	}
	live := map[[2]uint64]bool{} // (pid, serial) of ready workers of the current generation
	for _, w := range d.Workers {
		if w.State == "ready" && w.Generation == d.Generation {
			live[[2]uint64{uint64(w.Pid), uint64(w.Serial)}] = true
		}
		p.Workers = append(p.Workers, workerRow{Worker: w, Heartbeat: ago(now, w.HeartbeatUnixMs), Started: ago(now, w.StartedUnixMs)})
	}
	for _, b := range d.Backends {
		if len(p.Groups) == 0 || p.Groups[len(p.Groups)-1].Upstream != b.Upstream {
			p.Groups = append(p.Groups, group{Upstream: b.Upstream})
		}
		g := &p.Groups[len(p.Groups)-1]
		g.Rows = append(g.Rows, newRow(b, now, live))
	}
	return p
}

func newRow(b Backend, now time.Time, live map[[2]uint64]bool) row {
	r := row{Backend: b, Class: b.State, Owner: "-", Result: "-", RTT: "-", Checked: "never", Since: ago(now, b.SinceUnixMs)}
	if b.Admin != "ready" {
		r.Class += " " + b.Admin
	}
	if b.OwnerPid != 0 {
		r.Owner = strconv.Itoa(b.OwnerPid)
		r.Stale = !live[[2]uint64{uint64(b.OwnerPid), uint64(b.OwnerSerial)}]
	}
	if b.Checks > 0 {
		r.Result = b.LastResult
		if b.LastStatus != 0 {
			r.Result += " " + strconv.Itoa(b.LastStatus)
		}
		r.RTT = RTT(b.LastRTTUs)
		r.Checked = ago(now, b.LastCheckUnixMs)
		if b.LastOK {
			r.OldDetail = b.LastDetail
		} else {
			r.Detail = b.LastDetail
		}
	}
	if b.IntervalMs > 0 {
		r.Interval = (time.Duration(b.IntervalMs) * time.Millisecond).String()
	}
	r.Marks = make([]bool, len(b.History))
	for i := range b.History {
		r.Marks[i] = b.History[i] == '+'
	}
	return r
}

// ago formats a Unix millisecond time as "3s ago", or "never" for 0.
func ago(now time.Time, ms int64) string {
	if ms == 0 {
		return "never"
	}
	return AgeMs(now, ms) + " ago"
}

var pageTmpl = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{{if .Refresh}}<meta http-equiv="refresh" content="{{.Refresh}}">
{{end -}}
<title>hcproxy status</title>
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222}
h1{font-size:18px;margin:0 0 .3em}h2{font-size:15px;margin:1.2em 0 .3em}
.meta{color:#555}
table{border-collapse:collapse;margin-bottom:.5em}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#eee}
td.n{text-align:right}
tr.up td.st{background:#d6f5d6}
tr.down td{background:#f8caca}
tr.checking td{background:#fff3c4}
tr.drain td,tr.maint td{background:#dde6f3;font-style:italic}
tr.dead td{color:#999}
.stale{color:#b00}
.old{color:#888}
.hist i{display:inline-block;width:3px;height:12px;margin-right:1px;background:#2a2}
.hist i.f{background:#d22}
code{font-size:12px}
</style>
</head>
<body>
<h1>hcproxy status</h1>
<p class="meta">generation <b>{{.Doc.Generation}}</b> · master pid <b>{{.Doc.MasterPid}}</b> · table {{.Used}} of {{.Doc.Capacity}} slots · generated {{.Generated}}</p>
{{range .Groups}}
<h2>upstream {{if .Upstream}}{{.Upstream}}{{else}}(none){{end}}</h2>
<table>
<tr><th>address</th><th>state</th><th>admin</th><th>owner</th><th>consec</th><th>checks / fails</th><th>transitions</th><th>last result</th><th>rtt</th><th>last check</th><th>since</th><th>interval</th><th>active / requests</th><th>history</th></tr>
{{range .Rows}}<tr class="{{.Class}}">
<td><code>{{.Address}}</code></td>
<td class="st">{{.State}}</td>
<td>{{.Admin}}</td>
<td class="n">{{if .Stale}}<span class="stale" title="not a ready worker of the current generation">{{.Owner}} (gone)</span>{{else}}{{.Owner}}{{end}}</td>
<td class="n">{{.Consecutive}} {{if .LastOK}}ok{{else if .Checks}}fail{{end}}</td>
<td class="n">{{.Checks}} / {{.Failures}}</td>
<td class="n">{{.Transitions}}</td>
<td>{{.Result}}{{if .Detail}}: {{.Detail}}{{end}}{{if .OldDetail}} <span class="old" title="last failure">(last failure: {{.OldDetail}})</span>{{end}}</td>
<td class="n">{{.RTT}}</td>
<td>{{.Checked}}</td>
<td>{{.Since}}{{if .SinceReason}} ({{.SinceReason}}){{end}}</td>
<td>{{.Interval}}</td>
<td class="n">{{.ActiveRequests}} / {{.Requests}}</td>
<td><span class="hist" title="{{.History}}">{{range .Marks}}<i{{if not .}} class="f"{{end}}></i>{{end}}</span></td>
</tr>
{{end}}</table>
{{else}}
<p>No servers in the table.</p>
{{end}}
<h2>workers</h2>
{{if .Workers}}<table>
<tr><th>index</th><th>pid</th><th>serial</th><th>generation</th><th>state</th><th>heartbeat</th><th>started</th><th>checks owned</th></tr>
{{range .Workers}}<tr class="{{.State}}"><td class="n">{{.Index}}</td><td class="n">{{.Pid}}</td><td class="n">{{.Serial}}</td><td class="n">{{.Generation}}</td><td>{{.State}}</td><td>{{.Heartbeat}}</td><td>{{.Started}}</td><td class="n">{{.ChecksOwned}}</td></tr>
{{end}}</table>
{{else}}<p>No workers in the table.</p>
{{end}}
</body>
</html>
`))
