package status

import (
	"html/template"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"hcproxy/shm"
)

// page is the HTML view of a Document: a summary row per upstream, then its backends, grouped
// by upstream label, values pre-formatted.
type page struct {
	Doc       Document
	Generated string
	Refresh   int // seconds; 0 for no meta refresh
	Filter    Filter
	Query     string // the filter as a query string ("upstream=app"), "" without filters
	JSONHref  string // the same view as JSON
	CSVHref   string // the same view as CSV
	Shown     int
	Window    string // what the rates are over: "last 12s", or "" (since start: no earlier view)
	Groups    []group
	Workers   []workerRow
	States    []string // the values of the state filter, for its select box
}

type group struct {
	Upstream string
	Anchor   string // the id of its section
	Open     bool   // shown expanded: few servers, one not available, or a filter applied
	Sum      summary
	Rows     []row
}

// summary is an upstream's summary row.
type summary struct {
	Servers, Available int
	Class              string // "ok" (all available), "partial", "degraded" (half or fewer), "none"
	Rate               string // requests per second over the window, "-" without one
	Errors             string // 5xx share of responses (over the window, else since start)
	P99                string // 99th percentile of request durations (the same)
	NoServer           uint64 // requests answered 503 because no server was available (the same)
}

type row struct {
	Backend
	Class      string // CSS classes: the state, the admin state when not ready, "ejected"
	Owner      string
	Fleet      bool // checked by other hosts of the fleet: the state is their vote
	Stale      bool // owner is not a ready worker of the current generation
	Result     string
	Detail     string // shown below the result: the failure's detail
	OldDetail  string // the last failure's detail while the last check passed
	RTT        string
	Checked    string
	Since      string
	Interval   string
	WeightCell string       // the configured weight, then the effective one and why when they differ
	Strip      template.CSS // the history strip's background: one stretch of colour per run of results
}

type workerRow struct {
	Worker
	Heartbeat string
	Started   string
}

// openRows is how many servers an upstream may have and still be shown expanded when all of
// them are available.
const openRows = 50

func newPage(d Document, now time.Time, refresh int, f Filter, base rateSample, windowed bool) page {
	p := page{
		Doc:       d,
		Generated: now.UTC().Format("2006-01-02 15:04:05 UTC"),
		Refresh:   refresh,
		Filter:    f,
		Shown:     len(d.Backends),
		States:    []string{"up", "down", "checking", "drain", "maint"},
	}
	if windowed {
		p.Window = "last " + Age(now.Sub(base.at).Round(time.Second))
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
	sums := map[string]summary{}
	for _, u := range d.Upstreams {
		prev, ok := base.ups[u.Name]
		sums[u.Name] = newSummary(u, prev, ok && windowed, now.Sub(base.at))
	}
	for _, b := range d.Backends {
		if len(p.Groups) == 0 || p.Groups[len(p.Groups)-1].Upstream != b.Upstream {
			p.Groups = append(p.Groups, group{Upstream: b.Upstream, Anchor: "u-" + strconv.Itoa(len(p.Groups)), Sum: sums[b.Upstream]})
		}
		g := &p.Groups[len(p.Groups)-1]
		g.Rows = append(g.Rows, newRow(b, now, live))
	}
	for i := range p.Groups {
		g := &p.Groups[i]
		// Servers that take no requests first: at 1,000 servers, what needs a look is on top.
		slices.SortStableFunc(g.Rows, func(a, b row) int { return cmpBool(a.Available, b.Available) })
		g.Open = len(g.Rows) <= openRows || g.Sum.Available < g.Sum.Servers || f != (Filter{})
	}
	return p
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// newSummary formats u's summary row; with a previous summary prev of the same upstream taken
// dt ago, its rate, error share and p99 are over that window, else since start.
func newSummary(u, prev Upstream, windowed bool, dt time.Duration) summary {
	s := summary{Servers: u.Servers, Available: u.Available, Class: "ok", Rate: "-"}
	switch {
	case u.Available == 0:
		s.Class = "none"
	case 2*u.Available <= u.Servers:
		s.Class = "degraded"
	case u.Available < u.Servers:
		s.Class = "partial"
	}
	resp, errs, cum := u.Responses, u.Responses5xx, u.DurationCounts
	s.NoServer = u.NoServer
	if windowed && len(prev.DurationCounts) == len(cum) && prev.Responses <= resp {
		resp, errs = resp-prev.Responses, errs-min(prev.Responses5xx, errs)
		s.NoServer -= min(prev.NoServer, s.NoServer)
		cum = slices.Clone(cum)
		for i := range cum {
			cum[i] -= min(prev.DurationCounts[i], cum[i])
		}
		s.Rate = strconv.FormatFloat(float64(resp)/dt.Seconds(), 'f', 1, 64) + "/s"
	}
	s.Errors, s.P99 = "-", "-"
	if resp > 0 {
		s.Errors = strconv.FormatFloat(100*float64(errs)/float64(resp), 'f', 1, 64) + "%"
		switch q := quantileMs(0.99, cum, resp); {
		case math.IsInf(q, 1):
			s.P99 = "> " + Age(shm.ReqBounds[len(shm.ReqBounds)-1])
		default:
			s.P99 = RTT(int64(q * 1000))
		}
	}
	return s
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
	} else if b.Source == "fleet" {
		r.Owner, r.Fleet = "fleet", true
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
	r.Strip = strip(b.History)
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

// stripCells is how many results the history strip has room for (the table keeps 64).
const stripCells = 64

// strip makes the background of a history strip from a history string ("++-+", oldest first):
// one stretch of colour per run of equal results, the newest at the right end, grey where there
// is no result yet. The strip has a fixed width whatever the history holds.
func strip(h string) template.CSS {
	if len(h) > stripCells {
		h = h[len(h)-stripCells:]
	}
	var b strings.Builder
	b.WriteString("background:linear-gradient(to right")
	pos := stripCells - len(h)
	stop := func(color string, from, to int) {
		f := strconv.FormatFloat(100*float64(from)/stripCells, 'f', -1, 64)
		t := strconv.FormatFloat(100*float64(to)/stripCells, 'f', -1, 64)
		b.WriteString("," + color + " " + f + "% " + t + "%")
	}
	stop("#e4e4e4", 0, pos)
	for h != "" {
		n := len(h) - len(strings.TrimLeft(h, h[:1]))
		color := "#2a2"
		if h[0] != '+' {
			color = "#d22"
		}
		stop(color, pos, pos+n)
		pos += n
		h = h[n:]
	}
	b.WriteString(")")
	return template.CSS(b.String())
}

// ago formats a Unix millisecond time as "3s ago", or "never" for 0.
func ago(now time.Time, ms int64) string {
	if ms == 0 {
		return "never"
	}
	return AgeMs(now, ms) + " ago"
}

// pageTmpl renders a page. Each server cell carries a class naming its field, which the CSS and
// the tests use; a row's classes are its state, its admin state unless ready, and "ejected". No
// script and no external asset: upstreams collapse with <details>, the history strip is a CSS
// gradient of a fixed width.
var pageTmpl = template.Must(template.New("status").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{{if .Refresh}}<meta http-equiv="refresh" content="{{.Refresh}}">
{{end -}}
<title>hcproxy status</title>
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:12px 16px;color:#222}
h1{font-size:18px;margin:0 0 .3em}h2{font-size:15px;margin:1.2em 0 .3em}
.meta,form,.legend{color:#555;margin:.3em 0}
.legend span{display:inline-block;margin-right:10px;white-space:nowrap}
.sw{display:inline-block;width:10px;height:10px;border:1px solid #999;vertical-align:-1px;margin-right:3px}
table{border-collapse:collapse;margin-bottom:.5em}
th,td{border:1px solid #ccc;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#eee;white-space:nowrap}
td.n,.checks,.requests,.weight,.owner,.sum td.num{text-align:right}
.scroll{overflow-x:auto;max-width:100%}
table.servers{width:100%;table-layout:fixed}
col.c-server{width:170px}col.c-state{width:80px}col.c-admin{width:70px}col.c-check{width:auto}
col.c-since{width:150px}col.c-checks{width:130px}col.c-requests{width:230px}col.c-weight{width:80px}
col.c-owner{width:60px}col.c-history{width:140px}
td{overflow:hidden;text-overflow:ellipsis}
td.server,td.since,td.checks,td.requests,td.owner{white-space:nowrap}
.detail{display:block;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;color:#933;font-size:12px}
.old{color:#888}
tr.up td.state{background:#c8efc8}
tr.down td{background:#fbe3e3}
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
.strip{display:block;width:128px;height:12px;border:1px solid #bbb}
details{margin:.8em 0}
summary{cursor:pointer;font-size:15px;font-weight:bold;padding:3px 0}
summary .figs{font-weight:normal;font-size:13px;color:#444;margin-left:.6em}
.badge{display:inline-block;padding:0 6px;border-radius:3px;font-weight:bold}
.badge{white-space:nowrap}.badge.ok{background:#c8efc8}.badge.partial{background:#f3efb0}.badge.degraded{background:#ffc25a}.badge.none{background:#e66;color:#fff}
table.sum td,table.sum th{padding:2px 10px;white-space:nowrap}
code{font-size:12px}
@media (max-width:800px){
 body{margin:8px}
 table.servers{table-layout:auto}
 table.servers col{width:auto}
 .admin,.since,.checks,.requests,.weight,.owner{display:none}
 .detail{max-width:45vw}
 .strip{width:64px}
 table.sum th{white-space:normal}
 table.sum{font-size:11px}
 table.sum td,table.sum th{padding:2px 3px}
 summary .figs{display:block;margin:0}
}
</style>
</head>
<body>
<h1>hcproxy status</h1>
<p class="meta">generation <b>{{.Doc.Generation}}</b> · master pid <b>{{.Doc.MasterPid}}</b> · {{.Shown}} servers shown · table capacity {{.Doc.Capacity}} slots · generated {{.Generated}}
· <a href="{{.JSONHref}}">json</a> · <a href="{{.CSVHref}}">csv</a> · <a href="/metrics">metrics</a> · <a href="/status/events?format=html">events</a></p>
<form method="get" action="">upstream <input name="upstream" size="12" value="{{.Filter.Upstream}}">
state <select name="state"><option value="">any</option>{{range .States}}<option{{if eq . $.Filter.State}} selected{{end}}>{{.}}</option>{{end}}</select>
refresh <input name="refresh" size="3" value="{{if .Refresh}}{{.Refresh}}{{end}}">s <button>show</button>{{if .Query}} <a href="?">clear filters</a>{{end}}</form>
<p class="legend"><span><i class="sw" style="background:#c8efc8"></i>up</span><span><i class="sw" style="background:#e66"></i>down</span><span><i class="sw" style="background:#fff3c4"></i>checking (no verdict yet)</span><span><i class="sw" style="background:#9cf"></i>drain (no new requests)</span><span><i class="sw" style="background:#c9b3e6"></i>maint (out)</span><span><i class="sw" style="background:#f90"></i>ejected by passive checks</span><span>history: <i class="sw" style="background:#2a2"></i>pass <i class="sw" style="background:#d22"></i>fail, newest right, 64 checks</span><span><span class="stale">(gone)</span>: owner no longer a live worker</span></p>
{{if .Groups}}<div class="scroll"><table class="sum">
<tr><th>upstream</th><th>available</th><th>requests</th><th>5xx</th><th>p99</th><th title="requests answered 503 because no server was available">no server</th></tr>
{{range .Groups}}<tr class="{{.Sum.Class}}"><td><a href="#{{.Anchor}}">{{if .Upstream}}{{.Upstream}}{{else}}(none){{end}}</a></td><td class="num"><span class="badge {{.Sum.Class}}">{{.Sum.Available}} of {{.Sum.Servers}}</span></td><td class="num">{{.Sum.Rate}}</td><td class="num">{{.Sum.Errors}}</td><td class="num">{{.Sum.P99}}</td><td class="num">{{if .Sum.NoServer}}<span class="badge none">{{.Sum.NoServer}}</span>{{else}}0{{end}}</td></tr>
{{end}}</table></div>
<p class="meta">requests, 5xx and p99 {{if .Window}}over the {{.Window}} (since this worker's earlier view){{else}}since start (rates from the next view on){{end}}; no server: the 503s hcproxy answered itself because no server was available, over the same time, not among the requests.</p>
{{end}}
{{range .Groups}}
<details id="{{.Anchor}}"{{if .Open}} open{{end}}>
<summary>upstream {{if .Upstream}}{{.Upstream}}{{else}}(none){{end}} <span class="figs"><span class="badge {{.Sum.Class}}">{{.Sum.Available}} of {{.Sum.Servers}} available</span> · {{.Sum.Rate}} · 5xx {{.Sum.Errors}} · p99 {{.Sum.P99}}{{if .Sum.NoServer}} · <span class="badge none">{{.Sum.NoServer}} no server</span>{{end}}</span></summary>
<div class="scroll"><table class="servers">
<colgroup><col class="c-server"><col class="c-state"><col class="c-admin"><col class="c-check"><col class="c-since"><col class="c-checks"><col class="c-requests"><col class="c-weight"><col class="c-owner"><col class="c-history"></colgroup>
<tr><th>server</th><th>state</th><th class="admin">admin</th><th>last check</th><th class="since">since</th><th class="checks">checks</th><th class="requests">requests</th><th class="weight">weight</th><th class="owner">owner</th><th>history</th></tr>
{{range .Rows}}<tr class="{{.Class}}">
<td class="server" title="slot {{.Slot}}"><code>{{.Address}}</code></td>
<td class="state" title="{{.Consecutive}} {{if .LastOK}}passed{{else}}failed{{end}} in a row">{{.State}}{{if .Ejected}} (ejected){{end}}</td>
<td class="admin">{{.Admin}}{{if ne .AgentAdmin "ready"}} (agent: {{.AgentAdmin}}){{end}}</td>
<td class="check">{{.Result}}{{if .Checks}} · {{.RTT}} · {{.Checked}}{{end}}{{if .Detail}}<span class="detail" title="{{.Detail}}">{{.Detail}}</span>{{end}}{{if .OldDetail}}<span class="detail old" title="{{.OldDetail}}">last failure: {{.OldDetail}}</span>{{end}}</td>
<td class="since">{{.Since}}{{if .SinceReason}} ({{.SinceReason}}){{end}}</td>
<td class="checks">{{.Checks}} · {{.Failures}} failed{{if .Interval}} · {{.Interval}}{{end}}</td>
<td class="requests">{{.Requests}}{{if or .Errors .PassiveFailures .ActiveRequests}} ({{.Errors}} err, {{.PassiveFailures}} passive, {{.ActiveRequests}} active){{end}}</td>
<td class="weight" title="{{.WeightCell}}">{{.WeightCell}}</td>
<td class="owner">{{if .Fleet}}<span title="checked by other hosts of the fleet; the state is their vote (hcctl fleet)">fleet</span>{{else if .Stale}}<span class="stale" title="not a ready worker of the current generation">{{.Owner}} (gone)</span>{{else}}{{.Owner}}{{end}}</td>
<td class="history" title="{{.History}}"><i class="strip" style="{{.Strip}}"></i></td>
</tr>
{{end}}</table></div>
</details>
{{else}}
<p>No servers{{if .Query}} match the filters{{else}} in the table{{end}}.</p>
{{end}}
<h2>workers</h2>
{{if .Workers}}<div class="scroll"><table>
<tr><th>index</th><th>pid</th><th>serial</th><th>generation</th><th>state</th><th>heartbeat</th><th>started</th><th>checks owned</th><th>requests</th></tr>
{{range .Workers}}<tr class="{{.State}}"><td class="n">{{.Index}}</td><td class="n">{{.Pid}}</td><td class="n">{{.Serial}}</td><td class="n">{{.Generation}}</td><td>{{.State}}</td><td>{{.Heartbeat}}</td><td>{{.Started}}</td><td class="n">{{.ChecksOwned}}</td><td class="n">{{.Requests}}</td></tr>
{{end}}</table></div>
{{else}}<p>No workers in the table.</p>
{{end}}
</body>
</html>
`))
