package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"hcproxy/status"
)

// The std engine's share of the hostile-input findings, end to end on the real binary (engine =
// "std", two workers, client_idle_timeout 1s, the default retry_on ["connect", "timeout"] and
// max_fails 1, so that one failure counted against the server would take it out):
//
//   - a request body that stops (Content-Length 100 with 5 bytes sent, a chunked body that
//     stops) is closed within the timeout, where it used to hang for good;
//   - a chunk size of 16 hex digits, which net/http takes, is refused with 400, as the fast
//     engine, nginx and HAProxy refuse it;
//   - a malformed chunked body is a 400, no longer a 502, and neither it nor a stalled body
//     counts as an error or a passive failure of the server;
//   - request targets nginx and HAProxy refuse ("rl", "t:80", userinfo in absolute-form) are
//     400s, and an absolute-form request goes upstream with the target's authority as Host.
func TestStdEngineHostileBodiesAndTargets(t *testing.T) {
	app := startBackends(t, 1)[0]
	app.Record()
	p := startProxyRaw(t, 2, fmt.Sprintf(`workers = 2
engine = "std"
pid_file = "hcproxy.pid"
table = "hcproxy.table"
[status]
listen = "{{status}}"
[[server]]
listen = "{{listen}}"
upstream = "app"
client_idle_timeout = "1s"
[upstream.app]
servers = [%q]
[upstream.app.check]
uri = "/health"
interval = "200ms"
timeout = "150ms"
`, app.Addr))
	p.eventually("the server up", 10*time.Second, func(d status.Document) bool {
		b, ok := backendState(d, app.Addr)
		return ok && b.Available
	})

	const within = 5 * time.Second // five times client_idle_timeout
	exchange := func(t *testing.T, parts ...string) (string, time.Duration) {
		t.Helper()
		c, err := net.Dial("tcp", p.listen)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		start := time.Now()
		for i, s := range parts {
			if i > 0 {
				time.Sleep(50 * time.Millisecond) // a read of its own on the proxy's side
			}
			io.WriteString(c, s)
		}
		got := readToClose(t, c, fmt.Sprintf("%.60q", parts[0]), within)
		return got, time.Since(start)
	}

	t.Run("stalled_body_closed", func(t *testing.T) {
		for _, body := range []string{
			"Content-Length: 100\r\n\r\nabcde",
			"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
			"Transfer-Encoding: chunked\r\n\r\n5\r\nab",
		} {
			got, took := exchange(t, "POST /stall HTTP/1.1\r\nHost: a\r\n"+body)
			if got != "" {
				t.Errorf("%q: got %.80q, want the connection closed with no response", body, got)
			}
			t.Logf("%q: closed after %v", body, took.Round(time.Millisecond))
		}
	})
	t.Run("chunk_size_over_limit", func(t *testing.T) {
		head := "POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
		got, _ := exchange(t, head+"ffffffffffffffff\r\nabcde")
		wantStatus(t, got, 400)
		got, _ = exchange(t, head+"3\r\nabc\r\n", "8000000000000000\r\nabcde")
		wantStatus(t, got, 400)
	})
	t.Run("bad_chunk", func(t *testing.T) {
		got, _ := exchange(t, "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdeXX\r\n0\r\n\r\n")
		wantStatus(t, got, 400)
		got, _ = exchange(t, "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", "zz\r\n")
		wantStatus(t, got, 400)
	})
	t.Run("targets", func(t *testing.T) {
		for _, raw := range []string{
			"GET rl HTTP/1.1\r\nHost: a\r\n\r\n",
			"GET t:80 HTTP/1.1\r\nHost: a\r\n\r\n",
			"GET http://u:p@h/userinfo HTTP/1.1\r\nHost: h\r\n\r\n",
			"GET /badhost HTTP/1.1\r\nHost: a:b:c\r\n\r\n",
		} {
			got, _ := exchange(t, raw)
			wantStatus(t, got, 400)
		}
		var all strings.Builder
		for _, c := range app.Received() {
			all.WriteString(c)
		}
		for _, bad := range []string{"GET 80 ", "GET rl ", "/userinfo", "/badhost"} {
			if strings.Contains(all.String(), bad) {
				t.Errorf("the upstream received a refused request (%q):\n%s", bad, all.String())
			}
		}
	})
	t.Run("absolute_form_host", func(t *testing.T) {
		got, _ := exchange(t, "GET http://other:81/headers HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		wantStatus(t, got, 200)
		var h http.Header
		if i := strings.Index(got, "\r\n\r\n"); i < 0 || json.Unmarshal([]byte(got[i+4:]), &h) != nil {
			t.Fatalf("response %q", got)
		}
		if h.Get("Host") != "other:81" || h.Get("X-Forwarded-Host") != "other:81" {
			t.Errorf("upstream saw Host %q, X-Forwarded-Host %q; want the target's authority other:81 for both",
				h.Get("Host"), h.Get("X-Forwarded-Host"))
		}
	})

	b, ok := backendState(p.dump(), app.Addr)
	if !ok || b.Errors != 0 || b.PassiveFailures != 0 || !b.Available {
		t.Errorf("after the clients' failures the server has errors %d, passive failures %d, available %v: they were counted against it",
			b.Errors, b.PassiveFailures, b.Available)
	}
	resp, err := http.Get("http://" + p.listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET / after the clients' failures: %s", resp.Status)
	}
}
