package worker

import (
	"slices"
	"time"

	"hcproxy/shm"
)

// The claim sweep: how a checker finds slots it may take (free, owner gone, lease lapsed) and
// notices slots taken from it, without walking every slot every few milliseconds. Owned checks
// wait in the due heap (timers.go), so the sweep has nothing to do with them; it walks the
// targets in steps, a shard at a time, at one of two speeds:
//
//   - Fast (a whole walk every fastPeriod) for fastWindow after anything that frees or moves
//     slots: the checker's start, a nudge from the master (a worker died: the first walk is
//     done at once), a new generation published (the old one hands its slots back), and a
//     change in the live workers (one came, went or stopped beating: slots move to their
//     preferred worker, or a hung owner's leases lapse), or this worker resuming after a
//     stop longer than staleBeat (its checks were taken; the ones it is preferred for come
//     back to it).
//   - Slow otherwise, as a safety net for what nobody signals: at most slowBudget slots a
//     second, and a whole walk at most every slowPeriod. Its cost does not grow with the number
//     of slots past slowBudget x slowPeriod; a lapse nobody signalled is noticed within
//     max(slowPeriod, slots/slowBudget).
//
// Every step also refreshes the view of the worker table and this worker's heartbeat.
const (
	fastPeriod = 50 * time.Millisecond
	fastStep   = 10 * time.Millisecond
	slowPeriod = 2 * time.Second
	slowStep   = 100 * time.Millisecond
	slowBudget = 5000 // slots per second
	// maxFastWindow caps fastWindow: past it the slow sweep takes over.
	maxFastWindow = 10 * time.Second
)

// sweeper is the claim sweep's position and pace; it belongs to the run goroutine.
type sweeper struct {
	pos    int   // next target to visit
	next   int64 // when the next step is due (monotonic ns)
	last   int64 // when the last step ran
	fast   int64 // fast until then
	window time.Duration
}

// newSweeper sizes the fast window for targets: long enough for an old generation's probes in
// flight to finish and for a hung owner's lease to lapse (longest interval + timeout + 3s),
// capped at maxFastWindow.
func newSweeper(targets []*target) sweeper {
	var w time.Duration
	for _, t := range targets {
		w = max(w, t.interval+t.timeout+3*time.Second)
	}
	return sweeper{window: min(w, maxFastWindow)}
}

func (s *sweeper) start(now int64) {
	s.next, s.fast = now, now+int64(s.window)
}

// stepSize is how many targets the step at now visits, and how long until the next one.
func (s *sweeper) stepSize(now int64, n int) (int, time.Duration) {
	if now < s.fast {
		return ceilDiv(n*int(fastStep), int(fastPeriod)), fastStep
	}
	perStep := min(ceilDiv(n*int(slowStep), int(slowPeriod)), ceilDiv(slowBudget*int(slowStep), int(time.Second)))
	return perStep, slowStep
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// step is one step of the sweep: refresh the view and the heartbeat, speed up if the workers
// changed, hand everything back if a newer generation is published, and visit the next shard.
func (c *checker) step(now int64) {
	v := c.view()
	c.table.Heartbeat(c.index, len(c.owned))
	// A change in the workers; or this worker was itself stopped or hung for longer than the
	// others wait for a heartbeat (SIGSTOP, a stalled machine): its own view did not change, but
	// the others took its checks by lease and, seeing it beat again, now hand back the ones it
	// is preferred for, which a slow sweep would find only up to slowPeriod later.
	if v.gen != c.last.gen || !slices.Equal(v.live, c.last.live) || (c.sweep.last != 0 && now-c.sweep.last > int64(staleBeat)) {
		c.sweep.fast = now + int64(c.sweep.window)
	}
	c.sweep.last = now
	c.last = v
	if v.gen > c.gen {
		c.handBack() // a newer generation is published: hand it every slot not being probed
	}
	n, gap := c.sweep.stepSize(now, len(c.targets))
	c.visitNext(n, v, now)
	c.sweep.next = now + int64(gap)
	c.checkSuperseded()
}

// nudged walks every slot at once and sweeps fast for a while (a worker died).
func (c *checker) nudged() {
	if c.draining {
		return
	}
	now := shm.Now()
	v := c.view()
	c.last = v
	c.sweep.fast = now + int64(c.sweep.window)
	c.visitNext(len(c.targets), v, now)
	c.sweep.next = now + int64(fastStep)
}

// visitNext visits the next n targets, wrapping around.
func (c *checker) visitNext(n int, v view, now int64) {
	if len(c.targets) == 0 {
		return
	}
	n = min(n, len(c.targets))
	c.stats.visits.Add(int64(n))
	for range n {
		if c.sweep.pos >= len(c.targets) {
			c.sweep.pos = 0
		}
		c.visit(c.targets[c.sweep.pos], v, now)
		c.sweep.pos++
	}
}

// visit looks at one slot: one it owns in the table but not in memory is taken again (for a
// fresh fence); one taken from it is forgotten; one that another host of the fleet checks (the
// master's remote mark) is handed back, at once or after its probe in flight, and never claimed;
// one it may take is claimed if this worker is its preferred one (or the check is overdue),
// keeping the slot's schedule.
func (c *checker) visit(t *target, v view, now int64) {
	s := t.slot
	owner := s.Owner()
	remote := s.Remote()
	if owner == c.tok && remote {
		switch {
		case t.own == nil:
			s.Release(c.tok)
		case !t.own.running:
			c.release(t)
		} // else finish hands it back (handOff) once its result is recorded
		return
	}
	if owner == c.tok {
		if t.own == nil && v.gen > c.gen {
			s.Release(c.tok) // ours in the table, not in memory, and a newer generation is out
			return
		}
		if t.own == nil {
			due := s.NextDue()
			if fence, ok := s.Claim(c.tok, c.tok, leaseUntil(t, max(due, now))); ok {
				c.adopt(t, fence, due)
			}
		}
		return
	}
	if t.own != nil {
		c.log.Debug("check taken over", "upstream", t.label, "server", t.server, "by_pid", owner.Pid())
		c.drop(t)
	}
	if remote || v.gen != c.gen || !v.takeable(owner, s.Lease(), now) {
		return
	}
	due := s.NextDue()
	overdue := due != 0 && now > due+int64(t.interval/2+t.timeout)
	if v.preferred(t.seed) != c.tok && !overdue {
		return
	}
	reschedule := due == 0 || due > now+2*int64(t.longestInterval())
	if reschedule {
		// Never scheduled, or a schedule from another boot: start at a deterministic offset
		// within one interval, so checks do not march in step.
		due = now + int64(t.seed%uint64(t.interval))
	}
	fence, ok := s.Claim(owner, c.tok, leaseUntil(t, max(due, now)))
	if !ok {
		return
	}
	if reschedule {
		s.SetNextDue(due)
	}
	c.table.AppendEvent(shm.Event{Kind: shm.EventOwner, Slot: s.Index(), Address: t.server, Label: t.label, Pid: c.tok.Pid(), Extra: uint64(owner.Pid())})
	if owner != 0 {
		c.log.Debug("check taken over", "upstream", t.label, "server", t.server, "from_pid", owner.Pid())
	}
	c.adopt(t, fence, due)
}

// adopt records that this worker owns t's slot under fence, its next check due at due.
func (c *checker) adopt(t *target, fence uint32, due int64) {
	o := &ownership{t: t, fence: fence, due: due, idx: -1}
	t.own = o
	c.owned[t] = o
	if t.busy { // a probe of an older fence is still running: its end queues this one
		o.parked = true
		return
	}
	c.queue.push(o)
}

// drop forgets t's slot (taken over, or released) and closes its kept connection: the
// connection belongs to the check's owner.
func (c *checker) drop(t *target) {
	if o := t.own; o != nil {
		c.queue.remove(o)
		t.own = nil
	}
	delete(c.owned, t)
	t.conn.Close()
}
