package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"hcproxy/status"
)

// Hostile clients, end to end: for each engine, the real binary (two workers, a status
// listener, client_header_timeout 1s on both listeners) is sent raw bytes on the proxy listener
// and on the status listener. Each attack gets a 4xx or a closed connection within its timeout,
// never a hang; the upstream sees no smuggled request and no request with two framings; and
// afterwards both listeners still answer 200 from the same worker processes.
//
// A body that stops halfway on the status listener is cut off by its 30s read timeout, too long
// for this test: status.TestServerStalledBodyIsDisconnected covers it with a short one.
func TestHostileClients(t *testing.T) {
	for _, engine := range []string{"fast", "std"} {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			testHostile(t, engine)
		})
	}
}

// smuggle carries both Content-Length and Transfer-Encoding, with a second request hidden where a
// Content-Length reader would see the end of the body.
const smuggle = "POST /cl-te HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n" +
	"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"

func testHostile(t *testing.T, engine string) {
	app := startBackends(t, 1)[0]
	app.Record()
	p := startProxyRaw(t, 2, fmt.Sprintf(`workers = 2
engine = %q
pid_file = "hcproxy.pid"
table = "hcproxy.table"
[status]
listen = "{{status}}"
admin = true
client_header_timeout = "1s"
[[server]]
listen = "{{listen}}"
upstream = "app"
client_header_timeout = "1s"
[upstream.app]
servers = [%q]
[upstream.app.check]
uri = "/health"
`, engine, app.Addr))
	before := readyPids(p.dump())

	pad := func(n int) string { // a head of n bytes
		h := "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Pad: "
		return h + strings.Repeat("p", n-len(h)-4) + "\r\n\r\n"
	}
	t.Run("attacks", func(t *testing.T) {
		for _, l := range []struct{ name, addr string }{{"proxy", p.listen}, {"status", p.status}} {
			attack := func(name string, f func(t *testing.T)) {
				t.Run(l.name+"_"+name, func(t *testing.T) { t.Parallel(); f(t) })
			}
			attack("head_over_16KiB", func(t *testing.T) {
				got := rawExchange(t, l.addr, pad(17<<10))
				wantStatus(t, got, 431)
			})
			attack("head_under_16KiB", func(t *testing.T) {
				wantStatus(t, rawExchange(t, l.addr, pad(15<<10)), 200)
			})
			attack("content_length_and_transfer_encoding", func(t *testing.T) {
				got := rawExchange(t, l.addr, smuggle)
				if n := strings.Count(got, "HTTP/1.1 "); n != 1 {
					t.Errorf("%d responses to one request with a smuggled one behind it: %q", n, got)
				}
				// Both engines refuse it (RFC 9112 section 6.1 lets a server; nginx and HAProxy
				// do): the std engine checks each head with the fast engine's parser.
				wantStatus(t, got, 400)
			})
			attack("invalid_method", func(t *testing.T) {
				wantStatus(t, rawExchange(t, l.addr, "G@T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400)
			})
			attack("bad_version", func(t *testing.T) {
				wantStatus(t, rawExchange(t, l.addr, "GET / HTTP/1.x\r\nHost: a\r\n\r\n"), 400)
				wantStatus(t, rawExchange(t, l.addr, "GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 400, 505)
			})
			attack("slowloris", func(t *testing.T) {
				start := time.Now()
				if got := drip(t, l.addr); got != "" {
					wantStatus(t, got, 400, 408)
				}
				t.Logf("a head dripped a byte every 100ms: closed after %v", time.Since(start).Round(time.Millisecond))
			})
		}
	})
	if t.Failed() {
		return
	}

	for _, url := range []string{"http://" + p.listen + "/", "http://" + p.status + "/status?format=json"} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s after the attacks: %s", url, resp.Status)
		}
	}
	if after := readyPids(p.dump()); !slices.Equal(after, before) {
		t.Errorf("ready workers %v after the attacks, were %v: a worker restarted", after, before)
	}

	// What the upstream received: never the smuggled request, and from neither engine the
	// request with both Content-Length and Transfer-Encoding.
	var all strings.Builder
	for _, c := range app.Received() {
		all.WriteString(c)
	}
	got := all.String()
	if strings.Contains(got, "/smuggled") {
		t.Errorf("the smuggled request reached the upstream:\n%s", got)
	}
	if i := strings.Index(got, "POST /cl-te "); i >= 0 {
		t.Errorf("the %s engine forwarded a request with Content-Length and Transfer-Encoding:\n%s", engine, got[i:])
	}
}

// readyPids returns the pids of the ready workers of the current generation, sorted.
func readyPids(d status.Document) []int {
	var pids []int
	for _, w := range d.Workers {
		if w.State == "ready" && w.Generation == d.Generation {
			pids = append(pids, w.Pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// rawExchange sends raw on a new connection to addr and returns what came back until the server
// closed the connection; it fails the test if the server keeps it open 10s.
func rawExchange(t *testing.T, addr, raw string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, raw) // the server may answer and close before it read everything
	return readToClose(t, c, fmt.Sprintf("%.60q", raw), 10*time.Second)
}

// readToClose reads c until the server closes it (EOF or a reset), failing the test if that takes
// longer than within.
func readToClose(t *testing.T, c net.Conn, what string, within time.Duration) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	got, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: connection still open after %v; got %q", what, within, got)
	}
	return string(got)
}

// drip sends a request head one byte every 100ms (a slowloris) and returns what the server sent
// until it closed the connection, which it must within 5s: client_header_timeout is 1s, and the
// bound stays under the status listener's default of 10s, so that a listener that ignored the
// setting would fail.
func drip(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		head := "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-Slow: 1\r\n", 1000)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(head); i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			if _, err := c.Write([]byte{head[i]}); err != nil {
				return
			}
		}
	}()
	return readToClose(t, c, "a head dripped a byte every 100ms", 5*time.Second)
}

// wantStatus fails the test unless got starts with a status line with one of the codes.
func wantStatus(t *testing.T, got string, codes ...int) {
	t.Helper()
	for _, code := range codes {
		if strings.HasPrefix(got, fmt.Sprintf("HTTP/1.1 %d ", code)) {
			return
		}
	}
	t.Errorf("got %.120q, want status %v", got, codes)
}
