package upstream

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"hcproxy/shm"
)

// backend is a real HTTP server on loopback that counts its requests.
type backend struct {
	srv  *httptest.Server
	hits atomic.Int64
}

func newBackend(t *testing.T, h func(w http.ResponseWriter, r *http.Request)) *backend {
	b := &backend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		h(w, r)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

func ok200(name string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, name)
	}
}

// closedAddr returns a loopback address that refuses connections.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().String()
	ln.Close()
	return a
}

// proxyFor builds a proxy over addrs (each up, weight 1) and serves it on loopback.
func proxyFor(t *testing.T, o Options, addrs ...string) (*httptest.Server, []*Server) {
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
	srv := httptest.NewServer(NewProxy("app", ss, o))
	t.Cleanup(srv.Close)
	return srv, ss
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRetryOnConnectFailureAndPassiveEjection(t *testing.T) {
	good := newBackend(t, ok200("good"))
	var ejected atomic.Int64
	srv, ss := proxyFor(t, Options{
		Retry:    RetryPolicy{Tries: 1, On: ParseFailures([]string{"connect", "timeout"})},
		MaxFails: 2, FailTimeout: 10 * time.Second,
		OnEject: func(*Server, string) { ejected.Add(1) },
	}, closedAddr(t), good.addr())
	for i := 0; i < 10; i++ {
		if code, body := get(t, srv.URL); code != 200 || body != "good" {
			t.Fatalf("request %d: %d %q: a refused connection was not retried on the other server", i, code, body)
		}
	}
	if ejected.Load() != 1 || ss[0].Slot.Available() || !ss[0].Slot.State().Ejected() {
		t.Fatalf("after 2 refused connections: ejections %d, available %v", ejected.Load(), ss[0].Slot.Available())
	}
	if in := ss[0].Slot.Info(); in.Passive != 2 || in.Errors != 2 {
		t.Errorf("passive failures %d, errors %d, want 2 and 2", in.Passive, in.Errors)
	}
	// The proxy releases a request's count just after the client has its response: wait for it.
	deadline := time.Now().Add(5 * time.Second)
	for ss[1].Slot.Active() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if a := ss[1].Slot.Active(); a != 0 {
		t.Errorf("requests in flight 5s after all finished: %d", a)
	}
}

func TestRetryOnListedStatusOnly(t *testing.T) {
	bad := newBackend(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", http.StatusServiceUnavailable) })
	good := newBackend(t, ok200("good"))
	srv, _ := proxyFor(t, Options{Retry: RetryPolicy{Tries: 1, On: ParseFailures([]string{"connect", "503"})}}, bad.addr(), good.addr())
	for i := 0; i < 6; i++ {
		if code, _ := get(t, srv.URL); code != 200 {
			t.Fatalf("request %d: %d, want a 503 retried on the good server", i, code)
		}
	}
	srv2, _ := proxyFor(t, Options{Retry: RetryPolicy{Tries: 1, On: ParseFailures([]string{"connect"})}, MaxFails: 0}, bad.addr(), good.addr())
	saw503 := false
	for i := 0; i < 6; i++ {
		if code, _ := get(t, srv2.URL); code == 503 {
			saw503 = true
		}
	}
	if !saw503 {
		t.Fatal("a 503 not listed in retry_on was retried")
	}
}

// A POST whose body reached a server that then failed is not retried (the server may have acted
// on it); a GET is.
func TestNoRetryOfSentNonIdempotentRequest(t *testing.T) {
	reset := func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
		}
	}
	a := newBackend(t, reset)
	b := newBackend(t, reset)
	srv, _ := proxyFor(t, Options{Retry: RetryPolicy{Tries: 1, On: ParseFailures([]string{"connect", "timeout", "502"})}}, a.addr(), b.addr())
	resp, err := http.Post(srv.URL, "text/plain", strings.NewReader("charge the card"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || a.hits.Load()+b.hits.Load() != 1 {
		t.Fatalf("POST: status %d after %d tries, want 502 after 1", resp.StatusCode, a.hits.Load()+b.hits.Load())
	}
}

func TestRetriesAreBounded(t *testing.T) {
	var bs []*backend
	var addrs []string
	for i := 0; i < 4; i++ {
		b := newBackend(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", http.StatusServiceUnavailable) })
		bs = append(bs, b)
		addrs = append(addrs, b.addr())
	}
	srv, _ := proxyFor(t, Options{Retry: RetryPolicy{Tries: 2, On: ParseFailures([]string{"503"})}}, addrs...)
	code, _ := get(t, srv.URL)
	var total int64
	for _, b := range bs {
		total += b.hits.Load()
	}
	if code != 503 || total != 3 {
		t.Fatalf("status %d after %d tries, want 503 after 1+2", code, total)
	}
}

func TestOutlierEjection(t *testing.T) {
	bad := newBackend(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", 500) })
	good := newBackend(t, ok200("good"))
	srv, ss := proxyFor(t, Options{Eject5xx: 3, FailTimeout: 10 * time.Second, Balancer: "round_robin"}, bad.addr(), good.addr())
	for i := 0; i < 10; i++ {
		get(t, srv.URL)
	}
	if !ss[0].Slot.State().Ejected() || bad.hits.Load() != 3 {
		t.Fatalf("3 consecutive 500s: ejected %v after %d hits", ss[0].Slot.State().Ejected(), bad.hits.Load())
	}
}

// A server in slow start gets a small share that grows with time.
func TestSlowStart(t *testing.T) {
	ss, tb := servers(t, 1, 1)
	setHealth(t, tb, ss[0], false)
	setHealth(t, tb, ss[0], true) // just came up
	ss[0].SlowStart = time.Hour
	rr := NewRoundRobin(ss)
	n := 0
	for i := 0; i < 1000; i++ {
		if rr.Pick("", Available) == ss[0] {
			n++
		}
	}
	if n > 20 {
		t.Fatalf("a server that just came up with slow_start 1h got %d of 1000 requests", n)
	}
	ss[0].SlowStart = time.Nanosecond // ramp over
	n = 0
	for i := 0; i < 1000; i++ {
		if rr.Pick("", Available) == ss[0] {
			n++
		}
	}
	if n < 450 || n > 550 {
		t.Fatalf("after slow start: %d of 1000, want half", n)
	}
}
