package shm

import (
	"time"

	"golang.org/x/sys/unix"
)

// Now returns CLOCK_MONOTONIC in nanoseconds: the clock every process of the machine shares, used
// for schedules and leases in the table (Go's own monotonic reading is process-relative).
func Now() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("shm: clock_gettime(CLOCK_MONOTONIC): " + err.Error()) // cannot fail on Linux
	}
	return ts.Nano()
}

// NowMs returns wall-clock Unix milliseconds, for display fields.
func NowMs() int64 { return time.Now().UnixMilli() }
