package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// keepServer is a real HTTP/1.1 server on loopback that counts the connections it accepted and
// answers GET /health with status (200 unless set), keeping connections alive.
type keepServer struct {
	addr    string
	accepts atomic.Int64
	status  atomic.Int64
	mu      sync.Mutex
	conns   []net.Conn
}

func startKeepServer(t *testing.T) *keepServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &keepServer{addr: ln.Addr().String()}
	s.status.Store(200)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					code := int(s.status.Load())
					resp := "HTTP/1.1 " + itoa3(code) + " " + http.StatusText(code) + "\r\nContent-Length: 3\r\n"
					if req.Close {
						resp += "Connection: close\r\n"
					}
					if _, err := io.WriteString(c, resp+"\r\nok\n"); err != nil || req.Close {
						return
					}
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.closeAll()
		wg.Wait()
	})
	return s
}

func itoa3(n int) string {
	return string([]byte{byte('0' + n/100), byte('0' + n/10%10), byte('0' + n%10)})
}

// closeAll closes every connection the server holds (as a server closing idle connections).
func (s *keepServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func probeConn(t *testing.T, p Prober, addr string, c *Conn) Result {
	t.Helper()
	return p.(ConnProber).ProbeConn(t.Context(), addr, time.Now().Add(2*time.Second), c)
}

// With keepalive, N probes over one Conn use one connection; without, one each.
func TestKeepAliveReusesTheConnection(t *testing.T) {
	for _, keep := range []bool{true, false} {
		srv := startKeepServer(t)
		p := NewHTTP(HTTPOptions{URI: "/health", KeepAlive: keep})
		var c Conn
		const n = 20
		for i := range n {
			if r := probeConn(t, p, srv.addr, &c); !r.OK() || r.Bytes == 0 {
				t.Fatalf("keepalive=%v probe %d: %v %s (%d bytes)", keep, i, r.Reason, r.Detail, r.Bytes)
			}
		}
		want := int64(1)
		if !keep {
			want = n
		}
		if got := srv.accepts.Load(); got != want {
			t.Errorf("keepalive=%v: %d probes made %d connections, want %d", keep, n, got, want)
		}
		c.Close()
	}
}

// A kept connection the server closed meanwhile is re-dialled within the same probe, which
// passes: the request was not processed, so it is sent once more on a new connection.
func TestKeepAliveRedialsAfterTheServerClosedIt(t *testing.T) {
	srv := startKeepServer(t)
	p := NewHTTP(HTTPOptions{URI: "/health", KeepAlive: true})
	var c Conn
	defer c.Close()
	for i := range 3 {
		if r := probeConn(t, p, srv.addr, &c); !r.OK() {
			t.Fatalf("probe %d: %v %s", i, r.Reason, r.Detail)
		}
		srv.closeAll() // the server closes its idle connections between probes
		deadline := time.Now().Add(2 * time.Second)
		for srv.accepts.Load() != int64(i+1) && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	if got := srv.accepts.Load(); got != 3 {
		t.Errorf("3 probes, each after the server closed the last connection: %d connections, want 3", got)
	}
	if c.Dials() != 3 {
		t.Errorf("Dials = %d, want 3", c.Dials())
	}
}

// A failed probe closes the kept connection: the next probe dials a new one.
func TestKeepAliveFailureClosesTheConnection(t *testing.T) {
	srv := startKeepServer(t)
	p := NewHTTP(HTTPOptions{URI: "/health", KeepAlive: true})
	var c Conn
	defer c.Close()
	probeConn(t, p, srv.addr, &c)
	srv.status.Store(503)
	if r := probeConn(t, p, srv.addr, &c); r.Reason != BadStatus {
		t.Fatalf("got %v, want bad_status", r.Reason)
	}
	srv.status.Store(200)
	if r := probeConn(t, p, srv.addr, &c); !r.OK() {
		t.Fatalf("got %v %s", r.Reason, r.Detail)
	}
	if got := srv.accepts.Load(); got != 2 {
		t.Errorf("connections: %d, want 2 (the failed probe closed the first)", got)
	}
}

// A timed-out probe closes the kept connection, and Conn.Close cuts a probe in flight short.
func TestKeepAliveTimeoutAndCloseCutShort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed := make(chan struct{}, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { // reads and never answers; reports when the prober closed it
				io.Copy(io.Discard, c)
				c.Close()
				closed <- struct{}{}
			}()
		}
	}()
	p := NewHTTP(HTTPOptions{URI: "/health", KeepAlive: true})
	var c Conn
	r := p.(ConnProber).ProbeConn(context.Background(), ln.Addr().String(), time.Now().Add(100*time.Millisecond), &c)
	if r.Reason != Timeout {
		t.Fatalf("got %v, want timeout", r.Reason)
	}
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		t.Fatal("the timed-out probe kept its connection")
	}
	res := make(chan Result, 1)
	go func() {
		res <- p.(ConnProber).ProbeConn(context.Background(), ln.Addr().String(), time.Now().Add(10*time.Second), &c)
	}()
	for c.Dials() != 2 {
		time.Sleep(time.Millisecond)
	}
	c.Close()
	select {
	case r := <-res:
		if r.OK() {
			t.Fatal("a probe cut short passed")
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Close did not cut the probe in flight short")
	}
}

// The http probe over a kept connection allocates nothing per check once its Conn is warm: the
// request and the read buffers are the Conn's (a regression to a buffer per probe shows here).
// The server writes canned bytes from a fixed buffer, so the count is the probe's own.
func TestKeepAliveProbeAllocations(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		var buf [4096]byte
		resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
		n := 0
		for {
			m, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += m
			if n >= 4 && string(buf[n-4:n]) == "\r\n\r\n" { // one whole request (no body)
				n = 0
				if _, err := c.Write(resp); err != nil {
					return
				}
			}
		}
	}()
	p := NewHTTP(HTTPOptions{URI: "/health", KeepAlive: true}).(ConnProber)
	var c Conn
	defer c.Close()
	ctx, addr := context.Background(), ln.Addr().String()
	deadline := time.Now().Add(10 * time.Second)
	allocs := testing.AllocsPerRun(200, func() {
		if r := p.ProbeConn(ctx, addr, deadline, &c); !r.OK() {
			t.Fatalf("%v %s", r.Reason, r.Detail)
		}
	})
	if c.Dials() != 1 {
		t.Fatalf("%d connections, want 1", c.Dials())
	}
	if allocs > 1 {
		t.Errorf("%.1f allocations per kept-alive probe, want at most 1", allocs)
	}
}

// grpc and https with keepalive: N probes over one Conn use one connection (HTTP/2); a failed
// check closes it, and the next dials again; Conn.Close closes it.
func TestKeepAliveGRPCAndHTTPS(t *testing.T) {
	addr, hs := grpcServer(t)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	p, err := NewGRPC(GRPCOptions{KeepAlive: true})
	if err != nil {
		t.Fatal(err)
	}
	var c Conn
	for i := range 10 {
		if r := probeConn(t, p, addr, &c); !r.OK() || r.Bytes == 0 {
			t.Fatalf("grpc probe %d: %v %s (%d bytes)", i, r.Reason, r.Detail, r.Bytes)
		}
	}
	if c.Dials() != 1 {
		t.Errorf("grpc: 10 probes dialled %d connections, want 1", c.Dials())
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if r := probeConn(t, p, addr, &c); r.Reason != NotServing {
		t.Fatalf("got %v, want not_serving", r.Reason)
	}
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	if r := probeConn(t, p, addr, &c); !r.OK() || c.Dials() != 2 {
		t.Errorf("after a failed check: %v, %d connections, want ok over a second one", r.Reason, c.Dials())
	}
	c.Close()

	ca := newTestCA(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, time.Now().Add(30*24*time.Hour), false, "127.0.0.1")}}
	srv.StartTLS()
	defer srv.Close()
	hp, err := NewHTTPS(HTTPOptions{URI: "/health", KeepAlive: true}, TLSOptions{CAFile: ca.writeCA(t)})
	if err != nil {
		t.Fatal(err)
	}
	var hc Conn
	defer hc.Close()
	haddr := srv.Listener.Addr().String()
	for i := range 10 {
		if r := probeConn(t, hp, haddr, &hc); !r.OK() {
			t.Fatalf("https probe %d: %v %s", i, r.Reason, r.Detail)
		}
	}
	if hc.Dials() != 1 {
		t.Errorf("https: 10 probes dialled %d connections, want 1", hc.Dials())
	}
}

// With SetOwnerDeadline the http probe sets no deadline of its own: a probe of a server that
// never answers runs past its deadline until the owner calls Expire, then fails with a timeout
// and does not keep its connection; the next probe dials again and passes.
func TestOwnerDeadlineExpire(t *testing.T) {
	for _, keep := range []bool{true, false} {
		srv := startKeepServer(t)
		hang := make(chan struct{})
		silent := acceptLoop(t, func(c net.Conn, done <-chan struct{}) { // reads, never answers
			go io.Copy(io.Discard, c)
			select {
			case <-hang:
			case <-done:
			}
		})
		p := NewHTTP(HTTPOptions{URI: "/health", KeepAlive: keep}).(ConnProber)
		var c Conn
		c.SetOwnerDeadline(true)
		res := make(chan Result, 1)
		start := time.Now()
		go func() { res <- p.ProbeConn(t.Context(), silent, time.Now().Add(20*time.Millisecond), &c) }()
		select {
		case r := <-res:
			t.Fatalf("keepalive=%v: the probe ended by itself after %v (%v %s); the owner keeps the deadline", keep, time.Since(start), r.Reason, r.Detail)
		case <-time.After(300 * time.Millisecond):
		}
		c.Expire()
		select {
		case r := <-res:
			if r.Reason != Timeout {
				t.Errorf("keepalive=%v: expired probe: %v %s, want timeout", keep, r.Reason, r.Detail)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("keepalive=%v: Expire did not end the probe in flight", keep)
		}
		close(hang)
		// Expire with no probe in flight does nothing; a probe after it passes on a new connection.
		c.Expire()
		if r := p.ProbeConn(t.Context(), srv.addr, time.Now().Add(2*time.Second), &c); !r.OK() {
			t.Errorf("keepalive=%v: the probe after an expired one: %v %s", keep, r.Reason, r.Detail)
		}
		if keep {
			if r := p.ProbeConn(t.Context(), srv.addr, time.Now().Add(2*time.Second), &c); !r.OK() || srv.accepts.Load() != 1 {
				t.Errorf("keepalive: second probe %v, %d connections to the server, want 1", r.Reason, srv.accepts.Load())
			}
		}
		if d := c.Dials(); d != 2 {
			t.Errorf("keepalive=%v: %d dials, want 2 (the expired connection not kept)", keep, d)
		}
		c.Close()
	}
}
