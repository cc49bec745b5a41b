package status

import (
	"fmt"
	"html"
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
	rowRE  = regexp.MustCompile(`(?s)<tr class="([^"]*)">\s*(<td class="server">.*?)</tr>`)
	cellRE = regexp.MustCompile(`(?s)<td class="(\w+)">(.*?)</td>`)
	tagRE  = regexp.MustCompile(`<[^>]*>`)
)

// serverFields are the cells every server row must have.
var serverFields = []string{"server", "state", "admin", "owner", "checked", "result", "rtt", "consec", "since",
	"checks", "fails", "active", "requests", "errors", "passive", "weight", "interval", "history"}

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
			r.cells[c[1]] = html.UnescapeString(tagRE.ReplaceAllString(c[2], ""))
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
		"10.0.0.1:80": {"state": "up", "admin": "ready", "owner": "4242", "result": "ok 200", "rtt": "1.50ms",
			"consec": "3 ok", "checks": "3", "fails": "0", "active": "2", "requests": "7", "errors": "1",
			"passive": "1", "weight": "1", "interval": "2s", "history": "+++"},
		"10.0.0.2:80": {"state": "down", "admin": "ready", "owner": "4242", "result": "bad_status 503: " + evilDetail,
			"rtt": "20.0ms", "consec": "2 fail", "checks": "3", "fails": "2", "active": "0", "requests": "0",
			"errors": "0", "passive": "0", "weight": "1", "interval": "2s", "history": "+--"},
		"10.0.0.9:81": {"state": "checking", "admin": "drain", "owner": "-", "checked": "never", "result": "-",
			"rtt": "-", "consec": "0", "checks": "0", "fails": "0", "active": "0", "requests": "0", "errors": "0",
			"passive": "0", "weight": "3", "interval": "2s", "history": ""},
	} {
		r, ok := rows[addr]
		if !ok {
			t.Errorf("no row for %s", addr)
			continue
		}
		for field, v := range want {
			if got := r.cells[field]; got != v {
				t.Errorf("%s %s = %q, want %q", addr, field, got, v)
			}
		}
		if _, ok := want["checked"]; !ok && !ago.MatchString(r.cells["checked"]) {
			t.Errorf("%s last check = %q, want \"Ns ago\"", addr, r.cells["checked"])
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
		"":                           "10.0.0.9:81 10.0.0.1:80 10.0.0.2:80",
		"upstream=app":               "10.0.0.1:80 10.0.0.2:80",
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
			got = append(got, cellRE.FindStringSubmatch(m[2])[2])
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
