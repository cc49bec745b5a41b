package worker

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"hcproxy/probe"
	"hcproxy/shm"
)

// schedTable is a table with n slots of interval iv checked at addr (each its own key), and a
// ready worker of generation 1 to run a checker as.
type schedTable struct {
	tb    *shm.Table
	slots []shm.Slot
}

func newSchedTable(t *testing.T, n int, addr string, iv time.Duration) *schedTable {
	t.Helper()
	tb, err := shm.OpenMaster(filepath.Join(t.TempDir(), "table"), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	tb.SetGeneration(1)
	st := &schedTable{tb: tb}
	for i := range n {
		si, err := tb.Alloc(uint64(i+1), addr, "app", iv, 1, shm.Up)
		if err != nil {
			t.Fatal(err)
		}
		st.slots = append(st.slots, tb.Slot(si))
	}
	return st
}

func (st *schedTable) worker(t *testing.T) (int, shm.Token) {
	t.Helper()
	i, err := st.tb.ReserveWorker(1)
	if err != nil {
		t.Fatal(err)
	}
	tok := st.tb.Register(i, os.Getpid())
	st.tb.SetWorkerState(i, shm.WorkerReady)
	return i, tok
}

func (st *schedTable) targets(from, to int, addr string, iv, timeout time.Duration) []*target {
	var ts []*target
	for i := from; i < to; i++ {
		ts = append(ts, &target{slot: st.slots[i], addr: addr, server: addr, label: "app",
			prober: probe.NewHTTP(probe.HTTPOptions{URI: "/health"}), interval: iv, timeout: timeout, rise: 1, fall: 1,
			seed: seedOf(uint64(i+1), addr)})
	}
	return ts
}

// runChecker runs a checker over n slots checked every iv at a health server of its own, as a
// ready worker of generation 1, stopped at the test's end; a window above 0 shortens the claim
// sweep's fast window after the start. It returns once every slot is claimed.
func runChecker(t *testing.T, n int, iv, window time.Duration) (*schedTable, *checker, shm.Token) {
	t.Helper()
	srv := startSlowHealth(t, 0)
	st := newSchedTable(t, n, srv.addr, iv)
	i, tok := st.worker(t)
	c := newChecker(st.tb, tok, i, 1, st.targets(0, n, srv.addr, iv, iv), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if window > 0 {
		c.sweep.window = window
	}
	c.Start(context.Background())
	t.Cleanup(c.Stop)
	waitFor(t, "every slot claimed", 10*time.Second, func() bool { return st.ownedBy(tok, 0, n) == n })
	return st, c, tok
}

func (st *schedTable) ownedBy(tok shm.Token, from, to int) int {
	n := 0
	for _, s := range st.slots[from:to] {
		if s.Owner() == tok {
			n++
		}
	}
	return n
}

// The scheduler's work per second does not grow with the slots that are not due: 10,000 owned
// slots checked once an hour and 10 checked every 200ms cost the run loop about what the 10
// checks need, and the claim sweep visits at most slowBudget slots a second (the scan it
// replaces walked all 10,000 every 5-50ms: 200,000 to 2,000,000 a second).
func TestSchedulerWorkDoesNotGrowWithIdleSlots(t *testing.T) {
	const idle, due = 10000, 10
	const iv = 200 * time.Millisecond
	srv := startSlowHealth(t, 0)
	st := newSchedTable(t, idle+due, srv.addr, iv)
	i, tok := st.worker(t)
	targets := append(st.targets(0, idle, "127.0.0.1:1", time.Hour, time.Second), st.targets(idle, idle+due, srv.addr, iv, iv)...)
	c := newChecker(st.tb, tok, i, 1, targets, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.sweep.window = 500 * time.Millisecond // the fast sweep after start, short for the test
	c.Start(context.Background())
	defer c.Stop()
	waitFor(t, "every slot claimed", 10*time.Second, func() bool { return st.ownedBy(tok, 0, idle+due) == idle+due })
	time.Sleep(c.sweep.window) // a measurement window after the start's fast sweep, not an assertion on state

	const window = 2 * time.Second
	v0, l0, s0, a0 := c.stats.visits.Load(), c.stats.loops.Load(), c.stats.starts.Load(), len(srv.arrivals())
	time.Sleep(window)
	v1, l1, s1, a1 := c.stats.visits.Load(), c.stats.loops.Load(), c.stats.starts.Load(), len(srv.arrivals())
	secs := window.Seconds()
	visits, loops, starts, arrived := float64(v1-v0)/secs, float64(l1-l0)/secs, float64(s1-s0)/secs, float64(a1-a0)/secs
	t.Logf("per second: %.0f slots visited, %.0f run-loop iterations, %.0f probes started, %.0f reached the server", visits, loops, starts, arrived)
	if want := float64(due) / iv.Seconds(); arrived < want*0.8 || arrived > want*1.2 {
		t.Errorf("%.0f probes/s reached the server, want %.0f (10 checks every %v)", arrived, want, iv)
	}
	if visits > slowBudget*1.25 {
		t.Errorf("the claim sweep visits %.0f slots/s, want at most %d whatever the number of slots", visits, slowBudget)
	}
	// Each check costs a wake-up to start it and one for its result; the sweep steps 10 times a
	// second. Idle slots add nothing (at most a few of the hourly checks fall due).
	if limit := 4*starts + 2/slowStep.Seconds() + 20; loops > limit {
		t.Errorf("%.0f run-loop iterations/s for %.0f probes/s, want at most %.0f", loops, starts, limit)
	}
}

// A worker killed with 1,000 slots: once the master marks it dead and nudges, the survivor
// claims every slot within one interval and makes each check due (none lost).
func TestClaimsWithinOneIntervalAfterAWorkerIsKilled(t *testing.T) {
	const n = 1000
	const iv = time.Second
	srv := startSlowHealth(t, 0)
	st := newSchedTable(t, n, srv.addr, iv)
	deadIdx, deadTok := st.worker(t)
	now := shm.Now()
	for k, s := range st.slots { // the dead worker owned them all, with live leases, due within one interval
		if _, ok := s.Claim(0, deadTok, now+int64(10*time.Second)); !ok {
			t.Fatalf("slot %d: claim failed", k)
		}
		s.SetNextDue(now + int64(iv)*int64(k)/n)
	}
	i, tok := st.worker(t)
	c := newChecker(st.tb, tok, i, 1, st.targets(0, n, srv.addr, iv, 500*time.Millisecond), slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.Start(context.Background())
	defer c.Stop()
	time.Sleep(100 * time.Millisecond) // the survivor runs; the slots are not takeable yet
	if got := st.ownedBy(tok, 0, n); got != 0 {
		t.Fatalf("%d slots taken from a live owner", got)
	}
	killed := time.Now()
	st.tb.SetWorkerState(deadIdx, shm.WorkerDead) // what the master does when it reaps a worker
	c.Nudge()
	waitFor(t, "every slot claimed", iv, func() bool { return st.ownedBy(tok, 0, n) == n })
	t.Logf("%d slots claimed %v after the nudge", n, time.Since(killed).Round(time.Millisecond))
	waitFor(t, "every check made", 2*iv, func() bool {
		for _, s := range st.slots {
			if s.Info().Checks == 0 {
				return false
			}
		}
		return true
	})
	if late := time.Since(killed); late > iv+iv/2 {
		t.Errorf("the last check was made %v after the kill, want within one interval and a half", late)
	}
}

// The probes released by one opening of the gate are finished in one pass of the run loop, not
// one pass each: with one P (a worker's default) a probe's result used to wake the run loop
// straight away (the woken goroutine runs next), so each released probe cost a whole pass (its
// expiries, sweep step, due heap, timer reset and select): 1.1 passes per probe at 10,000
// checks, 0.16 after.
func TestOneRunLoopPassFinishesAnOpening(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const n = 400
	const iv = 200 * time.Millisecond
	_, c, _ := runChecker(t, n, iv, 500*time.Millisecond)
	time.Sleep(c.sweep.window) // a measurement window after the start's fast sweep

	w0, s0 := c.stats.wokeBy.Load(), c.stats.starts.Load()
	time.Sleep(2 * time.Second)
	woke, starts := c.stats.wokeBy.Load()-w0, c.stats.starts.Load()-s0
	t.Logf("%d passes of the run loop woken by a result, for %d probes", woke, starts)
	if starts < n { // 2 s of checks every 200 ms: about 10 per slot
		t.Fatalf("only %d probes started in 2 s for %d slots checked every %v", starts, n, iv)
	}
	if float64(woke) > 0.5*float64(starts) {
		t.Errorf("%d passes of the run loop woken by a result for %d probes: the results of one opening are not finished together", woke, starts)
	}
}
