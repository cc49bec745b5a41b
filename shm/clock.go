package shm

import (
	"time"

	"golang.org/x/sys/unix"
)

// Now returns CLOCK_MONOTONIC in nanoseconds: the clock every process of the machine shares, used
// for schedules and leases in the table (Go's own monotonic reading is process-relative).
//
// It is read through Go's monotonic clock, which is CLOCK_MONOTONIC read through the vDSO, offset
// by one calibration against clock_gettime(2) at start: the data plane asks for the time on every
// request, and x/sys/unix's ClockGettime is a real system call (about 1 in 6 of the worker's system
// calls per proxied request before this). The calibration is within a microsecond.
func Now() int64 { return clock.base + int64(time.Since(clock.t0)) }

// At is Now as it was at t, a reading of time.Now in this process: for a caller that has just
// read the clock and need not read it again.
func At(t time.Time) int64 { return clock.base + int64(t.Sub(clock.t0)) }

// NowMs returns wall-clock Unix milliseconds, for display fields.
func NowMs() int64 { return time.Now().UnixMilli() }

var clock = calibrate()

type calibration struct {
	t0   time.Time // a reading of Go's clock
	base int64     // CLOCK_MONOTONIC at t0
}

// calibrate pairs a reading of Go's monotonic clock with clock_gettime(CLOCK_MONOTONIC), keeping
// the pair read closest together of a few tries.
func calibrate() calibration {
	var best calibration
	width := time.Duration(-1)
	for range 8 {
		t0 := time.Now()
		mono := rawNow()
		t1 := time.Now()
		if w := t1.Sub(t0); width < 0 || w < width {
			width = w
			best = calibration{t0: t0, base: mono - int64(w/2)}
		}
	}
	return best
}

// rawNow is clock_gettime(CLOCK_MONOTONIC) itself, a system call.
func rawNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("shm: clock_gettime(CLOCK_MONOTONIC): " + err.Error()) // cannot fail on Linux
	}
	return ts.Nano()
}
