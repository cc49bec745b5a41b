package status

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"

	"hcproxy/shm"
)

func do(t *testing.T, method, url, body string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func adminForm(upstream, server, state string) string {
	return url.Values{"upstream": {upstream}, "server": {server}, "state": {state}}.Encode()
}

// A client the allow list refuses gets 403 with a one-line body on every path, admin included.
func TestAccessRefused(t *testing.T) {
	f := newFixture(t)
	refuse := func(a netip.Addr) bool { return a != netip.MustParseAddr("127.0.0.1") }
	srv := httptest.NewServer(Handler(f.tab, Options{Allowed: refuse, Admin: true}))
	defer srv.Close()
	for _, tc := range []struct{ method, path string }{
		{"GET", "/"}, {"GET", "/status"}, {"GET", "/status?format=json"}, {"GET", "/status?format=csv"},
		{"GET", "/metrics"}, {"GET", "/status/events"}, {"POST", "/status/admin"}, {"GET", "/nope"}, {"DELETE", "/status"},
	} {
		body := ""
		if tc.method == "POST" {
			body = adminForm("app", "10.0.0.1:80", "maint")
		}
		resp, got := do(t, tc.method, srv.URL+tc.path, body)
		if resp.StatusCode != 403 || strings.Count(got, "\n") != 1 || !strings.Contains(got, "forbidden") {
			t.Errorf("%s %s = %d %q, want 403 with one line", tc.method, tc.path, resp.StatusCode, got)
		}
	}
	if a := f.tab.Slot(2).State().Admin(); a != shm.Ready {
		t.Errorf("a refused admin request changed the admin state to %s", a)
	}
}

// Without Options.Allowed only loopback clients are served.
func TestAccessDefaultLoopback(t *testing.T) {
	f := newFixture(t)
	h := Handler(f.tab, Options{})
	for addr, code := range map[string]int{"127.0.0.1:5000": 200, "[::1]:5000": 200, "[::ffff:127.0.0.1]:5000": 200,
		"10.1.2.3:5000": 403, "[2001:db8::1]:5000": 403, "@": 403} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/status?format=json", nil)
		req.RemoteAddr = addr
		h.ServeHTTP(rec, req)
		if rec.Code != code {
			t.Errorf("client %s: %d, want %d", addr, rec.Code, code)
		}
	}
}

// Admin actions exist only with Options.Admin: then an allowed client sets a server's admin state
// in the table, and an admin event is appended.
func TestAdmin(t *testing.T) {
	f := newFixture(t)
	off := httptest.NewServer(Handler(f.tab, Options{}))
	defer off.Close()
	for _, m := range []string{"POST", "GET"} {
		if resp, body := do(t, m, off.URL+"/status/admin", adminForm("app", "10.0.0.1:80", "maint")); resp.StatusCode != 404 {
			t.Errorf("%s without admin = %d %q, want 404", m, resp.StatusCode, body)
		}
	}
	app1 := f.tab.Slot(2)
	if a := app1.State().Admin(); a != shm.Ready {
		t.Fatalf("admin state changed without admin: %s", a)
	}
	if _, body := get(t, off.URL+"/status"); strings.Contains(body, "/status/admin") {
		t.Error("the page advertises admin actions without admin")
	}

	on := httptest.NewServer(Handler(f.tab, Options{Admin: true}))
	defer on.Close()
	head := f.tab.EventHead()
	resp, body := do(t, "POST", on.URL+"/status/admin", adminForm("app", "10.0.0.1:80", "maint"))
	if resp.StatusCode != 200 || strings.Count(body, "\n") != 1 || !strings.Contains(body, "maint (was ready)") {
		t.Fatalf("set maint = %d %q", resp.StatusCode, body)
	}
	st := app1.State()
	if st.Admin() != shm.Maint || st.Health() != shm.Up || st.Streak() != 3 {
		t.Errorf("state after set maint: admin %s health %s streak %d", st.Admin(), st.Health(), st.Streak())
	}
	evs, _, _ := f.tab.ReadEvents(head, 10)
	if len(evs) != 1 {
		t.Fatalf("events after set maint: %+v", evs)
	}
	if e := evs[0]; e.Kind != shm.EventAdmin || shm.Admin(e.Old) != shm.Ready || shm.Admin(e.New) != shm.Maint ||
		e.Pid != os.Getpid() || e.Address != "10.0.0.1:80" || e.Label != "app" || e.Slot != 2 {
		t.Errorf("admin event %+v", e)
	}
	// Setting the same state again changes nothing and appends nothing.
	if resp, _ := do(t, "POST", on.URL+"/status/admin", adminForm("app", "10.0.0.1:80", "maint")); resp.StatusCode != 200 {
		t.Errorf("repeat = %d", resp.StatusCode)
	}
	if f.tab.EventHead() != head+1 {
		t.Errorf("a repeated set appended an event")
	}
	if resp, _ := do(t, "POST", on.URL+"/status/admin", adminForm("app", "10.0.0.1:80", "ready")); resp.StatusCode != 200 || app1.State().Admin() != shm.Ready {
		t.Errorf("set ready = %d, admin %s", resp.StatusCode, app1.State().Admin())
	}

	for _, tc := range []struct {
		method, form string
		header       []string
		code         int
		body         string
	}{
		{"POST", adminForm("app", "10.0.0.1:80", "offline"), nil, 400, `unknown state "offline"`},
		{"POST", "upstream=app&state=drain", nil, 400, "want form fields"},
		{"POST", adminForm("app", "10.0.0.7:80", "drain"), nil, 404, "no server 10.0.0.7:80 in upstream app"},
		{"POST", adminForm("api", "10.0.0.1:80", "drain"), nil, 404, "no server"},
		{"POST", adminForm("ap", "10.0.0.1:80", "drain"), nil, 404, "no server"}, // names match whole
		{"GET", "", nil, 405, "use POST"},
		{"POST", adminForm("app", "10.0.0.1:80", "drain"), []string{"Sec-Fetch-Site", "cross-site"}, 403, ""},
	} {
		resp, body := do(t, tc.method, on.URL+"/status/admin", tc.form, tc.header...)
		if resp.StatusCode != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("%s %q = %d %q, want %d with %q", tc.method, tc.form, resp.StatusCode, body, tc.code, tc.body)
		}
	}
	if a := app1.State().Admin(); a != shm.Ready {
		t.Errorf("a refused request changed the admin state to %s", a)
	}
}

// A server shared by two upstreams (label "app,web") is found by either name, and the filter
// ?upstream= finds it by either name too.
func TestAdminSharedServer(t *testing.T) {
	f := newFixture(t)
	i, err := f.tab.Alloc(8, "10.0.0.5:80", "app,web", 0, 1, shm.Up)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(f.tab, Options{Admin: true}))
	defer srv.Close()
	if resp, body := do(t, "POST", srv.URL+"/status/admin", adminForm("web", "10.0.0.5:80", "drain")); resp.StatusCode != 200 {
		t.Fatalf("set drain by the second name = %d %q", resp.StatusCode, body)
	}
	if a := f.tab.Slot(i).State().Admin(); a != shm.Drain {
		t.Errorf("admin = %s", a)
	}
	_, body := get(t, srv.URL+"/status?format=csv&upstream=web&state=drain")
	if lines := strings.Split(strings.TrimSpace(body), "\n"); len(lines) != 2 || !strings.Contains(lines[1], `"app,web",10.0.0.5:80,up,drain`) {
		t.Errorf("filtered csv = %q", body)
	}
}
