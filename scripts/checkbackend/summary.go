package main

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Merge adds b's window to a's: the processes of one run, each holding its own servers.
func Merge(a, b Stats) (Stats, error) {
	if a.Processes == 0 {
		return b, nil
	}
	if a.BucketNS != b.BucketNS {
		return Stats{}, fmt.Errorf("merge: bucket widths differ (%d ns and %d ns)", a.BucketNS, b.BucketNS)
	}
	m := Stats{Processes: a.Processes + b.Processes, Servers: a.Servers + b.Servers,
		WindowNS: max(a.WindowNS, b.WindowNS), Probes: a.Probes + b.Probes, Gaps: a.Gaps + b.Gaps, GapSumS: a.GapSumS + b.GapSumS,
		Other: a.Other + b.Other, Conns: a.Conns + b.Conns, MaxGapNS: max(a.MaxGapNS, b.MaxGapNS),
		BucketNS: a.BucketNS, Overflow: a.Overflow + b.Overflow}
	switch {
	case a.MinGapNS < 0:
		m.MinGapNS = b.MinGapNS
	case b.MinGapNS < 0:
		m.MinGapNS = a.MinGapNS
	default:
		m.MinGapNS = min(a.MinGapNS, b.MinGapNS)
	}
	m.Hist = addPairs(a.Hist, b.Hist)
	m.PerServer = addPairs(a.PerServer, b.PerServer)
	return m, nil
}

// addPairs adds two [key, count] lists.
func addPairs(a, b [][2]int64) [][2]int64 {
	sum := map[int64]int64{}
	for _, p := range a {
		sum[p[0]] += p[1]
	}
	for _, p := range b {
		sum[p[0]] += p[1]
	}
	return sortedPairs(sum)
}

// Summary is what a run's window shows against the schedule.
type Summary struct {
	Servers   int // servers the backends hold
	Window    time.Duration
	Probes    int64   // probes that reached the backends in the window
	PerSecond float64 // Probes / Window
	Schedule  float64 // servers / interval: the probes per second the schedule asks for
	Kept      float64 // PerSecond / Schedule
	// The lag of a probe is |its gap - interval|, where its gap is the time since the previous
	// probe of the same server: 0 for a checker that keeps the schedule exactly; a late probe, an
	// early one, a skipped interval (a gap of two intervals) and a doubled probe all count.
	LagP50, LagP99, LagMax time.Duration
	GapMin, GapMax         time.Duration
	// GapMean is the mean gap: the period the checker keeps, interval when it keeps the
	// schedule. Unlike PerSecond it does not depend on where the window cuts a checker that
	// probes all its servers at the same moment.
	GapMean       time.Duration
	Unprobed      int64 // servers that no probe reached in the window
	PerServerMin  int64 // the fewest probes one server got in the window
	PerServerMax  int64
	ConnsPerProbe float64 // new connections per probe: 1 without keep-alive
	Other         int64   // requests that were not GET /health
}

// Summarize reads a merged window against the schedule of one probe per server per interval.
func Summarize(st Stats, interval time.Duration) (Summary, error) {
	if interval <= 0 {
		return Summary{}, errors.New("interval: must be positive")
	}
	if st.WindowNS <= 0 || st.Servers == 0 {
		return Summary{}, errors.New("summary: no window (no backend, or no time since the reset)")
	}
	s := Summary{Servers: st.Servers, Window: time.Duration(st.WindowNS), Probes: st.Probes, Other: st.Other,
		GapMax: time.Duration(st.MaxGapNS)}
	s.PerSecond = float64(st.Probes) / s.Window.Seconds()
	s.Schedule = float64(st.Servers) / interval.Seconds()
	s.Kept = s.PerSecond / s.Schedule
	if st.MinGapNS >= 0 {
		s.GapMin = time.Duration(st.MinGapNS)
	}
	if st.Probes > 0 {
		s.ConnsPerProbe = float64(st.Conns) / float64(st.Probes)
	}
	if len(st.PerServer) > 0 {
		s.PerServerMin, s.PerServerMax = st.PerServer[0][0], st.PerServer[len(st.PerServer)-1][0]
		if st.PerServer[0][0] == 0 {
			s.Unprobed = st.PerServer[0][1]
		}
	}
	s.LagP50, s.LagP99 = lagPercentiles(st, interval)
	if st.Gaps > 0 {
		s.GapMean = time.Duration(st.GapSumS / float64(st.Gaps) * float64(time.Second))
		s.LagMax = max(absDur(s.GapMax-interval), absDur(s.GapMin-interval))
	}
	return s, nil
}

// lagPercentiles returns the 50th and 99th percentile of |gap - interval| over the histogram,
// each gap taken at its bucket's middle (so to within half a bucket); a gap past the histogram's
// range counts as the longest gap seen.
func lagPercentiles(st Stats, interval time.Duration) (p50, p99 time.Duration) {
	if st.Gaps == 0 {
		return 0, 0
	}
	type lagCount struct {
		lag time.Duration
		n   int64
	}
	lags := make([]lagCount, 0, len(st.Hist)+1)
	for _, p := range st.Hist {
		mid := time.Duration(p[0]*st.BucketNS + st.BucketNS/2)
		lags = append(lags, lagCount{absDur(mid - interval), p[1]})
	}
	if st.Overflow > 0 {
		lags = append(lags, lagCount{absDur(time.Duration(st.MaxGapNS) - interval), st.Overflow})
	}
	slices.SortFunc(lags, func(a, b lagCount) int { return cmp.Compare(a.lag, b.lag) })
	at := func(q float64) time.Duration {
		rank := int64(q*float64(st.Gaps-1)) + 1 // the rank-th smallest, 1-based
		var seen int64
		for _, l := range lags {
			if seen += l.n; seen >= rank {
				return l.lag
			}
		}
		return lags[len(lags)-1].lag
	}
	return at(0.50), at(0.99)
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// String is the summary as key=value fields for a RESULT line; durations in ms, rates per second.
func (s Summary) String() string {
	var b strings.Builder
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintf(&b, "servers=%d window_s=%.1f probes=%d probes_per_s=%.0f schedule_per_s=%.0f kept=%.3f",
		s.Servers, s.Window.Seconds(), s.Probes, s.PerSecond, s.Schedule, s.Kept)
	fmt.Fprintf(&b, " lag_p50_ms=%s lag_p99_ms=%s lag_max_ms=%s gap_min_ms=%s gap_mean_ms=%s gap_max_ms=%s",
		ms(s.LagP50), ms(s.LagP99), ms(s.LagMax), ms(s.GapMin), ms(s.GapMean), ms(s.GapMax))
	fmt.Fprintf(&b, " unprobed=%d per_server_min=%d per_server_max=%d conns_per_probe=%.2f other=%d",
		s.Unprobed, s.PerServerMin, s.PerServerMax, s.ConnsPerProbe, s.Other)
	return b.String()
}
