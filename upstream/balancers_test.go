package upstream

import (
	"hcproxy/config"

	"fmt"
	"math"
	"net/http"
	"testing"

	"hcproxy/shm"
)

func TestLeastConnCountsAcrossWorkersAndWeights(t *testing.T) {
	ss, _ := servers(t, 1, 1, 2)
	lc := NewLeastConn(ss)
	// In-flight requests as other workers would count them in the shared slots.
	ss[0].Slot.AddActive(3)
	ss[1].Slot.AddActive(1)
	ss[2].Slot.AddActive(4) // weight 2: 4/2 = 2 per unit
	if s := lc.Pick("", Available); s != ss[1] {
		t.Fatalf("picked %s, want the least loaded %s", s.Address, ss[1].Address)
	}
	ss[1].Slot.AddActive(2) // 3, 3, 4/2=2
	if s := lc.Pick("", Available); s != ss[2] {
		t.Fatalf("picked %s, want the weighted least loaded %s", s.Address, ss[2].Address)
	}
	// Ties go round robin.
	ss2, _ := servers(t, 1, 1, 1)
	lc2 := NewLeastConn(ss2)
	seen := map[*Server]int{}
	for i := 0; i < 30; i++ {
		seen[lc2.Pick("", Available)]++
	}
	for _, s := range ss2 {
		if seen[s] != 10 {
			t.Fatalf("ties not round robin: %v", seen)
		}
	}
}

func TestRandomTwoPrefersLessLoaded(t *testing.T) {
	ss, _ := servers(t, 1, 1, 1, 1)
	rt := NewRandomTwo(ss)
	ss[0].Slot.AddActive(100)
	counts := map[*Server]int{}
	for i := 0; i < 4000; i++ {
		counts[rt.Pick("", Available)]++
	}
	// The loaded server wins only when both draws hit it: about 1/16 of the time.
	if c := counts[ss[0]]; c > 4000/16*2 {
		t.Errorf("loaded server picked %d of 4000 times, want about 250", c)
	}
	for _, s := range ss[1:] {
		if c := counts[s]; c < 1000 {
			t.Errorf("idle server picked %d of 4000 times: %v", c, counts)
		}
	}
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("user-%d", i)
	}
	return out
}

// Adding or removing one of N servers moves about 1/N of the keys; the keys of a server that
// goes down move to the others and come back when it recovers.
func TestHashIsConsistent(t *testing.T) {
	const n = 5
	ss, tb := servers(t, 1, 1, 1, 1, 1, 1)
	five := NewHash(ss[:n])
	six := NewHash(ss)
	ks := keys(20000)
	moved, spread := 0, map[*Server]int{}
	before := map[string]*Server{}
	for _, k := range ks {
		a, b := five.Pick(k, Available), six.Pick(k, Available)
		before[k] = a
		spread[a]++
		if a != b {
			moved++
			if b != ss[n] {
				t.Fatalf("key %s moved between two old servers when a server was added", k)
			}
		}
	}
	frac := float64(moved) / float64(len(ks))
	t.Logf("adding a 6th server moved %.1f%% of keys (ideal %.1f%%)", 100*frac, 100.0/6)
	if math.Abs(frac-1.0/6) > 0.05 {
		t.Errorf("adding one of 6 servers moved %.1f%% of the keys, want about 16.7%%", 100*frac)
	}
	for s, c := range spread {
		if c < len(ks)/n*7/10 || c > len(ks)/n*13/10 {
			t.Errorf("server %s got %d of %d keys: uneven", s.Address, c, len(ks))
		}
	}
	// Server 2 goes down: only its keys move; it comes back: they return.
	setHealth(t, tb, ss[2], false)
	for _, k := range ks {
		got := five.Pick(k, Available)
		if before[k] != ss[2] && got != before[k] {
			t.Fatalf("key %s of a healthy server moved when another went down", k)
		}
		if got == ss[2] {
			t.Fatal("a down server got a key")
		}
	}
	setHealth(t, tb, ss[2], true)
	for _, k := range ks {
		if five.Pick(k, Available) != before[k] {
			t.Fatalf("key %s did not come back to its server after it recovered", k)
		}
	}
}

func TestHashKeys(t *testing.T) {
	ss, _ := servers(t, 1, 1, 1, 1)
	r1, _ := http.NewRequest("GET", "http://x/a?b=1", nil)
	r1.RemoteAddr = "10.0.0.1:5555"
	r1.Header.Set("X-User", "alice")
	r1.AddCookie(&http.Cookie{Name: "session", Value: "s1"})
	r2 := r1.Clone(r1.Context())
	r2.RemoteAddr = "10.0.0.1:6666" // same client, another port
	h := NewHash(ss)
	for _, key := range []string{"remote_addr", "uri", "header:X-User", "cookie:session"} {
		k, err := config.ParseHashKey(key)
		if err != nil {
			t.Fatal(err)
		}
		if KeyOf(k, r1) == "" {
			t.Errorf("%s: empty key", key)
		}
		if h.Pick(KeyOf(k, r1), Available) != h.Pick(KeyOf(k, r2), Available) {
			t.Errorf("%s: the same key went to two servers", key)
		}
	}
	if got := KeyOf(config.HashKey{}, r1); got != "10.0.0.1" {
		t.Errorf("remote_addr key %q", got)
	}
	if got := KeyOf(config.HashKey{From: config.HashHeader, Name: "x-user"}, r1); got != "alice" {
		t.Errorf("header key %q", got)
	}
}

func TestPoolBackupAndAllDown(t *testing.T) {
	ss, tb := servers(t, 1, 1, 1)
	ss[2].Backup = true
	p := NewPool("round_robin", "fail", ss)
	for i := 0; i < 10; i++ {
		if s, _ := p.Pick("", nil); s == ss[2] {
			t.Fatal("a backup server took traffic while primaries are up")
		}
	}
	setHealth(t, tb, ss[0], false)
	setHealth(t, tb, ss[1], false)
	if s, degraded := p.Pick("", nil); s != ss[2] || degraded {
		t.Fatalf("with every primary down: %v degraded=%v, want the backup", s, degraded)
	}
	setHealth(t, tb, ss[2], false)
	if s, _ := p.Pick("", nil); s != nil {
		t.Fatal("all_down = fail picked a down server")
	}
	anyPool := NewPool("round_robin", "any", ss)
	ss[1].Slot.SetAdmin(shm.Maint)
	s, degraded := anyPool.Pick("", nil)
	if s != ss[0] || !degraded {
		t.Fatalf("all_down = any: %v degraded=%v, want %s (not the one in maintenance)", s, degraded, ss[0].Address)
	}
}

func TestBalancersSkipUnavailable(t *testing.T) {
	for _, name := range []string{"round_robin", "least_conn", "hash", "random_two"} {
		ss, tb := servers(t, 1, 3, 1)
		b := New(name, ss)
		setHealth(t, tb, ss[1], false)
		ss[2].Slot.SetAdmin(shm.Drain)
		for i := 0; i < 50; i++ {
			if s := b.Pick(fmt.Sprintf("/%d", i), Available); s != ss[0] {
				t.Fatalf("%s picked %v, want the only available server", name, s)
			}
		}
	}
}

// Weighted shares hold for every balancer that spreads by weight.
func TestWeightedShares(t *testing.T) {
	for _, name := range []string{"round_robin", "hash", "random_two"} {
		ss, _ := servers(t, 1, 3)
		b := New(name, ss)
		counts := map[*Server]int{}
		const n = 8000
		for i := 0; i < n; i++ {
			counts[b.Pick(fmt.Sprintf("/%d", i), Available)]++
		}
		share := float64(counts[ss[1]]) / n
		if math.Abs(share-0.75) > 0.06 {
			t.Errorf("%s: weight-3 server got %.2f of requests, want 0.75", name, share)
		}
	}
}

// An agent's weight scales the configured one; 0% takes no requests.
func TestAgentWeight(t *testing.T) {
	ss, _ := servers(t, 1, 1)
	ss[0].Slot.SetAgent(50, shm.Ready)
	for _, name := range []string{"round_robin", "random_two", "least_conn"} {
		b := New(name, ss)
		n := 0
		for i := 0; i < 3000; i++ {
			if b.Pick("", Available) == ss[0] {
				n++
			}
		}
		if name != "least_conn" && (n < 800 || n > 1200) {
			t.Errorf("%s: a server at 50%% weight got %d of 3000, want about 1000", name, n)
		}
	}
	ss[0].Slot.SetAgent(0, shm.Ready)
	for _, name := range []string{"round_robin", "random_two", "least_conn"} {
		b := New(name, ss)
		for i := 0; i < 100; i++ {
			if b.Pick("", Available) == ss[0] {
				t.Fatalf("%s picked a server whose agent asked for 0%%", name)
			}
		}
	}
}
