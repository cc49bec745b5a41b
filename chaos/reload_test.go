//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"hcproxy/internal/backend"
	"hcproxy/internal/harness"
	"hcproxy/internal/load"
	"hcproxy/status"
)

// Reload storm: 50 SIGHUPs, one every 100-200ms, under 16 keep-alive connections of steady load,
// once with the same config and once with a config that adds a server and removes another on
// every reload. Promise: no client request fails; a server that was down stays down and every
// checks counter only grows; no server is probed twice within interval/4; afterwards exactly
// `workers` worker processes, the master's descriptors back to their count before the storm
// (±2), and as many table slots in use as servers configured.
func TestReloadStorm(t *testing.T) {
	t.Run("same-config", func(t *testing.T) { reloadStorm(t, false) })
	t.Run("add-remove", func(t *testing.T) { reloadStorm(t, true) })
}

func reloadStorm(t *testing.T, changes bool) {
	const (
		workers  = 2
		reloads  = 50
		interval = 500 * time.Millisecond
	)
	base := harness.StartBackends(t, "b", 3)
	down := harness.StartBackends(t, "down", 1)[0]
	down.SetFailing(true)
	extras := harness.StartBackends(t, "x", 4)
	listen, statusAddr := harness.FreeAddr(t), harness.FreeAddr(t)
	cfg := func(i int) config {
		servers := append(addrs(base), down.Addr)
		if i >= 0 && changes {
			servers = append(servers, extras[i%len(extras)].Addr)
		}
		return config{workers: workers, status: statusAddr, upstreams: []upstreamConf{{
			name: "app", listen: listen, servers: servers, interval: interval.String(), timeout: "250ms",
		}}}
	}
	p := newProxy(t, cfg(-1))
	p.startReady()
	p.Eventually("the failing server down", 10*time.Second, func(d status.Document) bool {
		b, ok := harness.BackendState(d, down.Addr)
		return ok && b.State == "down"
	})
	p.waitChecked(2, 10*time.Second)
	master := p.Pid()
	fdBefore := fdCount(master)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan load.Result, 1)
	go func() {
		done <- load.Run(ctx, load.Options{Addr: listen, Conns: 16, Duration: 60 * time.Second, MaxRequests: 5_000_000})
	}()
	time.Sleep(500 * time.Millisecond)

	gen0 := p.Dump().Generation
	// Servers that stay configured keep their slot, so their checks counters only grow; a
	// server removed and added again starts afresh in a new slot.
	kept := map[string]bool{down.Addr: true}
	for _, b := range base {
		kept[b.Addr] = true
	}
	last := map[string]uint64{}
	var problems []string
	stormStart := time.Now()
	for i := 0; i < reloads; i++ {
		next := time.Now().Add(jitter(100*time.Millisecond, 200*time.Millisecond))
		if changes {
			p.writeConfig(cfg(i))
		}
		p.Signal(syscall.SIGHUP)
		d, err := p.DumpErr()
		if err != nil {
			problems = append(problems, fmt.Sprintf("reload %d: hcctl dump: %v", i, err))
		} else {
			if b, ok := harness.BackendState(d, down.Addr); !ok || b.State != "down" {
				problems = append(problems, fmt.Sprintf("reload %d: the down server is %q (in table: %v)", i, b.State, ok))
			}
			for _, b := range d.Backends {
				if !kept[b.Address] {
					continue
				}
				if b.Checks < last[b.Address] {
					problems = append(problems, fmt.Sprintf("reload %d: %s checks went back from %d to %d", i, b.Address, last[b.Address], b.Checks))
				}
				last[b.Address] = b.Checks
			}
		}
		time.Sleep(time.Until(next))
	}
	stormEnd := time.Now()
	time.Sleep(time.Second)
	cancel()
	res := <-done
	loadEnd := time.Now()

	// Settle: the old generations drain and exit, removed servers' slots are freed.
	configured := len(p.cfg.upstreams[0].servers)
	var d status.Document
	settleBy := time.Now().Add(30 * time.Second)
	for {
		d, _ = p.DumpErr()
		if len(harness.Children(master)) == workers && harness.ReadyWorkers(d) == workers && len(d.Workers) == workers &&
			len(d.Backends) == configured {
			break
		}
		if time.Now().After(settleBy) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	settled := time.Since(loadEnd)
	fdAfter := fdCount(master)
	for i := 0; i < 50 && abs(fdAfter-fdBefore) > 2; i++ {
		time.Sleep(100 * time.Millisecond)
		fdAfter = fdCount(master)
	}
	procs := len(harness.Children(master))
	for _, b := range d.Backends {
		if kept[b.Address] && b.Checks < last[b.Address] {
			problems = append(problems, fmt.Sprintf("after: %s checks went back from %d to %d", b.Address, last[b.Address], b.Checks))
		}
	}
	if b, ok := harness.BackendState(d, down.Addr); !ok || b.State != "down" {
		problems = append(problems, fmt.Sprintf("after: the down server is %q", b.State))
	}

	dups, maxGap := 0, time.Duration(0)
	for _, b := range append(append([]*backend.Backend{}, base...), down) {
		_, mx, n := probeGaps(b.Probes(), stormStart, stormEnd.Add(time.Second), interval/4)
		dups += n
		maxGap = max(maxGap, mx)
		if n > 0 {
			problems = append(problems, fmt.Sprintf("%s probed %d times within %v of the previous probe", b.Addr, n, interval/4))
		}
	}

	name := "reload-storm/same"
	if changes {
		name = "reload-storm/add-rm"
	}
	result(name, res, fmt.Sprintf("workers:%d/%d,master_fds:%d->%d,slots:%d/%d", procs, workers, fdBefore, fdAfter, len(d.Backends), configured),
		fmt.Sprintf("reloads=%d generations=+%d dup_probes=%d max_probe_gap=%v settled_in=%v",
			reloads, d.Generation-gen0, dups, maxGap.Round(time.Millisecond), settled.Round(100*time.Millisecond)))

	if res.Requests < 1000 {
		t.Errorf("load too small to mean anything: %v", res)
	}
	if res.Failed() != 0 || res.Non2xx != 0 {
		t.Errorf("clients lost requests across %d reloads: %v", reloads, res)
	}
	for _, pr := range problems {
		t.Error(pr)
	}
	if procs != workers {
		t.Errorf("%d worker processes after the storm, want %d (table workers %+v)", procs, workers, d.Workers)
	}
	if abs(fdAfter-fdBefore) > 2 {
		t.Errorf("master descriptors %d before the storm, %d after", fdBefore, fdAfter)
	}
	if len(d.Backends) != configured {
		t.Errorf("%d table slots in use after the storm, %d servers configured", len(d.Backends), configured)
	}
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}
