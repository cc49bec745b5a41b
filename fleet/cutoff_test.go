package fleet

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// relay is a loopback TCP relay to one etcd member; cut closes its listener
// and every connection through it, so its port is dead from then on.
type relay struct {
	l     net.Listener
	mu    sync.Mutex
	conns []net.Conn
	cut   bool
}

func startRelay(t testing.TB, target string) *relay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{l: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.DialTimeout("tcp", target, time.Second)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			if r.cut {
				r.mu.Unlock()
				c.Close()
				u.Close()
				return
			}
			r.conns = append(r.conns, c, u)
			r.mu.Unlock()
			go func() { _, _ = io.Copy(u, c); u.Close() }()
			go func() { _, _ = io.Copy(c, u); c.Close() }()
		}
	}()
	t.Cleanup(r.close)
	return r
}

func (r *relay) url() string { return "http://" + r.l.Addr().String() }

func (r *relay) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cut = true
	r.l.Close()
	for _, c := range r.conns {
		c.Close()
	}
}

// TestCutOffHostKeepsNoClaimsPastItsLease: a host whose only endpoint goes
// dead (etcd itself fine) falls back within its lease, and etcd drops its
// claims when the lease lapses, so the other hosts take them; it holds none
// while cut off.
func TestCutOffHostKeepsNoClaimsPastItsLease(t *testing.T) {
	cl := startCluster(t, 3)
	cli := cl.Client()
	keys := testKeys(60)
	rl := startRelay(t, cl.Members[0].Client[len("http://"):])
	var hosts []*host
	for i := range 2 {
		hosts = append(hosts, startHost(t, cl.Endpoints(), "/t6/", fmt.Sprintf("h%d", i), 2, keys))
	}
	cut := startHost(t, []string{rl.url()}, "/t6/", "cut", 2, keys)
	all := append(hosts[:2:2], cut)
	eventually(t, 10*time.Second, "claims settle", func() (bool, string) { return settled(t, cli, "/t6/", keys, all, 2) })
	if cut.c.Stats().Claims == 0 {
		t.Fatal("the host to cut off holds no claims: nothing to test")
	}
	at := time.Now()
	rl.close()
	eventually(t, testTTL+200*time.Millisecond-time.Since(at), "the cut-off host falls back within its lease", func() (bool, string) {
		return cut.c.Fallback(), "still in the fleet"
	})
	eventually(t, testTTL+3*time.Second-time.Since(at), "its claims gone and taken over", func() (bool, string) {
		return settled(t, cli, "/t6/", keys, hosts, 2)
	})
	if got := len(cut.c.Owned()); got != len(keys) {
		t.Errorf("cut-off host owns %d keys, want all %d (checks everything itself)", got, len(keys))
	}
}

// TestDeadEndpointNeverJoins: a host whose endpoint is a dead port stays in
// fallback (owning every key) and writes nothing.
func TestDeadEndpointNeverJoins(t *testing.T) {
	needEtcd(t)
	keys := testKeys(10)
	h := startHost(t, []string{"http://" + freePort(t)}, "/t7/", "lonely", 2, keys)
	end := time.Now().Add(testTTL)
	for time.Now().Before(end) {
		if !h.c.Fallback() || len(h.c.Owned()) != len(keys) || h.c.View() != nil {
			t.Fatalf("a host with a dead endpoint: fallback %v, owns %d, view %v", h.c.Fallback(), len(h.c.Owned()), h.c.View())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := h.c.Stats(); st.Sessions != 0 || st.WriteOps != 0 {
		t.Errorf("stats %+v: joined or wrote with a dead endpoint", st)
	}
}

// TestDuplicateHostWaits: a second process with a member's host name does
// not join (it would share that host's claims): it stays in fallback.
func TestDuplicateHostWaits(t *testing.T) {
	cl := startCluster(t, 3)
	keys := testKeys(10)
	a := startHost(t, cl.Endpoints(), "/t8/", "same", 1, keys)
	eventually(t, 5*time.Second, "first joins", func() (bool, string) { return !a.c.Fallback(), "in fallback" })
	b := startHost(t, cl.Endpoints(), "/t8/", "same", 1, keys)
	end := time.Now().Add(testTTL)
	for time.Now().Before(end) {
		if !b.c.Fallback() {
			t.Fatal("a duplicate host name joined the fleet")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := a.c.Leave(context.Background()); err != nil {
		t.Fatal(err)
	}
	a.kill()
	eventually(t, 3*testTTL, "the duplicate joins once the first left", func() (bool, string) {
		return !b.c.Fallback() && len(b.c.Owned()) == len(keys), fmt.Sprintf("fallback %v owned %d", b.c.Fallback(), len(b.c.Owned()))
	})
}
