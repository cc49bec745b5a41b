package status

import (
	"strconv"
	"time"
)

// Age formats a duration compactly for tables: "45s", "3m", "5h", "2d". A negative duration (a
// clock that stepped back) is shown as "0s".
func Age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return strconv.FormatInt(int64(max(d, 0)/time.Second), 10) + "s"
	case d < time.Hour:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d < 48*time.Hour:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	}
	return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
}

// AgeMs formats how long before now the Unix millisecond time ms was (see Age); "-" when ms is 0
// (never).
func AgeMs(now time.Time, ms int64) string {
	if ms == 0 {
		return "-"
	}
	return Age(time.Duration(now.UnixMilli()-ms) * time.Millisecond)
}

// RTT formats a round trip in microseconds as milliseconds: "0.25ms", "12.3ms", "1042ms".
func RTT(us int64) string {
	ms := float64(us) / 1000
	switch {
	case ms < 10:
		return strconv.FormatFloat(ms, 'f', 2, 64) + "ms"
	case ms < 100:
		return strconv.FormatFloat(ms, 'f', 1, 64) + "ms"
	}
	return strconv.FormatFloat(ms, 'f', 0, 64) + "ms"
}
