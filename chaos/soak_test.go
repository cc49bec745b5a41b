//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"hcproxy/internal/harness"
	"hcproxy/internal/load"
)

// soakDuration is HCPROXY_SOAK (make soak DURATION=10m sets it), 1m when unset.
func soakDuration(t *testing.T) time.Duration {
	v := os.Getenv("HCPROXY_SOAK")
	if v == "" {
		return time.Minute
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 30*time.Second {
		t.Fatalf("HCPROXY_SOAK=%q: want a duration of at least 30s", v)
	}
	return d
}

type soakSample struct {
	at                      time.Duration
	workers                 int
	workerRSS, workerThr    float64 // means over the current generation's ready workers
	masterRSS, masterThr    int64
	masterFDs, slots, procs int
}

// Soak: steady load (8 keep-alive connections) with a reload every 30s and one server flapping
// (its health check failing, then passing) every 10s. Every 10s (every duration/12 when that is
// shorter) it samples, per worker of the current generation and for the master, VmRSS and
// Threads from /proc/PID/status, and the master's descriptors. Promise: no client request fails,
// and after a warm-up (the first sixth) the mean of the last third of the samples exceeds the
// mean of the first third by at most 20% (and by more than a small absolute floor, so a thread
// or a page more is not growth) for worker RSS, worker threads, master RSS, master threads and
// master descriptors.
func TestSoak(t *testing.T) {
	dur := soakDuration(t)
	const workers = 2
	every := min(10*time.Second, dur/12)
	bs := harness.StartBackends(t, "b", 3)
	flap := harness.StartBackends(t, "flap", 1)[0]
	listen := harness.FreeAddr(t)
	p := newProxy(t, config{workers: workers, status: harness.FreeAddr(t), upstreams: []upstreamConf{{
		name: "app", listen: listen, servers: append(addrs(bs), flap.Addr), interval: "500ms", timeout: "250ms",
	}}})
	p.startReady()
	p.waitChecked(2, 10*time.Second)
	master := p.Pid()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan load.Result, 1)
	go func() {
		done <- load.Run(ctx, load.Options{Addr: listen, Conns: 8, Duration: dur + time.Minute, MaxRequests: 1 << 40})
	}()

	var samples []soakSample
	start := time.Now()
	nextReload, nextFlap, nextSample := start.Add(30*time.Second), start.Add(10*time.Second), start
	reloads, flaps := 0, 0
	for time.Since(start) < dur {
		now := time.Now()
		if !now.Before(nextSample) {
			samples = append(samples, sample(p, master, time.Since(start)))
			nextSample = nextSample.Add(every)
		}
		if !now.Before(nextReload) {
			p.Signal(syscall.SIGHUP)
			reloads++
			nextReload = nextReload.Add(30 * time.Second)
		}
		if !now.Before(nextFlap) {
			flaps++
			flap.SetFailing(flaps%2 == 1)
			nextFlap = nextFlap.Add(10 * time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
	samples = append(samples, sample(p, master, time.Since(start)))
	cancel()
	res := <-done

	fmt.Printf("SOAK | t | workers | worker RSS MiB (mean) | worker threads (mean) | master RSS MiB | master threads | master fds | slots |\n")
	fmt.Printf("SOAK |---|---|---|---|---|---|---|---|\n")
	for _, s := range samples {
		fmt.Printf("SOAK | %v | %d | %.1f | %.1f | %.1f | %d | %d | %d |\n", s.at.Round(time.Second), s.workers,
			s.workerRSS/1024, s.workerThr, float64(s.masterRSS)/1024, s.masterThr, s.masterFDs, s.slots)
	}

	// Warm-up: the first sixth. Then first third against last third.
	rest := samples[len(samples)/6:]
	k := max(1, len(rest)/3)
	first, last := rest[:k], rest[len(rest)-k:]
	type metric struct {
		name  string
		short string
		get   func(soakSample) float64
		floor float64 // growth below this is noise
	}
	metrics := []metric{
		{"worker RSS KiB", "w_rss", func(s soakSample) float64 { return s.workerRSS }, 2048},
		{"worker threads", "w_thr", func(s soakSample) float64 { return s.workerThr }, 2},
		{"master RSS KiB", "m_rss", func(s soakSample) float64 { return float64(s.masterRSS) }, 2048},
		{"master threads", "m_thr", func(s soakSample) float64 { return float64(s.masterThr) }, 2},
		{"master fds", "m_fds", func(s soakSample) float64 { return float64(s.masterFDs) }, 2},
	}
	var growth string
	var problems []string
	for _, m := range metrics {
		a, b := meanOf(first, m.get), meanOf(last, m.get)
		pctGrowth := 0.0
		if a > 0 {
			pctGrowth = (b - a) / a * 100
		}
		growth += fmt.Sprintf(" %s:%+.1f%%", m.short, pctGrowth)
		if b > a*1.2 && b-a > m.floor {
			problems = append(problems, fmt.Sprintf("%s grew from %.1f (first third) to %.1f (last third)", m.name, a, b))
		}
	}
	leaks := fmt.Sprintf("growth[%s]", growth[1:])
	result("soak/"+dur.String(), res, leaks, fmt.Sprintf("reloads=%d flaps=%d samples=%d", reloads, flaps, len(samples)))
	if res.Failed() != 0 || res.Non2xx != 0 {
		t.Errorf("clients lost requests during the soak: %v", res)
	}
	for _, pr := range problems {
		t.Error(pr)
	}
}

func meanOf(ss []soakSample, get func(soakSample) float64) float64 {
	if len(ss) == 0 {
		return 0
	}
	var sum float64
	for _, s := range ss {
		sum += get(s)
	}
	return sum / float64(len(ss))
}

func sample(p *proxy, master int, at time.Duration) soakSample {
	s := soakSample{at: at, procs: len(harness.Children(master)), masterFDs: fdCount(master)}
	s.masterRSS, s.masterThr = procStatus(master)
	d, err := p.DumpErr()
	if err != nil {
		return s
	}
	s.slots = len(d.Backends)
	var rss, thr float64
	for _, w := range d.Workers {
		if w.State != "ready" || w.Generation != d.Generation {
			continue
		}
		r, th := procStatus(w.Pid)
		if r < 0 {
			continue
		}
		rss += float64(r)
		thr += float64(th)
		s.workers++
	}
	if s.workers > 0 {
		s.workerRSS, s.workerThr = rss/float64(s.workers), thr/float64(s.workers)
	}
	return s
}
