package probe

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// waitersAt polls g until n probes wait at it.
func waitersAt(t *testing.T, g *Gate, n int) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(time.Millisecond) {
		g.mu.Lock()
		w := g.waiting
		g.mu.Unlock()
		if w >= n {
			return
		}
	}
	t.Fatalf("fewer than %d probes waited at the gate", n)
}

// answerAfter is a raw HTTP server that answers each request after delay (negative: never).
func answerAfter(t *testing.T, delay time.Duration) string {
	t.Helper()
	s := newRawServer(t, func(c net.Conn, done <-chan struct{}) { // the request head is read
		if delay < 0 {
			<-done
			return
		}
		time.Sleep(delay)
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"))
	})
	return s.addr
}

// gatedProbe starts one http probe of addr behind a new gate, over a Conn whose owner keeps the
// deadline, and waits until it waits at the gate.
func gatedProbe(t *testing.T, addr string) (*Gate, *Conn, <-chan Result) {
	t.Helper()
	g, c := new(Gate), new(Conn)
	t.Cleanup(c.Close)
	c.SetOwnerDeadline(true)
	ch := probeAsync(WithGate(context.Background(), g), addr, c)
	waitersAt(t, g, 1)
	return g, c, ch
}

// probeAsync runs one http probe over c with ctx and returns its result's channel.
func probeAsync(ctx context.Context, addr string, c *Conn) <-chan Result {
	p := NewHTTP(HTTPOptions{URI: "/health"}).(ConnProber)
	ch := make(chan Result, 1)
	go func() { ch <- p.ProbeConn(ctx, addr, time.Now().Add(10*time.Second), c) }()
	return ch
}

// A probe dialled under a gate reads its answer only when the gate opens, and its RTT is the
// server's, not the time the answer waited at the gate.
func TestGateHoldsTheReadNotTheRTT(t *testing.T) {
	wrote := make(chan time.Time, 1)
	s := newRawServer(t, func(c net.Conn, done <-chan struct{}) { // the request head is read
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"))
		wrote <- time.Now()
	})
	var g Gate
	var c Conn
	defer c.Close()
	c.SetOwnerDeadline(true)
	t0 := time.Now()
	ch := probeAsync(WithGate(context.Background(), &g), s.addr, &c)
	waitersAt(t, &g, 1)
	answered := (<-wrote).Sub(t0) // the RTT is at most this
	const hold = 300 * time.Millisecond
	time.Sleep(hold) // the answer waits at the gate
	select {
	case r := <-ch:
		t.Fatalf("the probe ended before the gate opened: %+v", r)
	default:
	}
	if n := g.Open(); n != 1 {
		t.Fatalf("Open released %d probes, want 1", n)
	}
	r := <-ch
	if !r.OK() {
		t.Fatalf("probe failed: %v %s", r.Reason, r.Detail)
	}
	if r.RTT >= answered+hold/2 {
		t.Errorf("RTT %v counts the %v the answer waited at the gate (the server answered %v after the probe began, at most)", r.RTT, hold, answered)
	}
}

// An answer not in when the gate opens is read at a later opening, up to gateWaits openings,
// and then waited for in the poller; its RTT is counted in full.
func TestGateLateAnswer(t *testing.T) {
	const delay = 200 * time.Millisecond
	addr := answerAfter(t, delay)
	g, _, ch := gatedProbe(t, addr)
	for i := 1; i < gateWaits; i++ {
		g.Open()
		waitersAt(t, g, 1) // not in yet: back at the gate, not in the poller
	}
	g.Open() // the last opening: from here the poller
	r := <-ch
	if !r.OK() {
		t.Fatalf("probe failed: %v %s", r.Reason, r.Detail)
	}
	if r.RTT < delay {
		t.Errorf("RTT %v, want at least the server's %v", r.RTT, delay)
	}
}

// A kept connection whose answer came after the gate's first opening but by a later one is
// read there and stays out of the poller (registered, each of its later answers would wake the
// worker), and the RTT is still the server's.
func TestGateKeptConnectionStaysOutOfThePoller(t *testing.T) {
	const delay = 50 * time.Millisecond
	s := newRawServer(t, func(c net.Conn, done <-chan struct{}) {
		time.Sleep(delay)
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"))
		<-done // the connection stays open: kept by the probe
	})
	g, c := new(Gate), new(Conn)
	defer c.Close()
	c.SetOwnerDeadline(true)
	p := NewHTTP(HTTPOptions{URI: "/health", KeepAlive: true}).(ConnProber)
	ch := make(chan Result, 1)
	go func() {
		ch <- p.ProbeConn(WithGate(context.Background(), g), s.addr, time.Now().Add(10*time.Second), c)
	}()
	waitersAt(t, g, 1)
	g.Open() // too soon: the server answers delay after the request
	waitersAt(t, g, 1)
	time.Sleep(2 * delay)
	g.Open()
	r := <-ch
	if !r.OK() {
		t.Fatalf("probe failed: %v %s", r.Reason, r.Detail)
	}
	if r.RTT < delay || r.RTT > delay+delay/2 {
		t.Errorf("RTT %v, want the server's %v (not the %v the answer waited at the gate)", r.RTT, delay, delay)
	}
	c.mu.Lock()
	nc := c.nc
	c.mu.Unlock()
	tc, ok := nc.(*tcpConn)
	if !ok {
		t.Fatalf("kept connection %T, want *tcpConn", nc)
	}
	tc.mu.Lock()
	registered := tc.f != nil
	tc.mu.Unlock()
	if registered {
		t.Error("the kept connection was registered with the poller for an answer read at the gate")
	}
}

// A probe expired by its owner while it waits at the gate fails with a timeout once the gate
// opens; a probe whose context ends leaves the gate without it.
func TestGateExpireAndCancel(t *testing.T) {
	addr := answerAfter(t, -1)
	g, c, ch := gatedProbe(t, addr)
	c.Expire()
	g.Open()
	if r := <-ch; r.Reason != Timeout {
		t.Fatalf("expired probe: %v %s, want timeout", r.Reason, r.Detail)
	}

	ctx, cancel := context.WithCancel(WithGate(context.Background(), g))
	var c2 Conn
	defer c2.Close()
	ch = probeAsync(ctx, addr, &c2)
	waitersAt(t, g, 1)
	cancel()
	c2.Close() // what the owner does when it stops
	select {
	case r := <-ch:
		if r.OK() {
			t.Fatalf("cancelled probe passed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled probe still waits at the gate")
	}
}

// Probes without a gate in their context never wait for one.
func TestNoGateNoWait(t *testing.T) {
	addr := answerAfter(t, 0)
	var c Conn
	defer c.Close()
	c.SetOwnerDeadline(true)
	select {
	case r := <-probeAsync(context.Background(), addr, &c):
		if !r.OK() {
			t.Fatalf("probe failed: %v %s", r.Reason, r.Detail)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a probe without a gate did not end")
	}
}

// A server that has not closed its side when the check ends sees a FIN (EOF), never a reset:
// applications log resets as errors. (One that has closed gets the reset: it sees nothing.)
func TestGatedCheckEndsWithFINToAnOpenServer(t *testing.T) {
	readErr := make(chan error, 1)
	s := newRawServer(t, func(c net.Conn, done <-chan struct{}) { // the request head is read
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		readErr <- err
	})
	var g Gate
	var c Conn
	defer c.Close()
	c.SetOwnerDeadline(true)
	ch := probeAsync(WithGate(context.Background(), &g), s.addr, &c)
	waitersAt(t, &g, 1)
	time.Sleep(50 * time.Millisecond)
	g.Open()
	if r := <-ch; !r.OK() {
		t.Fatalf("probe failed: %v %s", r.Reason, r.Detail)
	}
	if err := <-readErr; err != io.EOF {
		t.Fatalf("the server read %v after the check, want EOF (a FIN)", err)
	}
}

// Arrived tells the owner of the first probe to come to the shut gate, also one that comes after
// the gate's last opening, so that a gate is never left shut on a probe with nothing to open it.
func TestGateArrivedAfterAnOpening(t *testing.T) {
	addr := answerAfter(t, 0)
	var g Gate
	arrived := g.Arrived()
	g.Open() // an opening before the probe comes
	var c Conn
	defer c.Close()
	c.SetOwnerDeadline(true)
	ch := probeAsync(WithGate(context.Background(), &g), addr, &c)
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("no word of the probe waiting at the gate")
	}
	// Opened on each word, as the checker does: an answer not in at one opening is read at the
	// next, and the probe's return to the gate is told again.
	for g.Open(); ; {
		select {
		case r := <-ch:
			if !r.OK() {
				t.Fatalf("probe failed: %v %s", r.Reason, r.Detail)
			}
			return
		case <-arrived:
			g.Open()
		case <-time.After(10 * time.Second):
			t.Fatal("the probe did not end")
		}
	}
}
