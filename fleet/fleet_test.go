package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

const testTTL = 2 * time.Second

// host is one coordinator under test, driven like a real host: whenever its
// owned set changes it publishes its verdict on every owned key.
type host struct {
	c      *Coordinator
	cancel context.CancelFunc
	done   chan struct{}

	mu   sync.Mutex
	down map[string]bool // keys this host sees down
}

func testLog() *slog.Logger {
	if os.Getenv("FLEET_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func startHost(t testing.TB, endpoints []string, prefix, name string, checkers int, keys []string) *host {
	t.Helper()
	c, err := New(Config{Endpoints: endpoints, Prefix: prefix, Host: name, Checkers: checkers, TTL: testTTL}, testLog())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &host{c: c, cancel: cancel, done: make(chan struct{}), down: map[string]bool{}}
	c.SetKeys(keys)
	go func() { _ = c.Run(ctx); close(h.done) }()
	go h.drive(ctx)
	t.Cleanup(h.kill)
	return h
}

func (h *host) drive(ctx context.Context) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		h.mu.Lock()
		for k := range h.c.Owned() {
			h.c.Publish(k, !h.down[k])
		}
		h.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-h.c.Changes():
		case <-tick.C:
		}
	}
}

func (h *host) see(key string, up bool) {
	h.mu.Lock()
	h.down[key] = !up
	h.mu.Unlock()
	h.c.Publish(key, up)
}

// kill stops the host without leaving: its lease lapses as after a crash.
func (h *host) kill() {
	h.cancel()
	<-h.done
	h.c.Close()
}

func testKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("10.0.%d.%d:8080#%08x", i/250, i%250, i*2654435761)
	}
	return keys
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	var last string
	for {
		ok, msg := cond()
		if ok {
			return time.Since(start)
		}
		last = msg
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s: %s", what, within, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// claimsInEtcd reads every claim under prefix: key -> sorted hosts.
func claimsInEtcd(t testing.TB, cli *clientv3.Client, prefix string) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, prefix+kindClaim, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	l := layout{prefix}
	out := map[string][]string{}
	for _, kv := range r.Kvs {
		_, key, h, ok := l.parse(string(kv.Key))
		if !ok {
			t.Fatalf("unparsable claim %q", kv.Key)
		}
		out[key] = append(out[key], h)
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}

// topRanked returns the n best-ranked of hosts for key, sorted.
func topRanked(key string, hosts []string, n int) []string {
	h := append([]string(nil), hosts...)
	sort.Slice(h, func(i, j int) bool { return above(key, h[i], h[j]) })
	h = h[:min(n, len(h))]
	sort.Strings(h)
	return h
}

// settled reports whether every key is claimed in etcd by exactly its
// n best-ranked hosts, and every host's Owned agrees with etcd.
func settled(t testing.TB, cli *clientv3.Client, prefix string, keys []string, hosts []*host, n int) (bool, string) {
	claims := claimsInEtcd(t, cli, prefix)
	var names []string
	for _, h := range hosts {
		names = append(names, h.c.Host())
	}
	for _, k := range keys {
		want := topRanked(k, names, n)
		if strings.Join(claims[k], ",") != strings.Join(want, ",") {
			return false, fmt.Sprintf("key %s claimed by %v, want %v", k, claims[k], want)
		}
	}
	if len(claims) != len(keys) {
		return false, fmt.Sprintf("%d keys claimed, want %d", len(claims), len(keys))
	}
	for _, h := range hosts {
		if h.c.Fallback() {
			return false, h.c.Host() + " in fallback"
		}
		owned := h.c.Owned()
		for _, k := range keys {
			inEtcd := false
			for _, x := range claims[k] {
				inEtcd = inEtcd || x == h.c.Host()
			}
			if owned[k] != inEtcd {
				return false, fmt.Sprintf("%s: Owned[%s] = %v, etcd says %v", h.c.Host(), k, owned[k], inEtcd)
			}
		}
	}
	return true, ""
}

// TestEachKeyClaimedByCheckersHosts: with 4 hosts and checkers = 2, every
// key ends up claimed by exactly its 2 best-ranked hosts, as etcd and each
// host's Owned say; every host's view shows those 2 as its checkers.
func TestEachKeyClaimedByCheckersHosts(t *testing.T) {
	cl := startCluster(t, 3)
	cli := cl.Client()
	keys := testKeys(200)
	var hosts []*host
	for i := range 4 {
		hosts = append(hosts, startHost(t, cl.Endpoints(), "/t1/", fmt.Sprintf("h%d", i), 2, keys))
	}
	eventually(t, 10*time.Second, "claims settle", func() (bool, string) { return settled(t, cli, "/t1/", keys, hosts, 2) })
	eventually(t, 5*time.Second, "views agree", func() (bool, string) {
		for _, h := range hosts {
			v := h.c.View()
			for _, k := range keys {
				if len(v[k].Checkers) != 2 || v[k].State != Up {
					return false, fmt.Sprintf("%s: %s: %+v", h.c.Host(), k, v[k])
				}
			}
		}
		return true, ""
	})
	var total int64
	for _, h := range hosts {
		total += h.c.Stats().Claims
	}
	if total != int64(2*len(keys)) {
		t.Errorf("claims held across hosts = %d, want %d", total, 2*len(keys))
	}
}

// TestDeadHostClaimsMove: a host stopped without leaving (a crash) loses its
// claims when its lease lapses, and the next hosts in the ranking take them,
// within the lease and a margin.
func TestDeadHostClaimsMove(t *testing.T) {
	cl := startCluster(t, 3)
	cli := cl.Client()
	keys := testKeys(100)
	var hosts []*host
	for i := range 3 {
		hosts = append(hosts, startHost(t, cl.Endpoints(), "/t2/", fmt.Sprintf("h%d", i), 2, keys))
	}
	eventually(t, 10*time.Second, "claims settle", func() (bool, string) { return settled(t, cli, "/t2/", keys, hosts, 2) })
	hosts[0].kill()
	took := eventually(t, testTTL+3*time.Second, "claims move off the dead host", func() (bool, string) {
		return settled(t, cli, "/t2/", keys, hosts[1:], 2)
	})
	t.Logf("claims moved %s after the kill (lease %s)", took.Round(10*time.Millisecond), testTTL)
}

// TestOneEtcdMemberStopped: one of three etcd members stopped changes
// nothing: no host falls back, every claim stays. The member stopped is the
// leader: the election that follows cuts every watch, which the sessions
// follow again from the last revision they saw.
func TestOneEtcdMemberStopped(t *testing.T) {
	cl := startCluster(t, 3)
	cli := cl.Client()
	keys := testKeys(100)
	var hosts []*host
	for i := range 3 {
		hosts = append(hosts, startHost(t, cl.Endpoints(), "/t3/", fmt.Sprintf("h%d", i), 2, keys))
	}
	eventually(t, 10*time.Second, "claims settle", func() (bool, string) { return settled(t, cli, "/t3/", keys, hosts, 2) })
	leader := cl.Leader()
	if leader == nil {
		t.Fatal("no etcd member leads")
	}
	cl.Stop(leader)
	end := time.Now().Add(2 * testTTL)
	for time.Now().Before(end) {
		for _, h := range hosts {
			if h.c.Fallback() || h.c.Stats().Fallbacks != 0 {
				t.Fatalf("%s fell back with one etcd member of three stopped", h.c.Host())
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if ok, msg := settled(t, cli, "/t3/", keys, hosts, 2); !ok {
		t.Fatalf("claims changed with one etcd member stopped: %s", msg)
	}
}

// TestAllEtcdStopped: with every etcd member stopped, each host reports
// fallback within its lease (owning every key, serving no fleet view), and
// rejoins when etcd is back.
func TestAllEtcdStopped(t *testing.T) {
	cl := startCluster(t, 3)
	cli := cl.Client()
	keys := testKeys(50)
	var hosts []*host
	for i := range 3 {
		hosts = append(hosts, startHost(t, cl.Endpoints(), "/t4/", fmt.Sprintf("h%d", i), 2, keys))
	}
	eventually(t, 10*time.Second, "claims settle", func() (bool, string) { return settled(t, cli, "/t4/", keys, hosts, 2) })
	stopped := time.Now()
	cl.StopAll()
	eventually(t, testTTL+200*time.Millisecond-time.Since(stopped), "fallback within the lease", func() (bool, string) {
		for _, h := range hosts {
			if !h.c.Fallback() {
				return false, h.c.Host() + " still in the fleet"
			}
		}
		return true, ""
	})
	for _, h := range hosts {
		if len(h.c.Owned()) != len(keys) || h.c.View() != nil || h.c.Members() != nil {
			t.Errorf("%s in fallback: owns %d of %d keys, view %v", h.c.Host(), len(h.c.Owned()), len(keys), h.c.View() != nil)
		}
	}
	cl.RestartAll()
	eventually(t, 3*testTTL+5*time.Second, "rejoin after etcd returns", func() (bool, string) { return settled(t, cli, "/t4/", keys, hosts, 2) })
	for _, h := range hosts {
		if st := h.c.Stats(); st.Fallbacks == 0 || st.Sessions < 2 {
			t.Errorf("%s: stats %+v, want a fallback and a second session", h.c.Host(), st)
		}
	}
}

// TestVotes: with 3 checkers, one host seeing a server down leaves it up
// for the fleet; two make it down; every host's view says the same.
func TestVotes(t *testing.T) {
	cl := startCluster(t, 3)
	cli := cl.Client()
	keys := []string{"10.1.1.1:80#v"}
	var hosts []*host
	for i := range 3 {
		hosts = append(hosts, startHost(t, cl.Endpoints(), "/t5/", fmt.Sprintf("h%d", i), 3, keys))
	}
	eventually(t, 10*time.Second, "claims settle", func() (bool, string) { return settled(t, cli, "/t5/", keys, hosts, 3) })
	expect := func(what string, state State, down int) {
		t.Helper()
		eventually(t, 5*time.Second, what, func() (bool, string) {
			for _, h := range hosts {
				v := h.c.View()[keys[0]]
				if v.State != state || len(v.Down) != down || len(v.Checkers) != 3 {
					return false, fmt.Sprintf("%s sees %+v", h.c.Host(), v)
				}
			}
			return true, ""
		})
	}
	expect("all up", Up, 0)
	hosts[0].see(keys[0], false)
	expect("one of three says down: up", Up, 1)
	hosts[1].see(keys[0], false)
	expect("two of three say down: down", Down, 2)
	hosts[0].see(keys[0], true)
	expect("back to one of three: up", Up, 1)
}
