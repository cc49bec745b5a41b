package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"hcproxy/shm"
)

// stdServer serves a Proxy over addrs the way a worker's engine = "std" listener does
// (Listener, ConnContext, ConnState) and returns its address and the servers.
func stdServer(t *testing.T, o Options, addrs ...string) (string, []*Server) {
	t.Helper()
	tb, err := shm.OpenMaster(t.TempDir()+"/t", len(addrs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	var ss []*Server
	for i, a := range addrs {
		idx, err := tb.Alloc(uint64(i), a, "app", time.Second, 1, shm.Up)
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, &Server{Address: a, Weight: 1, Slot: tb.Slot(idx)})
	}
	o.ConnectTimeout = time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: NewProxy("app", ss, o), ConnContext: ConnContext, ConnState: ConnState, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() { srv.Serve(Listener(ln)); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return ln.Addr().String(), ss
}

// exchange sends raw to addr on a new connection, then, after more (if any, once the first
// part had time to be read), and returns what came back until the server closed the
// connection, failing the test if that takes longer than within.
func exchange(t *testing.T, addr string, within time.Duration, raw ...string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, s := range raw {
		if i > 0 {
			time.Sleep(50 * time.Millisecond) // a separate read on the server's side
		}
		io.WriteString(c, s)
	}
	c.SetReadDeadline(time.Now().Add(within))
	got, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%.60q: connection still open after %v; got %q", raw[0], within, got)
	}
	return string(got)
}

// statusOf returns the status code of the response at the start of raw, 0 for none.
func statusOf(raw string) int {
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// noFailureCounted fails the test if a request counted against s.
func noFailureCounted(t *testing.T, s *Server) {
	t.Helper()
	if in := s.Slot.Info(); in.Errors != 0 || in.Passive != 0 || !s.Slot.Available() {
		t.Errorf("server %s: errors %d, passive failures %d, available %v: the client's failure was counted against it",
			s.Address, in.Errors, in.Passive, s.Slot.Available())
	}
}

// Regression: a request body that stops (Content-Length 100 with 5 bytes sent, a chunked body
// that stops after a chunk or inside a chunk's size line) was never timed out by the std engine,
// and the server was blamed once it was: a timeout counted as its passive failure (max_fails 1
// ejected it). Now each body read is bounded by ClientBodyTimeout, the connection is closed with
// no response (as the fast engine and nginx do) and nothing is counted against the server.
func TestStalledRequestBodyIsClosedAndNotCountedAgainstServer(t *testing.T) {
	const timeout = 200 * time.Millisecond
	b := newBackend(t, ok200("b"))
	addr, ss := stdServer(t, Options{
		ClientBodyTimeout: timeout, Retry: RetryPolicy{Tries: 1, On: ParseFailures([]string{"connect", "timeout"})},
		MaxFails: 1, FailTimeout: 10 * time.Second,
	}, b.addr())
	for _, body := range []string{
		"Content-Length: 100\r\n\r\nabcde",
		"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n",
		"Transfer-Encoding: chunked\r\n\r\n5\r\nab",
		"Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n1",
		"Transfer-Encoding: chunked\r\n\r\nffffffffffffff\r\nabcde", // 14 digits: within the limit
	} {
		start := time.Now()
		got := exchange(t, addr, 5*timeout, "POST /stall HTTP/1.1\r\nHost: a\r\n"+body)
		if got != "" {
			t.Errorf("%q: got %q, want the connection closed with no response", body, got)
		}
		t.Logf("%q: closed after %v", body, time.Since(start).Round(time.Millisecond))
	}
	noFailureCounted(t, ss[0])
	if code, _ := get(t, "http://"+addr+"/"); code != 200 {
		t.Errorf("after the stalled bodies: %d, want 200 from the same server", code)
	}
}

// A body that keeps coming, each part within the timeout, is never cut off, however long the
// whole takes.
func TestSlowRequestBodyWithinTimeoutIsServed(t *testing.T) {
	const timeout, gap, parts = time.Second, 150 * time.Millisecond, 10 // 1.5s in all
	var got int64
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		got, _ = io.Copy(io.Discard, r.Body)
		io.WriteString(w, "done")
	})
	addr, _ := stdServer(t, Options{ClientBodyTimeout: timeout}, b.addr())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\nConnection: close\r\n\r\n", parts)
	for i := 0; i < parts; i++ {
		time.Sleep(gap)
		io.WriteString(c, "x")
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	out, _ := io.ReadAll(c)
	if statusOf(string(out)) != 200 || got != parts {
		t.Errorf("got %q, upstream read %d bytes: want 200 and all %d", out, got, parts)
	}
}

// Regression: the std engine answered a malformed client body (a bad chunk) with 502 and
// counted an error against the server. Now it is 400, counted against nothing.
func TestBadChunkIs400NotCountedAgainstServer(t *testing.T) {
	b := newBackend(t, ok200("b"))
	addr, ss := stdServer(t, Options{
		ClientBodyTimeout: 5 * time.Second, Retry: RetryPolicy{Tries: 1, On: ParseFailures([]string{"connect", "timeout", "502"})},
		MaxFails: 1, FailTimeout: 10 * time.Second,
	}, b.addr())
	for _, raw := range [][]string{
		{"5\r\nabcdeXX\r\n0\r\n\r\n"},               // data longer than its size
		{"zz\r\nabcde\r\n0\r\n\r\n"},                // not a size
		{"5\r\nabcde\r\n", "5\nabcde\r\n0\r\n\r\n"}, // a bare LF, in a later read
		{"10000000000000000\r\nabcde"},              // 17 digits: net/http's own limit
	} {
		raw[0] = "POST /bad HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + raw[0]
		got := exchange(t, addr, 5*time.Second, raw...)
		if statusOf(got) != 400 {
			t.Errorf("%q: got %.80q, want 400", raw, got)
		}
	}
	noFailureCounted(t, ss[0])
}

// Regression: net/http takes a chunk size of 16 hex digits (up to 2^64-1), where the fast
// engine, nginx and HAProxy refuse it; the std engine forwarded such a body. Now a chunk size
// line of more than 15 digits is refused with 400, before anything goes upstream when it came
// with the head, and as the body's failure when it comes later; 15 digits pass.
func TestChunkSizeOverLimitIsRefused(t *testing.T) {
	b := newBackend(t, ok200("b"))
	addr, ss := stdServer(t, Options{ClientBodyTimeout: 500 * time.Millisecond}, b.addr())
	head := "POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, size := range []string{"ffffffffffffffff", "8000000000000000", "0000000000000001", "1000000000000000;ext=1"} {
		if got := exchange(t, addr, 5*time.Second, head+size+"\r\nabcde"); statusOf(got) != 400 {
			t.Errorf("chunk size %s with the head: got %.80q, want 400", size, got)
		}
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d requests whose chunk size came with the head, want none", n)
	}
	// After a first chunk, in a later read of the body: the body fails.
	if got := exchange(t, addr, 5*time.Second, head+"3\r\nabc\r\n", "ffffffffffffffff\r\nabcde"); statusOf(got) != 400 {
		t.Errorf("chunk size of 16 digits after a chunk: got %.80q, want 400", got)
	}
	// In a request after others on the same connection.
	get2 := "GET / HTTP/1.1\r\nHost: a\r\n\r\nPOST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\r\n"
	got := exchange(t, addr, 5*time.Second, get2+head+"ffffffffffffffff\r\nabcde")
	if n := strings.Count(got, "HTTP/1.1 "); n != 3 || !strings.Contains(got, "HTTP/1.1 400 ") {
		t.Errorf("GET, POST, then a chunk size of 16 digits: got %q, want 200, 200, 400", got)
	}
	// 15 digits are within the limit (the body then stalls and is cut off).
	if got := exchange(t, addr, 5*time.Second, head+"fffffffffffffff\r\nabcde"); got != "" {
		t.Errorf("chunk size of 15 digits: got %.80q, want it forwarded (and the stalled body closed)", got)
	}
	noFailureCounted(t, ss[0])
}

// Regression: the std engine forwarded request targets that nginx and HAProxy refuse ("t:80"
// went upstream as "GET 80", userinfo in absolute-form was dropped and the request forwarded)
// and Host values internal/h1 refuses. Now each is 400 and the upstream sees none, and a refused
// request whose body then stalls is closed after the body timeout.
func TestRequestTargetsRefusedByTheRule(t *testing.T) {
	b := newBackend(t, ok200("b"))
	addr, _ := stdServer(t, Options{ClientBodyTimeout: 200 * time.Millisecond}, b.addr())
	for _, raw := range []string{
		"POST t:80 HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc", // its body stalls: closed too
		"GET rl HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET t:80 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET http://u:p@h/x HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET http://@h/x HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET ftp://h/x HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: a:b:c\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: h:8o\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: [::1\r\n\r\n",
	} {
		if got := exchange(t, addr, 5*time.Second, raw); statusOf(got) != 400 {
			t.Errorf("%q: got %.80q, want 400", raw, got)
		}
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("the upstream got %d of the refused requests", n)
	}
}

// An absolute-form request goes upstream with the target's authority as Host and
// X-Forwarded-Host, whatever Host the client sent (RFC 9112 section 3.2.2), and the path and
// query that follow the authority as its target.
func TestAbsoluteFormHostIsTargetAuthority(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	b := newBackend(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Host+" "+r.Header.Get("X-Forwarded-Host")+" "+r.RequestURI)
		mu.Unlock()
	})
	addr, _ := stdServer(t, Options{}, b.addr())
	for raw, want := range map[string]string{
		"GET http://other:81/x?q HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n": "other:81 other:81 /x?q",
		"GET HTTPS://other?q HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n":     "other other /?q",
		"GET /y HTTP/1.1\r\nHost: a:8080\r\nConnection: close\r\n\r\n":             "a:8080 a:8080 /y",
	} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		if got := exchange(t, addr, 5*time.Second, raw); statusOf(got) != 200 {
			t.Fatalf("%q: got %.80q", raw, got)
		}
		mu.Lock()
		if len(seen) != 1 || seen[0] != want {
			t.Errorf("%q: upstream saw Host, X-Forwarded-Host, target %q, want %q", raw, seen, want)
		}
		mu.Unlock()
	}
}
