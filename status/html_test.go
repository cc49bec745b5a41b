package status

import (
	"encoding/json"
	"fmt"
	"html"
	"math"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"hcproxy/shm"
)

// htmlRow is one server row of the status page: its classes and the text of each cell by the
// field name in the cell's class.
type htmlRow struct {
	class string
	cells map[string]string
}

var (
	rowRE  = regexp.MustCompile(`(?s)<tr class="([^"]*)">\s*(<td class="server"[^>]*>.*?)</tr>`)
	cellRE = regexp.MustCompile(`(?s)<td class="(\w+)"(?: title="([^"]*)")?>(.*?)</td>`)
	tagRE  = regexp.MustCompile(`<[^>]*>`)
)

// serverFields are the cells every server row must have.
var serverFields = []string{"server", "state", "admin", "check", "since", "checks", "requests", "weight", "owner", "history"}

// parseRows returns the server rows of a status page by address, checking that each has every
// field exactly once.
func parseRows(t *testing.T, body string) map[string]htmlRow {
	t.Helper()
	rows := map[string]htmlRow{}
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		r := htmlRow{class: m[1], cells: map[string]string{}}
		for _, c := range cellRE.FindAllStringSubmatch(m[2], -1) {
			if _, dup := r.cells[c[1]]; dup {
				t.Errorf("row %q: field %s twice", m[2], c[1])
			}
			r.cells[c[1]] = html.UnescapeString(tagRE.ReplaceAllString(c[3], ""))
			if c[1] == "history" { // the strip is drawn: its results are in its title
				r.cells[c[1]] = html.UnescapeString(c[2])
			}
		}
		for _, f := range serverFields {
			if _, ok := r.cells[f]; !ok {
				t.Errorf("row %q lacks field %s", r.cells["server"], f)
			}
		}
		if len(r.cells) != len(serverFields) {
			t.Errorf("row %q has fields %v, want %v", r.cells["server"], r.cells, serverFields)
		}
		rows[r.cells["server"]] = r
	}
	return rows
}

func TestStatusHTMLEveryField(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()

	_, body := get(t, srv.URL+"/status")
	rows := parseRows(t, body)
	if len(rows) != 3 {
		t.Fatalf("%d server rows, want 3", len(rows))
	}
	ago := regexp.MustCompile(`^\d+s ago$`)
	for addr, want := range map[string]map[string]string{
		"10.0.0.1:80": {"state": "up", "admin": "ready", "owner": "4242", "check": "ok 200 · 1.50ms · Ns ago",
			"checks": "3 · 0 failed · 2s", "requests": "7 (1 err, 1 passive, 2 active)", "weight": "1", "history": "+++"},
		"10.0.0.2:80": {"state": "down", "admin": "ready", "owner": "4242", "check": "bad_status 503 · 20.0ms · Ns ago" + evilDetail,
			"checks": "3 · 2 failed · 2s", "requests": "0", "weight": "1", "history": "+--"},
		"10.0.0.9:81": {"state": "checking", "admin": "drain", "owner": "-", "check": "-",
			"checks": "0 · 0 failed · 2s", "requests": "0", "weight": "3", "history": ""},
	} {
		r, ok := rows[addr]
		if !ok {
			t.Errorf("no row for %s", addr)
			continue
		}
		for field, v := range want {
			got := regexp.MustCompile(`\d+s ago`).ReplaceAllString(r.cells[field], "Ns ago")
			if got != v {
				t.Errorf("%s %s = %q, want %q", addr, field, got, v)
			}
		}
		if !ago.MatchString(strings.TrimSuffix(strings.TrimSuffix(r.cells["since"], " (ok)"), " (bad_status)")) {
			t.Errorf("%s since = %q", addr, r.cells["since"])
		}
	}
	if got := rows["10.0.0.2:80"].cells["since"]; !strings.HasSuffix(got, " (bad_status)") {
		t.Errorf("since of the down server = %q, want its reason", got)
	}
}

// Down, checking, drained and maintenance rows carry their classes, and the stylesheet gives each
// a rule of its own.
func TestStatusHTMLRowClasses(t *testing.T) {
	f := newFixture(t)
	f.tab.Slot(2).SetAdmin(shm.Maint) // app1 (slots were allocated api, app2, app1)
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()
	_, body := get(t, srv.URL+"/status")
	rows := parseRows(t, body)
	for addr, class := range map[string]string{"10.0.0.1:80": "up maint", "10.0.0.2:80": "down", "10.0.0.9:81": "checking drain"} {
		if got := rows[addr].class; got != class {
			t.Errorf("%s row class = %q, want %q", addr, got, class)
		}
	}
	for _, rule := range []string{"tr.down td{", "tr.checking td{", "tr.drain td.admin{", "tr.maint td.admin{"} {
		if !strings.Contains(body, rule) {
			t.Errorf("stylesheet lacks %q", rule)
		}
	}
}

func TestStatusHTMLFilters(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()
	for query, want := range map[string]string{
		"":                           "10.0.0.9:81 10.0.0.2:80 10.0.0.1:80", // by upstream, the unavailable first
		"upstream=app":               "10.0.0.2:80 10.0.0.1:80",
		"state=down":                 "10.0.0.2:80",
		"state=up":                   "10.0.0.1:80",
		"state=checking":             "10.0.0.9:81",
		"state=drain":                "10.0.0.9:81",
		"state=maint":                "",
		"upstream=api&state=down":    "",
		"upstream=nope":              "",
		"upstream=app&state=down&x=": "10.0.0.2:80",
	} {
		_, body := get(t, srv.URL+"/status?"+query)
		var got []string
		for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
			got = append(got, cellRE.FindStringSubmatch(m[2])[3])
		}
		if g := tagRE.ReplaceAllString(strings.Join(got, " "), ""); g != want {
			t.Errorf("?%s shows %q, want %q", query, g, want)
		}
	}
	resp, body := get(t, srv.URL+"/status?state=bogus")
	if resp.StatusCode != 400 || !strings.Contains(body, `unknown state "bogus"`) {
		t.Errorf("?state=bogus = %d %q", resp.StatusCode, body)
	}
}

// The page stays small: 20 servers with a full history fit in 30 KB.
func TestStatusHTMLSize(t *testing.T) {
	f := newFixtureCap(t, 32)
	for i := range 17 {
		idx, err := f.tab.Alloc(9, fmt.Sprintf("10.1.0.%d:8080", i), "backend-pool", time.Second, 1, shm.Up)
		if err != nil {
			t.Fatal(err)
		}
		s := f.tab.Slot(idx)
		fence, _ := s.Claim(0, f.tok, shm.Now()+int64(time.Minute))
		for j := range 70 {
			s.Record(f.tok, fence, shm.Result{OK: j%9 != 0, RTT: time.Millisecond, Detail: "connection refused"}, 2, 2)
		}
	}
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()
	_, body := get(t, srv.URL+"/status?refresh=10")
	if rows := parseRows(t, body); len(rows) != 20 {
		t.Fatalf("%d rows", len(rows))
	}
	if len(body) >= 30<<10 {
		t.Errorf("page of 20 servers is %d bytes, want < 30 KB", len(body))
	}
	t.Logf("page of 20 servers: %d bytes", len(body))
}

// TestUpstreamSummary: the summary row counts servers available of configured, and its rate,
// 5xx share and p99 are over the window since the handler's earlier view (since start on the
// first), the p99 interpolated within its bucket as histogram_quantile does.
func TestUpstreamSummary(t *testing.T) {
	f := newFixture(t)
	h := Handler(f.tab, Options{}).(*handler)
	clock := time.Now()
	h.now = func() time.Time { return clock }
	srv := httptest.NewServer(h)
	defer srv.Close()
	app1 := f.tab.Slot(2) // 10.0.0.1:80 (slots were allocated api, app2, app1)
	for i := range 100 {
		r := shm.Request{Status: 200, Duration: 3 * time.Millisecond}
		if i < 10 {
			r.Status = 503
		}
		app1.CountRequest(&r)
	}
	app1.CountNoServer() // app's home slot: 2 requests no server could take
	app1.CountNoServer()
	sumRow := regexp.MustCompile(`(?s)<tr class="(\w+)"><td><a href="#u-\d">app</a></td>(.*?)</tr>`)
	cells := func(body string) string {
		m := sumRow.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no summary row for app in %s", body)
		}
		return m[1] + ": " + strings.Join(strings.Fields(tagRE.ReplaceAllString(m[2], " ")), " ")
	}
	_, body := get(t, srv.URL+"/status")
	// 99 of 100 in the first bucket (0..5ms): 5 * 99/100 = 4.95ms.
	if got, want := cells(body), "degraded: 1 of 2 - 10.0% 4.95ms 2"; got != want {
		t.Errorf("first view: %q, want %q", got, want)
	}
	if !strings.Contains(body, "since start") {
		t.Error("first view does not say its figures are since start")
	}
	clock = clock.Add(10 * time.Second)
	for range 50 {
		app1.CountRequest(&shm.Request{Status: 200, Duration: 40 * time.Millisecond}) // 25..50ms
	}
	for range 4 {
		app1.CountNoServer()
	}
	_, body = get(t, srv.URL+"/status")
	// 50 requests in 10s, none 5xx; p99 = 25 + 25 * 49.5/50 = 49.75ms; 4 no-server 503s (of 6).
	if got, want := cells(body), "degraded: 1 of 2 5.0/s 0.0% 49.8ms 4"; got != want {
		t.Errorf("second view: %q, want %q", got, want)
	}
	if !strings.Contains(body, `<span class="badge none">4 no server</span>`) {
		t.Error("app's section heading does not show its 4 no-server 503s")
	}
	if !strings.Contains(body, "over the last 10s") {
		t.Error("second view does not name its window")
	}
	clock = clock.Add(10 * time.Second)
	app1.CountNoServer()
	_, body = get(t, srv.URL+"/status")
	// Over the window since the first view (20s): 5 no-server 503s (of 7); the JSON has totals.
	if got, want := cells(body), "degraded: 1 of 2 2.5/s 0.0% 49.8ms 5"; got != want {
		t.Errorf("third view: %q, want %q", got, want)
	}
	var d Document
	_, js := get(t, srv.URL+"/status?format=json")
	if err := json.Unmarshal([]byte(js), &d); err != nil {
		t.Fatal(err)
	}
	for _, u := range d.Upstreams {
		if want := map[string]uint64{"app": 7}[u.Name]; u.NoServer != want {
			t.Errorf("JSON: upstream %s no_server %d, want %d", u.Name, u.NoServer, want)
		}
	}
	if !strings.Contains(js, `"no_server": 7`) {
		t.Errorf("JSON has no no_server of 7: %s", js)
	}
	if q := quantileMs(0.99, []uint64{0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, 2); !math.IsInf(q, 1) {
		t.Errorf("p99 beyond the last bound = %v, want +Inf", q)
	}
}

// A server that other hosts of the fleet check (its remote bit set, no local owner) shows
// "fleet" as its owner, not "-": the page says where its state comes from.
func TestStatusHTMLFleetOwner(t *testing.T) {
	f := newFixture(t)
	s := f.tab.Slot(0) // api's 10.0.0.9:81, owned by nobody here
	s.SetRemote(true)
	if !s.Remote() {
		t.Fatal("the remote bit did not stick")
	}
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()
	_, body := get(t, srv.URL+"/status")
	rows := parseRows(t, body)
	if got := rows["10.0.0.9:81"].cells["owner"]; got != "fleet" {
		t.Errorf("owner of a server the fleet checks = %q, want fleet", got)
	}
	if got := rows["10.0.0.1:80"].cells["owner"]; got != "4242" {
		t.Errorf("owner of a locally checked server = %q, want 4242", got)
	}
}
