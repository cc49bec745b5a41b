package master

import (
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"
)

// bpfSteering returns a steering in bpf mode with one group on a free loopback port, or skips
// the test where BPF is not permitted.
func bpfSteering(t *testing.T) (*steering, *group) {
	t.Helper()
	if _, err := probeBPF(); err != nil {
		t.Skipf("BPF not permitted here (needs CAP_BPF and Linux 4.19+): %v", err)
	}
	s := &steering{mode: "bpf", groups: map[string]*group{}, live: map[int]bool{}, owner: map[int]bool{},
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s.migrate = true
	if err := s.open("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	g := s.groups["127.0.0.1:0"]
	s.migrate = g.migrate
	t.Cleanup(func() { s.closeExcept(nil) })
	return s, g
}

// acceptAll accepts from f until no connection comes within wait, and returns the connections.
func acceptAll(t *testing.T, f *os.File, wait time.Duration) []net.Conn {
	t.Helper()
	ln, err := net.FileListener(f) // a duplicate: closing it leaves f open
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns []net.Conn
	for {
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(wait))
		c, err := ln.Accept()
		if err != nil {
			return conns
		}
		t.Cleanup(func() { c.Close() })
		conns = append(conns, c)
	}
}

func dialN(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	var cs []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	return cs
}

func TestSteeringSelectsLiveSocket(t *testing.T) {
	s, g := bpfSteering(t)
	s0, err := s.socket(g.addr, 0)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := s.socket(g.addr, 1)
	if err != nil {
		t.Fatal(err)
	}
	s.ready(1)
	dialN(t, g.bindAddr(), 20)
	if got := len(acceptAll(t, s1, 300*time.Millisecond)); got != 20 {
		t.Errorf("socket 1 (live) accepted %d of 20 connections", got)
	}
	if got := len(acceptAll(t, s0, 50*time.Millisecond)); got != 0 {
		t.Errorf("socket 0 (not live) accepted %d connections", got)
	}
	// Both live: the hash spreads connections over both.
	s.ready(0)
	dialN(t, g.bindAddr(), 40)
	n0, n1 := len(acceptAll(t, s0, 200*time.Millisecond)), len(acceptAll(t, s1, 200*time.Millisecond))
	if n0+n1 != 40 || n0 == 0 || n1 == 0 {
		t.Errorf("both live: socket 0 got %d, socket 1 got %d of 40", n0, n1)
	}
}

func TestSteeringNothingLiveFallsBackToKernelHash(t *testing.T) {
	s, g := bpfSteering(t)
	s0, _ := s.socket(g.addr, 0)
	s1, _ := s.socket(g.addr, 1)
	dialN(t, g.bindAddr(), 10)
	n0, n1 := len(acceptAll(t, s0, 200*time.Millisecond)), len(acceptAll(t, s1, 200*time.Millisecond))
	if n0+n1 != 10 {
		t.Errorf("nothing live: %d+%d of 10 connections accepted", n0, n1)
	}
}

// TestSteeringMigratesQueue checks that connections queued on the socket of a worker that is gone
// move to a live worker's socket when the master closes it (SELECT_OR_MIGRATE).
func TestSteeringMigratesQueue(t *testing.T) {
	s, g := bpfSteering(t)
	if !s.migrate {
		t.Skip("kernel cannot attach SK_REUSEPORT programs as SELECT_OR_MIGRATE (Linux 5.14+)")
	}
	if _, err := s.socket(g.addr, 0); err != nil {
		t.Fatal(err)
	}
	s1, err := s.socket(g.addr, 1)
	if err != nil {
		t.Fatal(err)
	}
	s.ready(0)
	clients := dialN(t, g.bindAddr(), 5) // queued on socket 0, never accepted there
	s.ready(1)
	s.drop(0) // worker 0 is gone: its socket closes, its queue migrates
	if g.files[0] != nil {
		t.Fatal("the socket of a gone worker is still open although another is live")
	}
	conns := acceptAll(t, s1, 300*time.Millisecond)
	if len(conns) != 5 {
		t.Fatalf("socket 1 accepted %d of the 5 queued connections", len(conns))
	}
	for _, c := range conns {
		c.Write([]byte("x"))
	}
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(time.Second))
		var b [1]byte
		if _, err := c.Read(b[:]); err != nil {
			t.Errorf("client %d after migration: %v", i, err)
		}
	}
}

func TestSteeringKeepsSocketWithoutLivePeer(t *testing.T) {
	s, g := bpfSteering(t)
	f0, _ := s.socket(g.addr, 0)
	s.ready(0)
	s.drop(0) // the only worker died: its socket stays for the next worker at index 0
	if g.files[0] != f0 {
		t.Fatal("the only socket of the group was closed")
	}
	dialN(t, g.bindAddr(), 3)
	again, err := s.socket(g.addr, 0)
	if err != nil || again != f0 {
		t.Fatalf("respawn at index 0 got %v, %v; want the same socket", again, err)
	}
	if got := len(acceptAll(t, f0, 300*time.Millisecond)); got != 3 {
		t.Errorf("the next worker found %d of 3 queued connections", got)
	}
}

func TestSlotCapIsPowerOfTwo(t *testing.T) {
	if slotCap&(slotCap-1) != 0 {
		t.Fatalf("slotCap %d: the program's mask needs a power of two", slotCap)
	}
}
