package worker

import "time"

// The schedule of one check is a grid of due times one interval apart, kept in the slot
// (shm.Slot.NextDue) so that it outlives owners, generations and masters. The due time in the
// slot is the one of the next check not yet recorded: a probe does not move it; recording the
// probe's result does (checker.finish). A probe that is cut short (its owner stopped, killed or
// fenced out) therefore leaves the due time where it was, and the next owner makes that check at
// once.

// lateSlack is how late (as a share of the interval) a check may start and still keep its
// schedule's phase. A check started later than that (a takeover by lease, after the owner hung
// for seconds; an owner that was killed in the middle of a probe) starts a new phase one interval
// after it started, so the next check does not follow it closely (the extra probe of issue 13).
// Everything the scheduler itself adds (a scan a few milliseconds late, a handover between two
// workers' scans) stays well under it, so lateness never accumulates into drift.
const lateSlack = 4 // 1/lateSlack of the interval

// nextDue returns the due time of the check that follows one due at due and started at started,
// iv later: one interval after the due time, so the next due time comes from the schedule and
// not from when the probe ended (a probe that took its whole timeout does not push the next one
// back); or one interval after the start when the check started more than iv/lateSlack late, or
// was never scheduled.
func nextDue(due, started int64, iv time.Duration) int64 {
	return phase(due, started, iv) + int64(iv)
}

// phase is the grid point a check started at started belongs to: its due time, or its start
// when it started too late to keep the phase (see lateSlack).
func phase(due, started int64, iv time.Duration) int64 {
	if due <= 0 || started-due > int64(iv)/lateSlack {
		return started
	}
	return due
}

// probeDeadline is when a probe due at due and started at started must end: timeout after its
// start, but never after the next grid point (one interval after its phase), so a check whose
// timeout equals its interval and that times out is followed on time, not a scan later each
// time (issue 13, finding 3).
func probeDeadline(due, started int64, iv, timeout time.Duration) int64 {
	return min(started+int64(timeout), nextDue(due, started, iv))
}
