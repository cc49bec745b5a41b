package worker

import (
	"testing"
	"time"
)

// The next due time comes from the schedule (the due time the check was made for), not from
// when its probe ended; a check that started late by more than a quarter interval starts a new
// phase, so the next check does not follow it closely.
func TestNextDueKeepsTheScheduleAndRephasesLateChecks(t *testing.T) {
	iv := 200 * time.Millisecond
	ms := int64(time.Millisecond)
	cases := []struct {
		name               string
		due, started, want int64
	}{
		{"on time", 1000 * ms, 1000 * ms, 1200 * ms},
		{"a scan late keeps the phase", 1000 * ms, 1030 * ms, 1200 * ms},
		{"a quarter interval late keeps the phase", 1000 * ms, 1050 * ms, 1200 * ms},
		// A takeover by lease starts the overdue check at once: the next one is an interval
		// after it, not at the old phase's next point 150ms later (issue 13, finding 2).
		{"more than a quarter late starts a new phase", 1000 * ms, 1250 * ms, 1450 * ms},
		{"seconds late (lease takeover) starts a new phase", 1000 * ms, 4000 * ms, 4200 * ms},
		{"never scheduled", 0, 5000 * ms, 5200 * ms},
	}
	for _, c := range cases {
		if got := nextDue(c.due, c.started, iv); got != c.want {
			t.Errorf("%s: nextDue(%d, %d) = %dms, want %dms", c.name, c.due/ms, c.started/ms, got/ms, c.want/ms)
		}
		if got := nextDue(c.due, c.started, iv); got-c.started < int64(iv)*3/4 {
			t.Errorf("%s: next check %dms after this one, less than 3/4 of the interval", c.name, (got-c.started)/ms)
		}
	}
}

// A probe ends by its timeout, but never after the next grid point: with timeout == interval a
// probe that times out is followed on time, not one scan later each time (issue 13, finding 3).
func TestProbeDeadlineEndsAtTheNextGridPoint(t *testing.T) {
	ms := int64(time.Millisecond)
	iv := time.Second
	cases := []struct {
		name         string
		due, started int64
		timeout      time.Duration
		want         int64
	}{
		{"timeout well under the interval", 1000 * ms, 1003 * ms, 300 * time.Millisecond, 1303 * ms},
		{"timeout == interval, started on time", 1000 * ms, 1000 * ms, iv, 2000 * ms},
		{"timeout == interval, started a little late", 1000 * ms, 1040 * ms, iv, 2000 * ms},
		{"timeout == interval, new phase", 1000 * ms, 3000 * ms, iv, 4000 * ms},
	}
	for _, c := range cases {
		if got := probeDeadline(c.due, c.started, iv, c.timeout); got != c.want {
			t.Errorf("%s: deadline %dms, want %dms", c.name, got/ms, c.want/ms)
		}
	}
	// Ten probes that each take their whole timeout keep a period of exactly one interval.
	due, start := int64(1000*ms), int64(1000*ms)
	for i := 0; i < 10; i++ {
		end := probeDeadline(due, start, iv, iv) + 2*ms // the result arrives 2ms after the deadline
		due = nextDue(due, start, iv)
		start = max(due, end)
	}
	if want := int64(11000 * ms); start-want > 2*ms {
		t.Errorf("after 10 timed-out probes the next starts at %dms, want %dms: the schedule drifts", start/ms, want/ms)
	}
}
