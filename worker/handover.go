package worker

import "time"

// The handover of checks between workers; the rule is in the package comment. A slot changes
// hands in one of two ways:
//
//   - Handed back: its owner is alive and releases it itself, never while its own probe of it is
//     in flight (after a check, to the slot's preferred worker; when a newer generation is
//     published; when it drains). The due time in the slot is that of the next check not yet
//     made, so the next owner continues the schedule.
//   - Taken: its owner is gone (reaped by the master) or hung (its lease lapsed). A probe it had
//     in flight was never recorded, so the due time it was made for is still in the slot and the
//     new owner makes that check at once.

// successorWait is how long a worker whose master died keeps its checks for a new master's
// generation to take them over (a master restarted by its supervisor), before it drains them
// with nobody to hand them to. A new master publishes its generation only once all its workers
// are ready, which took over 2 s (the old value) on a loaded CI machine with race-built
// binaries: the orphans then dropped their checks before anyone could take them, and each
// server missed a check. An orphan that nobody succeeds exits this much later.
const successorWait = 4 * time.Second

// Drain asks the checker to stop claiming and probing: each slot is released at once if no probe
// of it is in flight, else right after that probe's result is recorded (under the fence it was
// started with: nobody takes a slot from a live owner). Done is closed when the last one is
// released. Drain returns at once and is idempotent.
func (c *checker) Drain() {
	c.drainOnce.Do(func() { close(c.drainReq) })
}

// Done is closed when the checker has stopped: after a Drain handed every slot back, or Stop.
func (c *checker) Done() <-chan struct{} { return c.done }

// Superseded is closed once a newer generation is published and this checker has handed it
// every slot it owned.
func (c *checker) Superseded() <-chan struct{} { return c.superseded }

// Retire hands this worker's checks over for a drain and stops the checker, returning when it is
// done or at deadline (when Stop cuts short the probes still in flight: the next owner makes them
// again). If the master is gone, the checks go on until a new master's generation takes them
// (or successorWait passes), so a restarted master's workers continue the schedule without a gap.
func (c *checker) Retire(masterGone bool, deadline time.Time) {
	defer c.Stop()
	limit := time.NewTimer(time.Until(deadline))
	defer limit.Stop()
	if masterGone {
		wait := time.NewTimer(successorWait)
		defer wait.Stop()
		select {
		case <-c.superseded:
		case <-wait.C:
		case <-limit.C:
			return
		}
	}
	c.Drain()
	select {
	case <-c.done:
	case <-limit.C:
	}
}

// handBack releases every slot without a probe in flight (the checker is draining).
func (c *checker) handBack() {
	for t, o := range c.owned {
		if !o.running {
			c.release(t)
		}
	}
}

// handOff reports whether t, just checked, goes to another worker now: this checker drains, a
// newer generation is published, another host of the fleet checks it now (the master's remote
// mark), or t's preferred worker is another live one (by the view of the last scan: reading the
// worker table for every result would cost as much as the check).
func (c *checker) handOff(t *target) bool {
	v := c.last
	if c.draining || v.gen > c.gen || t.slot.Remote() {
		return true
	}
	pref := v.preferred(t.seed)
	return pref != 0 && pref != c.tok && v.isLive(pref) && v.gen == c.gen
}

// release gives t's slot up and forgets it (closing its kept connection).
func (c *checker) release(t *target) {
	t.slot.Release(c.tok)
	c.drop(t)
}

// checkSuperseded closes superseded once a newer generation is published and nothing is owned.
func (c *checker) checkSuperseded() {
	if !c.handedOver && c.last.gen > c.gen && len(c.owned) == 0 {
		c.handedOver = true
		close(c.superseded)
	}
}
