package status

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"hcproxy/probe"
	"hcproxy/shm"
)

// fixture is a table on disk with three servers and one ready worker:
//
//	app  10.0.0.1:80  owned, 3 passes: up, history "+++"
//	app  10.0.0.2:80  owned, pass then 2 failures (bad_status 503, a <script> detail): down, "+--"
//	api  10.0.0.9:81  never claimed or checked: checking, drained by the operator, weight 3
//
// app1 has 2 requests in flight, 7 proxied, 1 error and 1 passive failure.
type fixture struct {
	tab *shm.Table
	tok shm.Token
}

const evilDetail = `<script>alert("x")</script> & more`

func newFixture(t *testing.T) fixture {
	t.Helper()
	return newFixtureCap(t, 8)
}

// newFixtureCap is newFixture with a table of capacity slots.
func newFixtureCap(t *testing.T, capacity int) fixture {
	t.Helper()
	tab, err := shm.OpenMaster(filepath.Join(t.TempDir(), "table"), capacity)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Close() })
	tab.SetMaster(os.Getpid()) // a running process: the table is live
	tab.SetGeneration(3)
	wi, err := tab.ReserveWorker(3)
	if err != nil {
		t.Fatal(err)
	}
	tok := tab.Register(wi, 4242)
	tab.SetWorkerState(wi, shm.WorkerReady)
	tab.Heartbeat(wi, 2)

	alloc := func(addr, label string, weight int) shm.Slot {
		i, err := tab.Alloc(7, addr, label, 2*time.Second, weight, shm.Checking)
		if err != nil {
			t.Fatal(err)
		}
		return tab.Slot(i)
	}
	record := func(s shm.Slot, rs ...shm.Result) {
		fence, ok := s.Claim(0, tok, shm.Now()+int64(time.Minute))
		if !ok {
			t.Fatalf("claim %s failed", s.Address())
		}
		for _, r := range rs {
			if _, err := s.Record(tok, fence, r, 2, 2); err != nil {
				t.Fatal(err)
			}
		}
	}
	pass := shm.Result{OK: true, Status: 200, RTT: 1500 * time.Microsecond}
	fail := shm.Result{Reason: uint8(probe.BadStatus), Status: 503, RTT: 20 * time.Millisecond, Detail: evilDetail}

	// Allocated out of order, to check the sort.
	api := alloc("10.0.0.9:81", "api", 3)
	app2 := alloc("10.0.0.2:80", "app", 1)
	app1 := alloc("10.0.0.1:80", "app", 1)
	record(app1, pass, pass, pass)
	record(app2, pass, fail, fail)
	api.SetAdmin(shm.Drain)
	app1.AddActive(2)
	for range 7 {
		app1.AddRequest()
	}
	app1.AddError()
	app1.PassiveFailure(shm.Now(), 0, time.Second)
	return fixture{tab: tab, tok: tok}
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

func TestStatusJSON(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()

	resp, body := get(t, srv.URL+"/status?format=json")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var d Document
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	if d.Generation != 3 || d.MasterPid != os.Getpid() || d.Capacity != 8 || d.GeneratedUnixMs == 0 {
		t.Errorf("header = gen %d master %d cap %d at %d", d.Generation, d.MasterPid, d.Capacity, d.GeneratedUnixMs)
	}
	if len(d.Workers) != 1 {
		t.Fatalf("workers = %+v", d.Workers)
	}
	if w := d.Workers[0]; w.Pid != 4242 || w.Serial != f.tok.Serial() || w.State != "ready" || w.Generation != 3 || w.ChecksOwned != 2 || w.HeartbeatUnixMs == 0 {
		t.Errorf("worker = %+v", w)
	}
	if len(d.Backends) != 3 {
		t.Fatalf("backends = %+v", d.Backends)
	}
	api, app1, app2 := d.Backends[0], d.Backends[1], d.Backends[2]
	if api.Address != "10.0.0.9:81" || app1.Address != "10.0.0.1:80" || app2.Address != "10.0.0.2:80" {
		t.Fatalf("order = %s %s %s, want by upstream then address", api.Address, app1.Address, app2.Address)
	}

	check := func(name string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	check("app1.state", app1.State, "up")
	check("app1.available", app1.Available, true)
	check("app1.owner_pid", app1.OwnerPid, 4242)
	check("app1.owner_serial", app1.OwnerSerial, f.tok.Serial())
	check("app1.consecutive", app1.Consecutive, 3)
	check("app1.checks", app1.Checks, uint64(3))
	check("app1.last_result", app1.LastResult, "ok")
	check("app1.last_status", app1.LastStatus, 200)
	check("app1.last_rtt_us", app1.LastRTTUs, int64(1500))
	check("app1.history", app1.History, "+++")
	check("app1.since_reason", app1.SinceReason, "ok")
	check("app1.interval_ms", app1.IntervalMs, int64(2000))
	check("app1.active_requests", app1.ActiveRequests, int64(2))
	check("app1.requests", app1.Requests, uint64(7))
	check("app1.errors", app1.Errors, uint64(1))
	check("app1.passive_failures", app1.PassiveFailures, uint64(1))
	check("app1.weight", app1.Weight, 1)
	check("app1.ejected", app1.Ejected, false)

	check("app2.state", app2.State, "down")
	check("app2.available", app2.Available, false)
	check("app2.last_ok", app2.LastOK, false)
	check("app2.consecutive", app2.Consecutive, 2)
	check("app2.checks", app2.Checks, uint64(3))
	check("app2.failures", app2.Failures, uint64(2))
	check("app2.transitions", app2.Transitions, uint64(2))
	check("app2.last_result", app2.LastResult, "bad_status")
	check("app2.last_status", app2.LastStatus, 503)
	check("app2.last_detail", app2.LastDetail, evilDetail)
	check("app2.since_reason", app2.SinceReason, "bad_status")
	check("app2.history", app2.History, "+--")

	check("api.state", api.State, "checking")
	check("api.admin", api.Admin, "drain")
	check("api.owner_pid", api.OwnerPid, 0)
	check("api.checks", api.Checks, uint64(0))
	check("api.last_result", api.LastResult, "")
	check("api.since_reason", api.SinceReason, "")
	check("api.history", api.History, "")
	check("api.weight", api.Weight, 3)
	if api.LastCheckUnixMs != 0 || api.SinceUnixMs == 0 {
		t.Errorf("api times: last check %d since %d", api.LastCheckUnixMs, api.SinceUnixMs)
	}
}

func TestStatusHTML(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()

	for _, path := range []string{"/status", "/", "/status?format=html"} {
		resp, body := get(t, srv.URL+path)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("%s: status %d, content type %q", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		for _, want := range []string{"10.0.0.1:80", "10.0.0.2:80", "10.0.0.9:81", "upstream app", "upstream api",
			`<tr class="down">`, `<tr class="checking drain">`, "bad_status 503", "master pid <b>" + strconv.Itoa(os.Getpid()) + "</b>", "generation <b>3</b>",
			"<td class=\"n\">4242</td>"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: page lacks %q", path, want)
			}
		}
		if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; more") {
			t.Errorf("%s: detail not escaped", path)
		}
		if strings.Contains(body, "http-equiv") {
			t.Errorf("%s: meta refresh without ?refresh", path)
		}
	}
	_, body := get(t, srv.URL+"/status?refresh=5")
	if !strings.Contains(body, `<meta http-equiv="refresh" content="5">`) {
		t.Error("?refresh=5 gives no meta refresh")
	}
}

// An owner that is not a ready worker of the current generation is still shown, marked gone.
func TestStatusHTMLStaleOwner(t *testing.T) {
	f := newFixture(t)
	f.tab.SetGeneration(4) // the worker now belongs to an older generation
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()
	_, body := get(t, srv.URL+"/status")
	if !strings.Contains(body, "4242 (gone)") {
		t.Error("owner of an older generation not marked gone")
	}
	_, body = get(t, srv.URL+"/status?format=json")
	var d Document
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Backends) != 3 || d.Backends[1].OwnerPid != 4242 {
		t.Errorf("backends with a stale owner changed: %+v", d.Backends)
	}
}

func TestStatusErrors(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()

	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/nope", 404, ""},
		{"GET", "/status/", 404, ""},
		{"POST", "/status", 405, "method not allowed"},
		{"DELETE", "/", 405, "method not allowed"},
		{"GET", "/status?format=xml", 400, `unknown format "xml"`},
		{"GET", "/status?refresh=0", 400, "refresh"},
		{"GET", "/status?refresh=abc", 400, "refresh"},
		{"HEAD", "/status", 200, ""},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.body) {
			t.Errorf("%s %s = %d %q, want %d containing %q", tc.method, tc.path, resp.StatusCode, body, tc.code, tc.body)
		}
		if tc.code == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s: Allow = %q", tc.method, tc.path, resp.Header.Get("Allow"))
		}
	}
}

func TestBuildHistoryAndUnknowns(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	sn := shm.Snapshot{
		Capacity: 4,
		Slots: []shm.SlotInfo{
			{Index: 0, Address: "b", Label: "x", Checks: 100, History: 1<<63 | 1, LastReason: 200},
			{Index: 1, Address: "a", Label: "x", Checks: 5, History: 0b10110, LastReason: 0},
			{Index: 2, Address: "z", Label: "", Checks: 0},
		},
	}
	d := Build(sn, now)
	if d.GeneratedUnixMs != now.UnixMilli() || d.Workers == nil {
		t.Fatalf("document = %+v", d)
	}
	got := []string{d.Backends[0].Address, d.Backends[1].Address, d.Backends[2].Address}
	if strings.Join(got, ",") != "z,a,b" {
		t.Fatalf("order = %v", got)
	}
	if h := d.Backends[2].History; h != "+"+strings.Repeat("-", 62)+"+" {
		t.Errorf("64-check history = %q", h)
	}
	if h := d.Backends[1].History; h != "+-++-" {
		t.Errorf("5-check history = %q", h)
	}
	if r := d.Backends[2].LastResult; r != "reason_200" {
		t.Errorf("unknown reason = %q", r)
	}
	if d.Backends[0].State != "health_0" {
		t.Errorf("zero state = %q (shown as it is)", d.Backends[0].State)
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 0: "0s", 3 * time.Second: "3s", 2*time.Minute + 5*time.Second: "2m",
		5 * time.Hour: "5h", 72 * time.Hour: "3d",
	} {
		if got := Age(d); got != want {
			t.Errorf("Age(%v) = %q, want %q", d, got, want)
		}
	}
	if got := RTT(1500); got != "1.50ms" {
		t.Errorf("RTT(1500) = %q", got)
	}
}
