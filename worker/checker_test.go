package worker

import (
	"testing"
	"time"

	"hcproxy/shm"
)

// Rendezvous hashing spreads slots evenly, and a worker leaving moves only its own slots.
func TestPreferredSpreadsAndMovesLittle(t *testing.T) {
	toks := []shm.Token{1<<32 | 100, 2<<32 | 101, 3<<32 | 102, 4<<32 | 103}
	v := view{live: toks}
	before := map[uint64]shm.Token{}
	count := map[shm.Token]int{}
	const n = 4000
	for i := 0; i < n; i++ {
		seed := seedOf(uint64(i), "127.0.0.1:80")
		p := v.preferred(seed)
		before[seed] = p
		count[p]++
	}
	for _, tok := range toks {
		if c := count[tok]; c < n/4*8/10 || c > n/4*12/10 {
			t.Errorf("worker %x prefers %d of %d slots, want about %d", tok, c, n, n/4)
		}
	}
	v3 := view{live: toks[:3]}
	for seed, p := range before {
		q := v3.preferred(seed)
		if p != toks[3] && q != p {
			t.Fatalf("slot moved from %x to %x though its worker stayed", p, q)
		}
	}
}

func TestTakeable(t *testing.T) {
	ready, draining, old := shm.Token(1<<32|10), shm.Token(2<<32|11), shm.Token(3<<32|12)
	v := view{gen: 5, workers: map[shm.Token]shm.WorkerInfo{
		ready:    {Token: ready, Generation: 5, State: shm.WorkerReady},
		draining: {Token: draining, Generation: 5, State: shm.WorkerDraining},
		old:      {Token: old, Generation: 4, State: shm.WorkerReady},
	}}
	now := int64(1e12)
	cases := []struct {
		name  string
		owner shm.Token
		lease int64
		want  bool
	}{
		{"free", 0, 0, true},
		{"ready owner with a lease", ready, now + 1, false},
		{"ready owner whose lease lapsed (hung)", ready, now - 1, true},
		// Alive owners that drain or belong to an older generation hand their slots back
		// themselves, after recording the probe they have in flight (issue 13, finding 1).
		{"draining owner", draining, now + 1, false},
		{"owner of an older generation", old, now + 1, false},
		{"draining owner whose lease lapsed (hung)", draining, now - 1, true},
		{"owner of an older generation whose lease lapsed", old, now - 1, true},
		{"owner no longer in the table (reaped)", 9<<32 | 99, now + 1, true},
	}
	for _, c := range cases {
		if got := v.takeable(c.owner, c.lease, now); got != c.want {
			t.Errorf("%s: takeable = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestIntervalAfter pins the state-dependent schedule: fast_interval while a streak is under way,
// down_interval while down, interval otherwise, and interval for every state when neither is set.
func TestIntervalAfter(t *testing.T) {
	iv, down, fast := time.Second, 10*time.Second, 200*time.Millisecond
	both := &target{interval: iv, downInterval: down, fastInterval: fast}
	plain := &target{interval: iv}
	cases := []struct {
		name string
		t    *target
		ok   bool
		h    shm.Health
		want time.Duration
	}{
		{"steady up", both, true, shm.Up, iv},
		{"first failure while up: falling", both, false, shm.Up, fast},
		{"steady down", both, false, shm.Down, down},
		{"first pass while down: rising", both, true, shm.Down, fast},
		{"down without fast_interval", &target{interval: iv, downInterval: down}, true, shm.Down, down},
		{"neither set, down", plain, false, shm.Down, iv},
		{"neither set, falling", plain, false, shm.Up, iv},
	}
	for _, c := range cases {
		if got := c.t.intervalAfter(c.ok, c.h); got != c.want {
			t.Errorf("%s: intervalAfter = %v, want %v", c.name, got, c.want)
		}
	}
	if got := both.longestInterval(); got != down {
		t.Errorf("longestInterval = %v, want %v", got, down)
	}
}
