//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"hcproxy/internal/harness"
	"hcproxy/internal/load"
	"hcproxy/status"
)

// killDuration is how long the worker-kill scenario kills (HCPROXY_KILL_FOR overrides the 30s).
func killDuration() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("HCPROXY_KILL_FOR")); err == nil && d > 0 {
		return d
	}
	return 30 * time.Second
}

// Worker kill: kill -9 a random worker every second under 16 keep-alive connections of load.
// Promise: the clients lose at most the requests that were on the killed workers' connections
// (bounded by the client connections each killed worker held, counted from /proc just before
// the kill), never a dial; every server keeps being checked (largest gap between two probes at
// a backend ≤ 2 intervals + 1s); the master brings the worker count back.
func TestWorkerKill(t *testing.T) {
	const (
		workers  = 4
		interval = 500 * time.Millisecond
	)
	bs := harness.StartBackends(t, "b", 3)
	listen := harness.FreeAddr(t)
	p := newProxy(t, config{workers: workers, status: harness.FreeAddr(t), upstreams: []upstreamConf{{
		name: "app", listen: listen, servers: addrs(bs), interval: interval.String(), timeout: "250ms",
	}}})
	p.startReady()
	p.waitChecked(2, 10*time.Second)
	master := p.Pid()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan load.Result, 1)
	dur := killDuration()
	go func() {
		done <- load.Run(ctx, load.Options{Addr: listen, Conns: 16, Duration: dur + 30*time.Second, MaxRequests: 10_000_000})
	}()
	time.Sleep(time.Second)

	kills, connsAtKill := 0, 0
	var perKill []string
	start := time.Now()
	for time.Since(start) < dur {
		next := time.Now().Add(time.Second)
		ws := harness.Children(master)
		if len(ws) > 0 {
			pid := ws[rand.IntN(len(ws))]
			n := clientConns(pid, portOf(listen))
			p.Remember(pid)
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				kills++
				connsAtKill += n
				perKill = append(perKill, fmt.Sprint(n))
			}
		}
		time.Sleep(time.Until(next))
	}
	end := time.Now()
	time.Sleep(time.Second)
	cancel()
	res := <-done

	// The master respawns with a backoff that doubles while workers die young (up to 10s).
	var d status.Document
	backBy := time.Now().Add(40 * time.Second)
	for {
		d, _ = p.DumpErr()
		if len(harness.Children(master)) == workers && harness.ReadyWorkers(d) == workers {
			break
		}
		if time.Now().After(backBy) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	back := time.Since(end)
	procs := len(harness.Children(master))

	var worstGap time.Duration
	dups := 0
	var gapProblems []string
	for _, b := range bs {
		_, mx, n := probeGaps(b.Probes(), start, end, interval/4)
		worstGap = max(worstGap, mx)
		dups += n
		if mx > 2*interval+time.Second {
			gapProblems = append(gapProblems, fmt.Sprintf("%s: %v without a probe", b.Addr, mx))
		}
	}

	result("worker-kill", res, fmt.Sprintf("workers:%d/%d", procs, workers),
		fmt.Sprintf("kills=%d conns_on_killed=%d (per kill %s) max_probe_gap=%v probes_within_interval/4=%d workers_back_in=%v",
			kills, connsAtKill, strings.Join(perKill, ","), worstGap.Round(time.Millisecond), dups, back.Round(100*time.Millisecond)))

	if res.Requests < 1000 {
		t.Errorf("load too small to mean anything: %v", res)
	}
	if res.Errors["dial"] != 0 {
		t.Errorf("%d dial errors: the listening socket must outlive every worker", res.Errors["dial"])
	}
	if res.Failed() > int64(connsAtKill) {
		t.Errorf("%d requests failed, more than the %d connections the %d killed workers held", res.Failed(), connsAtKill, kills)
	}
	if res.Non2xx != 0 {
		t.Errorf("%d non-2xx responses", res.Non2xx)
	}
	for _, g := range gapProblems {
		t.Errorf("checks stopped: %s (limit %v)", g, 2*interval+time.Second)
	}
	if procs != workers {
		t.Errorf("%d workers %v after the kills, want %d", procs, back, workers)
	}
}

// Master kill -9 and restart: the workers notice (lifeline pipe) and exit within a few seconds
// (they keep their checks 4 s for a successor, worker.successorWait, then drain);
// a new master with the same config reuses the table (a down server is still down right after
// the restart, checks counters continue from where they were) and binds the same ports.
func TestMasterKillRestart(t *testing.T) {
	const workers = 2
	bs := harness.StartBackends(t, "b", 2)
	down := harness.StartBackends(t, "down", 1)[0]
	down.SetFailing(true)
	listen := harness.FreeAddr(t)
	p := newProxy(t, config{workers: workers, status: harness.FreeAddr(t), upstreams: []upstreamConf{{
		name: "app", listen: listen, servers: append(addrs(bs), down.Addr), interval: "300ms", timeout: "150ms",
	}}})
	p.startReady()
	p.Eventually("the failing server down", 10*time.Second, func(d status.Document) bool {
		b, ok := harness.BackendState(d, down.Addr)
		return ok && b.State == "down"
	})
	p.waitChecked(3, 10*time.Second)
	old := p.Pid()
	ws := harness.Children(old)

	// Load across the kill: how much the clients see is reported, not judged.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	during := make(chan load.Result, 1)
	go func() {
		during <- load.Run(ctx, load.Options{Addr: listen, Conns: 8, Duration: 20 * time.Second, MaxRequests: 5_000_000})
	}()
	time.Sleep(500 * time.Millisecond)
	before := p.Dump()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now() // the master's Wait ends only once its workers closed its output too
	<-p.Done
	for time.Since(killed) < 10*time.Second {
		alive := 0
		for _, w := range ws {
			if harness.Running(w) {
				alive++
			}
		}
		if alive == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	exitedIn := time.Since(killed)
	var left []int
	for _, w := range ws {
		if harness.Running(w) {
			left = append(left, w)
		}
	}
	cancel()
	resDuring := <-during

	p.Start()
	restart := time.Now()
	after := p.WaitWorkers(workers, 20*time.Second)
	readyIn := time.Since(restart)
	res := load.Run(context.Background(), load.Options{Addr: listen, Conns: 8, Duration: 3 * time.Second, MaxRequests: 1_000_000})

	var problems []string
	if len(left) > 0 {
		problems = append(problems, fmt.Sprintf("workers %v still running %v after the master was killed", left, exitedIn))
	} else if exitedIn > 7*time.Second {
		problems = append(problems, fmt.Sprintf("workers took %v to exit after the master was killed", exitedIn))
	}
	if after.MasterPid != p.Pid() || after.MasterPid == old {
		problems = append(problems, fmt.Sprintf("table master_pid %d; old master %d, new %d", after.MasterPid, old, p.Pid()))
	}
	if b, ok := harness.BackendState(after, down.Addr); !ok || b.State != "down" {
		problems = append(problems, fmt.Sprintf("right after the restart the down server is %q (table reused?)", b.State))
	}
	for _, b := range before.Backends {
		a, ok := harness.BackendState(after, b.Address)
		if !ok {
			problems = append(problems, fmt.Sprintf("%s lost its slot", b.Address))
			continue
		}
		if a.Checks < b.Checks || a.Slot != b.Slot {
			problems = append(problems, fmt.Sprintf("%s: slot %d checks %d before, slot %d checks %d after", b.Address, b.Slot, b.Checks, a.Slot, a.Checks))
		}
	}
	bd, _ := harness.BackendState(before, down.Addr)
	ad, _ := harness.BackendState(after, down.Addr)
	result("master-kill-restart", res, fmt.Sprintf("orphans:%d", len(left)),
		fmt.Sprintf("workers_exited_in=%v new_master_ready_in=%v down_server=%s->%s down_checks=%d->%d load_across_kill={%v}",
			exitedIn.Round(10*time.Millisecond), readyIn.Round(10*time.Millisecond), bd.State, ad.State, bd.Checks, ad.Checks, resDuring))
	for _, pr := range problems {
		t.Error(pr)
	}
	if res.Requests < 100 || res.Failed() != 0 || res.Non2xx != 0 {
		t.Errorf("after the restart on the same port: %v", res)
	}
}
