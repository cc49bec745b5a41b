package fleet

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestFleetScale is make bench-fleet, not a test: it runs only with
// HCPROXY_BENCH_FLEET=1. For each number of hosts H (coordinators in this
// process) and servers S it starts a fresh fleet against a real 3-member
// etcd cluster, lets the claims settle, then measures two windows in which
// every owner "probes" each key it owns once per second (Publish): a steady
// one (no server changes state) and one in which 1% of the servers flip
// every second. It prints one RESULT line per (H, S): claims per key,
// probes per server per interval, and etcd writes per second in each
// window, which must follow state changes, not probes.
func TestFleetScale(t *testing.T) {
	if os.Getenv("HCPROXY_BENCH_FLEET") == "" {
		t.Skip("make bench-fleet runs this (HCPROXY_BENCH_FLEET=1)")
	}
	cl := startCluster(t, 3)
	hostsList := envInts("BENCH_FLEET_HOSTS", []int{1, 3, 10, 20})
	servers := envInts("BENCH_FLEET_SERVERS", []int{1000, 10000})
	window := 5 * time.Second
	if w, err := time.ParseDuration(os.Getenv("BENCH_FLEET_WINDOW")); err == nil {
		window = w
	}
	for _, s := range servers {
		for _, h := range hostsList {
			benchOne(t, cl, h, s, window)
		}
	}
}

func envInts(name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Fields(v) {
		n, err := strconv.Atoi(f)
		if err != nil {
			panic(fmt.Sprintf("%s: %q is not a number", name, f))
		}
		out = append(out, n)
	}
	return out
}

func benchOne(t *testing.T, cl *cluster, nh, ns int, window time.Duration) {
	const checkers = 2
	prefix := fmt.Sprintf("/bench-%d-%d/", nh, ns)
	keys := testKeys(ns)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var cs []*Coordinator
	start := time.Now()
	for i := range nh {
		c, err := New(Config{Endpoints: cl.Endpoints(), Prefix: prefix, Host: fmt.Sprintf("b%02d", i), Checkers: checkers, TTL: 10 * time.Second}, testLog())
		if err != nil {
			t.Fatal(err)
		}
		c.SetKeys(keys)
		cs = append(cs, c)
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Run(ctx) }()
	}
	// down is the state every owner reports; flipping it is a state change.
	var downMu sync.RWMutex
	down := map[string]bool{}
	probes := make([]int64, nh) // Publish calls per host; read after the probe loops stop
	probeLoop := func(i int, c *Coordinator) {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			downMu.RLock()
			for k := range c.Owned() {
				c.Publish(k, !down[k])
				probes[i]++
			}
			downMu.RUnlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}
	for i, c := range cs { // hosts probe and publish from the start, as real ones do
		wg.Add(1)
		go probeLoop(i, c)
	}
	// Settled: every key owned by exactly min(checkers, H) hosts and no
	// write for a second.
	deadline := time.Now().Add(3 * time.Minute)
	lastOps, quietSince := sumWriteOps(cs), time.Now()
	var settle time.Duration
	for settle == 0 {
		if ops := sumWriteOps(cs); ops != lastOps {
			lastOps, quietSince = ops, time.Now()
		}
		exact := true
		perKey := make(map[string]int, ns)
		for _, c := range cs {
			if c.Fallback() {
				exact = false
				break
			}
			for k := range c.Owned() {
				perKey[k]++
			}
		}
		for _, k := range keys {
			exact = exact && perKey[k] == min(checkers, nh)
		}
		switch {
		case exact && time.Since(quietSince) > time.Second:
			settle = quietSince.Sub(start)
		case time.Now().After(deadline):
			t.Fatalf("H=%d S=%d: claims not settled after 3m", nh, ns)
		default:
			time.Sleep(100 * time.Millisecond)
		}
	}
	startupOps := lastOps
	perKey := map[string]int{}
	for _, c := range cs {
		for k := range c.Owned() {
			perKey[k]++
		}
	}
	lo, hi := ns, 0
	for _, k := range keys {
		lo, hi = min(lo, perKey[k]), max(hi, perKey[k])
	}
	// measure runs one window, flipping flipsPerSec servers at the start of
	// each second, then waits one probe interval so the owners report the
	// last flips. It returns etcd write ops per second, write ops per flip,
	// and the probes per server per interval (the owned keys summed over the
	// hosts, sampled each second, over S).
	measure := func(flipsPerSec int) (writesPerSec, writesPerFlip, probesPerServer float64) {
		w0 := sumWriteOps(cs)
		t0 := time.Now()
		next, samples, owned := 0, 0, 0
		for time.Since(t0) < window {
			downMu.Lock()
			for range flipsPerSec {
				k := keys[next%ns]
				down[k] = !down[k]
				next++
			}
			downMu.Unlock()
			for _, c := range cs {
				owned += len(c.Owned())
			}
			samples++
			time.Sleep(time.Second)
		}
		time.Sleep(1200 * time.Millisecond)
		w := float64(sumWriteOps(cs) - w0)
		writesPerSec = w / time.Since(t0).Seconds()
		if next > 0 {
			writesPerFlip = w / float64(next)
		}
		return writesPerSec, writesPerFlip, float64(owned) / float64(samples) / float64(ns)
	}
	steadyW, _, pps := measure(0)
	flips := max(ns/100, 1)
	flipW, perFlip, _ := measure(flips)
	probeRate := float64(sumProbes(probes, &downMu)) / time.Since(start).Seconds()
	fmt.Printf("RESULT hosts=%d servers=%d checkers=%d settle_s=%.1f startup_writes=%d claims_per_key=%d..%d probes_per_server_per_interval=%.2f verdicts_per_s=%.0f steady_writes_per_s=%.1f flips_per_s=%d flip_writes_per_s=%.1f writes_per_flip=%.2f\n",
		nh, ns, checkers, settle.Seconds(), startupOps, lo, hi, pps, probeRate, steadyW, flips, flipW, perFlip)
	for _, c := range cs {
		_ = c.Leave(context.Background())
	}
	cancel()
	wg.Wait()
	for _, c := range cs {
		c.Close()
	}
}

func sumWriteOps(cs []*Coordinator) uint64 {
	var n uint64
	for _, c := range cs {
		n += c.Stats().WriteOps
	}
	return n
}

func sumProbes(p []int64, mu *sync.RWMutex) int64 {
	mu.Lock()
	defer mu.Unlock()
	var n int64
	for _, v := range p {
		n += v
	}
	return n
}
