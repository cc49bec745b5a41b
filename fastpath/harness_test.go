package fastpath

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hcproxy/shm"
	"hcproxy/upstream"
)

// recorder is a real net/http upstream on loopback whose listener records the exact bytes each
// accepted connection received, and counts the connections.
type recorder struct {
	srv     *httptest.Server
	mu      sync.Mutex
	raw     []*bytes.Buffer // per connection, in accept order
	accepts atomic.Int64
	discard atomic.Bool // record nothing (a test of memory use)
}

func newRecorder(t *testing.T, h http.HandlerFunc) *recorder {
	r := &recorder{}
	r.srv = httptest.NewUnstartedServer(h)
	r.srv.Listener = &recListener{Listener: r.srv.Listener, r: r}
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) addr() string { return r.srv.Listener.Addr().String() }

// requests parses every request the recorder received, in order.
func (r *recorder) requests(t *testing.T) []*http.Request {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*http.Request
	for _, b := range r.raw {
		br := bufio.NewReader(bytes.NewReader(b.Bytes()))
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				break
			}
			body, _ := io.ReadAll(req.Body)
			req.Body = io.NopCloser(bytes.NewReader(body))
			out = append(out, req)
		}
	}
	return out
}

type recListener struct {
	net.Listener
	r *recorder
}

func (l *recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.r.accepts.Add(1)
	b := &bytes.Buffer{}
	l.r.mu.Lock()
	l.r.raw = append(l.r.raw, b)
	l.r.mu.Unlock()
	return &recConn{Conn: c, b: b, mu: &l.r.mu, r: l.r}, nil
}

type recConn struct {
	net.Conn
	b  *bytes.Buffer
	mu *sync.Mutex
	r  *recorder
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.r.discard.Load() {
		return n, err
	}
	c.mu.Lock()
	c.b.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// servers makes upstream.Servers over addrs with slots in a fresh table, each in state st.
func servers(t testing.TB, st shm.Health, addrs ...string) []*upstream.Server {
	t.Helper()
	tb, err := shm.OpenMaster(t.TempDir()+"/t", len(addrs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	var ss []*upstream.Server
	for i, a := range addrs {
		idx, err := tb.Alloc(uint64(i), a, "app", time.Second, 1, st)
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, &upstream.Server{Address: a, Weight: 1, Slot: tb.Slot(idx)})
	}
	return ss
}

// startFast serves a fastpath.Server over ss on loopback and returns it with its address.
func startFast(t testing.TB, o Options, ss []*upstream.Server) (*Server, string) {
	t.Helper()
	if o.ConnectTimeout == 0 {
		o.ConnectTimeout = time.Second
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = 5 * time.Second
	}
	if o.ClientHeaderTimeout == 0 {
		o.ClientHeaderTimeout = 5 * time.Second
	}
	if o.ClientIdleTimeout == 0 {
		o.ClientIdleTimeout = 10 * time.Second
	}
	if o.SendTimeout == 0 {
		o.SendTimeout = 10 * time.Second
	}
	if o.ClientSendTimeout == 0 {
		o.ClientSendTimeout = 10 * time.Second
	}
	if o.Keepalive == 0 {
		o.Keepalive = 8
	}
	s := New("app", ss, o)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(s.Close)
	return s, ln.Addr().String()
}

// startStd serves net/http's path (upstream.NewProxy, httputil.ReverseProxy) over ss.
func startStd(t *testing.T, o upstream.Options, ss []*upstream.Server) string {
	t.Helper()
	o.ConnectTimeout = time.Second
	srv := httptest.NewServer(upstream.NewProxy("app", ss, o))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
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

// client is a raw keep-alive client connection.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

// do sends raw and reads one response (its body read whole).
func (c *client) do(raw string) (*http.Response, string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, raw); err != nil {
		c.t.Fatal(err)
	}
	return c.read(raw)
}

func (c *client) read(raw string) (*http.Response, string) {
	c.t.Helper()
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	for err == nil && resp.StatusCode < 200 { // interim responses
		resp, err = http.ReadResponse(c.br, &http.Request{Method: method})
	}
	if err != nil {
		c.t.Fatalf("response to %q: %v", firstLine(raw), err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("body of the response to %q: %v", firstLine(raw), err)
	}
	return resp, string(body)
}

// closed reports whether the server closes the connection (EOF) within d, all data before
// discarded.
func (c *client) closed(d time.Duration) bool {
	c.c.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, c.br)
	return err == nil
}

func firstLine(s string) string {
	if i := strings.Index(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// rawServer listens on loopback and serves each accepted connection with serve on a goroutine
// of its own, until the test ends; it returns the address. Servers written by hand, that can
// misbehave as no net/http server would, are built on it.
func rawServer(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}
