package status

import (
	"html/template"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// page is the HTML view of a Document: backends grouped by upstream label, values pre-formatted.
type page struct {
	Doc       Document
	Generated string
	Refresh   int // seconds; 0 for no meta refresh
	Filter    Filter
	Query     string // the filter as a query string ("upstream=app"), "" without filters
	JSONHref  string // the same view as JSON
	CSVHref   string // the same view as CSV
	Shown     int
	Groups    []group
	Workers   []workerRow
	States    []string // the values of the state filter, for its select box
}

type group struct {
	Upstream string
	Rows     []row
}

type row struct {
	Backend
	Class      string // CSS classes: the state, the admin state when not ready, "ejected"
	Owner      string
	Stale      bool // owner is not a ready worker of the current generation
	Result     string
	Detail     string // shown beside the result: the failure's detail
	OldDetail  string // the last failure's detail while the last check passed
	RTT        string
	Checked    string
	Since      string
	Interval   string
	WeightCell string // the configured weight, then the effective one and why when they differ
	Runs       []run  // the history strip
}

// run is a stretch of equal results in the history strip.
type run struct {
	Pass  bool
	Marks string // one '+' or '-' per check
}

type workerRow struct {
	Worker
	Heartbeat string
	Started   string
}

func newPage(d Document, now time.Time, refresh int, f Filter) page {
	p := page{
		Doc:       d,
		Generated: now.UTC().Format("2006-01-02 15:04:05 UTC"),
		Refresh:   refresh,
		Filter:    f,
		Shown:     len(d.Backends),
		States:    []string{"up", "down", "checking", "drain", "maint"},
	}
	q := url.Values{}
	if f.Upstream != "" {
		q.Set("upstream", f.Upstream)
	}
	if f.State != "" {
		q.Set("state", f.State)
	}
	p.Query = q.Encode()
	q.Set("format", "json")
	p.JSONHref = "?" + q.Encode()
	q.Set("format", "csv")
	p.CSVHref = "?" + q.Encode()
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
	if b.Ejected {
		r.Class += " ejected"
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
	r.WeightCell = weightText(b)
	r.Runs = runs(b.History)
	return r
}

// weightText shows the configured weight, and the effective one when it differs, with the
// reasons: "10 → 2.5 (agent 50%, slow start 50%, 22s left)". An agent's percentage is shown even
// when it changes nothing ("1 (agent 100%)").
func weightText(b Backend) string {
	s := strconv.Itoa(b.Weight)
	if b.EffectiveWeight != float64(b.Weight) {
		s += " → " + strconv.FormatFloat(b.EffectiveWeight, 'f', -1, 64)
	}
	var why []string
	if b.AgentWeightPct >= 0 {
		why = append(why, "agent "+strconv.Itoa(b.AgentWeightPct)+"%")
	}
	if left := b.SlowStartRemainingMs; left > 0 && b.SlowStartMs > 0 {
		done := 100 * (b.SlowStartMs - left) / b.SlowStartMs
		why = append(why, "slow start "+strconv.FormatInt(done, 10)+"%, "+Age(time.Duration(left+999)/1000*time.Second)+" left")
	}
	if len(why) > 0 {
		s += " (" + strings.Join(why, ", ") + ")"
	}
	return s
}

// runs splits a history string ("++-+") into stretches of equal results.
func runs(h string) []run {
	var out []run
	for h != "" {
		n := len(h) - len(strings.TrimLeft(h, h[:1]))
		out = append(out, run{Pass: h[0] == '+', Marks: h[:n]})
		h = h[n:]
	}
	return out
}

// ago formats a Unix millisecond time as "3s ago", or "never" for 0.
func ago(now time.Time, ms int64) string {
	if ms == 0 {
		return "never"
	}
	return AgeMs(now, ms) + " ago"
}

// pageTmpl renders a page. Each server cell carries a class naming its field, which the CSS and
// the tests use; a row's classes are its state, its admin state unless ready, and "ejected".
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
.meta,form{color:#555}
table{border-collapse:collapse;margin-bottom:.5em}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#eee;white-space:nowrap}
td.n,.checks,.fails,.active,.requests,.errors,.passive,.weight,.consec,.rtt,.owner{text-align:right}
tr.up td.state{background:#c8efc8}
tr.down td{background:#f8caca}
tr.down td.state{background:#e66;color:#fff;font-weight:bold}
tr.checking td{background:#fff3c4}
tr.drain td.admin{background:#9cf;font-weight:bold}
tr.drain td:first-child{border-left:4px solid #36c}
tr.maint td{color:#666;font-style:italic}
tr.maint td.admin{background:#c9b3e6;font-weight:bold;font-style:normal}
tr.maint td:first-child{border-left:4px solid #74a}
tr.ejected td.state{background:#f90}
tr.dead td{color:#999}
.stale{color:#b00}
.old{color:#888}
.hist{font:9px/12px monospace;letter-spacing:-1px}
.hist b{background:#2a2;color:#2a2}.hist s{background:#d22;color:#d22;text-decoration:none}
code{font-size:12px}
</style>
</head>
<body>
<h1>hcproxy status</h1>
<p class="meta">generation <b>{{.Doc.Generation}}</b> · master pid <b>{{.Doc.MasterPid}}</b> · {{.Shown}} servers shown · table capacity {{.Doc.Capacity}} slots · generated {{.Generated}}
· <a href="{{.JSONHref}}">json</a> · <a href="{{.CSVHref}}">csv</a> · <a href="/metrics">metrics</a> · <a href="/status/events?format=text">events</a></p>
<form method="get" action="">upstream <input name="upstream" size="12" value="{{.Filter.Upstream}}">
state <select name="state"><option value="">any</option>{{range .States}}<option{{if eq . $.Filter.State}} selected{{end}}>{{.}}</option>{{end}}</select>
refresh <input name="refresh" size="3" value="{{if .Refresh}}{{.Refresh}}{{end}}">s <button>show</button>{{if .Query}} <a href="?">clear filters</a>{{end}}</form>
{{range .Groups}}
<h2>upstream {{if .Upstream}}{{.Upstream}}{{else}}(none){{end}}</h2>
<table>
<tr><th>server</th><th>state</th><th>admin</th><th>owner</th><th>last check</th><th>result</th><th>rtt</th><th>consec</th><th>since</th><th>checks</th><th>fails</th><th>active</th><th>requests</th><th>errors</th><th>passive</th><th>weight</th><th>interval</th><th>history</th></tr>
{{range .Rows}}<tr class="{{.Class}}">
<td class="server"><code>{{.Address}}</code></td>
<td class="state">{{.State}}{{if .Ejected}} (ejected){{end}}</td>
<td class="admin">{{.Admin}}{{if ne .AgentAdmin "ready"}} (agent: {{.AgentAdmin}}){{end}}</td>
<td class="owner">{{if .Stale}}<span class="stale" title="not a ready worker of the current generation">{{.Owner}} (gone)</span>{{else}}{{.Owner}}{{end}}</td>
<td class="checked">{{.Checked}}</td>
<td class="result">{{.Result}}{{if .Detail}}: {{.Detail}}{{end}}{{if .OldDetail}} <span class="old">(last failure: {{.OldDetail}})</span>{{end}}</td>
<td class="rtt">{{.RTT}}</td>
<td class="consec">{{.Consecutive}}{{if .LastOK}} ok{{else if .Checks}} fail{{end}}</td>
<td class="since">{{.Since}}{{if .SinceReason}} ({{.SinceReason}}){{end}}</td>
<td class="checks">{{.Checks}}</td>
<td class="fails">{{.Failures}}</td>
<td class="active">{{.ActiveRequests}}</td>
<td class="requests">{{.Requests}}</td>
<td class="errors">{{.Errors}}</td>
<td class="passive">{{.PassiveFailures}}</td>
<td class="weight">{{.WeightCell}}</td>
<td class="interval">{{.Interval}}</td>
<td class="history"><span class="hist">{{range .Runs}}{{if .Pass}}<b>{{.Marks}}</b>{{else}}<s>{{.Marks}}</s>{{end}}{{end}}</span></td>
</tr>
{{end}}</table>
{{else}}
<p>No servers{{if .Query}} match the filters{{else}} in the table{{end}}.</p>
{{end}}
<h2>workers</h2>
{{if .Workers}}<table>
<tr><th>index</th><th>pid</th><th>serial</th><th>generation</th><th>state</th><th>heartbeat</th><th>started</th><th>checks owned</th><th>requests</th></tr>
{{range .Workers}}<tr class="{{.State}}"><td class="n">{{.Index}}</td><td class="n">{{.Pid}}</td><td class="n">{{.Serial}}</td><td class="n">{{.Generation}}</td><td>{{.State}}</td><td>{{.Heartbeat}}</td><td>{{.Started}}</td><td class="n">{{.ChecksOwned}}</td><td class="n">{{.Requests}}</td></tr>
{{end}}</table>
{{else}}<p>No workers in the table.</p>
{{end}}
</body>
</html>
`))
