//go:build chaos

package chaos

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"hcproxy/internal/faults"
	"hcproxy/internal/harness"
	"hcproxy/internal/load"
)

// 10,000 servers in one upstream, checked every second by 4 workers. The servers are one
// process listening on 10,000 distinct loopback addresses: 40 ports on each of 127.0.1.1 ..
// 127.0.1.250, every listener bound to its own address (nothing on a wildcard address).
// Promise: checks keep their interval: over a 10s window the p99 of the check lag (how much
// later than one interval after its last check a server is seen, from the table's
// last_check_unix_ms) stays under one interval. CPU and RSS per worker are reported.
func TestTenThousandBackends(t *testing.T) {
	n := 10000
	if v, err := strconv.Atoi(os.Getenv("HCPROXY_SCALE_N")); err == nil && v > 0 {
		n = v // to compare the cost per probe at other sizes
	}
	const (
		workers  = 4
		interval = time.Second
		window   = 10 * time.Second
	)
	many, err := faults.StartMany(n, 20000+rand.IntN(8000), 250)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { many.Close() })
	listen := harness.FreeAddr(t)
	p := newProxy(t, config{workers: workers, maxServers: n, status: harness.FreeAddr(t), upstreams: []upstreamConf{{
		name: "big", listen: listen, servers: many.Addrs, interval: interval.String(), timeout: "500ms", rise: 2, fall: 3,
	}}})
	p.Start()
	p.WaitWorkers(workers, 60*time.Second)
	p.waitChecked(2, 60*time.Second)
	time.Sleep(2 * time.Second) // settle

	master := p.Pid()
	ws := harness.Children(master)
	cpu0, user0 := map[int]int64{}, map[int]int64{}
	for _, w := range ws {
		cpu0[w], user0[w] = cpuTicks(w), userTicks(w)
	}
	mcpu0 := cpuTicks(master)
	d0 := p.Dump()
	req0 := many.Requests()
	start := time.Now()

	var lags []float64
	var worstLag float64
	down := 0
	for time.Since(start) < window {
		time.Sleep(time.Second)
		d := p.Dump()
		for _, b := range d.Backends {
			lag := float64(d.GeneratedUnixMs-b.LastCheckUnixMs-b.IntervalMs) / 1000
			if lag < 0 {
				lag = 0
			}
			lags = append(lags, lag)
			worstLag = max(worstLag, lag)
		}
	}
	elapsed := time.Since(start)
	probes := many.Requests() - req0
	d1 := p.Dump()
	// The checks counters change between the two snapshots, not between start and now: a dump
	// of 10,000 servers takes a while, and timing it by the wall clock around the fetches
	// counted a tenth more checks than the interval allows.
	between := time.Duration(d1.GeneratedUnixMs-d0.GeneratedUnixMs) * time.Millisecond
	for _, b := range d1.Backends {
		if b.State != "up" {
			down++
		}
	}
	// Effective interval per server from its checks counter over the window.
	c0 := map[string]uint64{}
	for _, b := range d0.Backends {
		c0[b.Address] = b.Checks
	}
	var eff []float64
	for _, b := range d1.Backends {
		if dc := b.Checks - c0[b.Address]; dc > 0 {
			eff = append(eff, between.Seconds()/float64(dc))
		}
	}
	var per []string
	var workerCPU float64 // seconds
	for _, w := range ws {
		rss, thr := procStatus(w)
		cpu := float64(cpuTicks(w)-cpu0[w]) / clockTicks / elapsed.Seconds() * 100
		user := float64(userTicks(w)-user0[w]) / clockTicks / elapsed.Seconds() * 100
		per = append(per, fmt.Sprintf("%d:cpu=%.0f%%(user=%.0f%%),rss=%dMiB,threads=%d", w, cpu, user, rss/1024, thr))
		workerCPU += float64(cpuTicks(w)-cpu0[w]) / clockTicks
	}
	mrss, _ := procStatus(master)
	mcpu := float64(cpuTicks(master)-mcpu0) / clockTicks / elapsed.Seconds() * 100
	p99 := pct(lags, 0.99)
	// A short load through the upstream, to show the proxy still serves.
	res := load.Run(t.Context(), load.Options{Addr: listen, Conns: 4, Duration: 2 * time.Second, MaxRequests: 100_000})

	result(fmt.Sprintf("%dk-backends", n/1000), res, fmt.Sprintf("slots:%d/%d", len(d1.Backends), n),
		fmt.Sprintf("lag_p50=%.3fs lag_p99=%.3fs lag_max=%.3fs eff_interval_p50=%.3fs eff_interval_p99=%.3fs probes/s=%.0f cpu_per_probe=%.0fµs not_up=%d master:cpu=%.0f%%,rss=%dMiB workers=[%s]",
			pct(lags, 0.5), p99, worstLag, pct(eff, 0.5), pct(eff, 0.99), float64(probes)/elapsed.Seconds(), workerCPU/float64(max(probes, 1))*1e6, down, mcpu, mrss/1024, strings.Join(per, " ")))

	if len(d1.Backends) != n {
		t.Errorf("%d slots in use, %d servers configured", len(d1.Backends), n)
	}
	if p99 >= interval.Seconds() {
		t.Errorf("check lag p99 %.3fs, not under one interval (%v)", p99, interval)
	}
	if len(eff) < n {
		t.Errorf("only %d of %d servers were checked during the %v window", len(eff), n, elapsed)
	}
}
