package main

import (
	"cmp"
	"math"
	"slices"
	"sync"
	"time"
)

// Gaps are kept in a linear histogram of gapBucket-wide buckets up to gapRange; a longer gap goes
// into one overflow count (its length still reaches MaxGapNS).
const (
	gapBucket = 100 * time.Microsecond
	gapRange  = 20 * time.Second
	gapSlots  = int(gapRange / gapBucket)
)

// serverRecord is what a recorder keeps for one server: constant size, whatever the run's length.
// Times are nanoseconds since the recorder started (Go's monotonic clock).
type serverRecord struct {
	last  int64 // arrival of the latest probe ever (kept across Reset: the next gap needs it)
	seen  bool  // last is set
	count int64 // probes in the window
	first int64 // arrival of the window's first probe
	lastW int64 // arrival of the window's latest probe
	ngaps int64 // the window's gaps: its probes but a server's very first one
	sum   float64
	sumsq float64 // of the window's gaps, in seconds
}

// recorder records the arrival time of every probe at every server of one backend process, in a
// window that Reset starts. One mutex guards everything: at 10,000 probes/s it is not contended.
type recorder struct {
	start time.Time
	now   func() time.Time // the clock; time.Now unless a test replaces it

	mu       sync.Mutex
	window   int64 // when the window started (ns since start)
	servers  []serverRecord
	gaps     []uint32 // histogram of the window's gaps
	overflow int64    // gaps of gapRange or more
	maxGap   int64
	minGap   int64 // -1: none yet
	other    int64 // requests that were not GET /health
	conns    int64 // connections accepted in the window
}

func newRecorder(servers int, now func() time.Time) *recorder {
	if now == nil {
		now = time.Now
	}
	return &recorder{start: now(), now: now, servers: make([]serverRecord, servers), gaps: make([]uint32, gapSlots), minGap: -1}
}

func (r *recorder) elapsed() int64 { return int64(r.now().Sub(r.start)) }

// Probe records a probe of server i arriving now.
func (r *recorder) Probe(i int) {
	t := r.elapsed()
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &r.servers[i]
	if s.count == 0 {
		s.first = t
	}
	if s.seen {
		gap := t - s.last
		g := time.Duration(gap).Seconds()
		s.ngaps++
		s.sum += g
		s.sumsq += g * g
		if b := gap / int64(gapBucket); b < int64(gapSlots) {
			r.gaps[b]++
		} else {
			r.overflow++
		}
		if gap > r.maxGap {
			r.maxGap = gap
		}
		if r.minGap < 0 || gap < r.minGap {
			r.minGap = gap
		}
	}
	s.count++
	s.last, s.lastW, s.seen = t, t, true
}

// Other counts a request that was not a probe.
func (r *recorder) Other() {
	r.mu.Lock()
	r.other++
	r.mu.Unlock()
}

// Conn counts a new connection.
func (r *recorder) Conn() {
	r.mu.Lock()
	r.conns++
	r.mu.Unlock()
}

// Reset starts a new window: the counts start again from zero, and each server's last arrival
// is kept, so the window's first probe of a server is measured from the probe before it.
func (r *recorder) Reset() {
	t := r.elapsed()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.window = t
	for i := range r.servers {
		s := &r.servers[i]
		s.count, s.first, s.lastW, s.ngaps, s.sum, s.sumsq = 0, 0, 0, 0, 0, 0
	}
	clear(r.gaps)
	r.overflow, r.maxGap, r.minGap, r.other, r.conns = 0, 0, -1, 0, 0
}

// Stats is one process's window, as the control port serves it (GET /stats) and Merge adds up.
type Stats struct {
	Processes int        `json:"processes"`
	Servers   int        `json:"servers"`
	WindowNS  int64      `json:"window_ns"` // the longest window of the processes merged
	Probes    int64      `json:"probes"`
	Gaps      int64      `json:"gaps"`
	GapSumS   float64    `json:"gap_sum_s"` // the gaps added up, for their mean
	Other     int64      `json:"other"`
	Conns     int64      `json:"conns"`
	MinGapNS  int64      `json:"min_gap_ns"` // -1: no gap
	MaxGapNS  int64      `json:"max_gap_ns"`
	BucketNS  int64      `json:"bucket_ns"`
	Hist      [][2]int64 `json:"hist"`       // [bucket, count], nonzero buckets in order
	Overflow  int64      `json:"overflow"`   // gaps of at least len(buckets) x bucket_ns
	PerServer [][2]int64 `json:"per_server"` // [probes in the window, servers with that many], in order
}

// Snapshot returns the window so far.
func (r *recorder) Snapshot() Stats {
	t := r.elapsed()
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Stats{Processes: 1, Servers: len(r.servers), WindowNS: t - r.window, Other: r.other, Conns: r.conns,
		MinGapNS: r.minGap, MaxGapNS: r.maxGap, BucketNS: int64(gapBucket), Overflow: r.overflow}
	for b, c := range r.gaps {
		if c > 0 {
			st.Hist = append(st.Hist, [2]int64{int64(b), int64(c)})
			st.Gaps += int64(c)
		}
	}
	st.Gaps += r.overflow
	counts := map[int64]int64{}
	for i := range r.servers {
		st.Probes += r.servers[i].count
		st.GapSumS += r.servers[i].sum
		counts[r.servers[i].count]++
	}
	st.PerServer = sortedPairs(counts)
	return st
}

// ServerStats is one server's window (GET /servers): for finding the servers a proxy misses.
type ServerStats struct {
	Index    int     `json:"index"`
	Probes   int64   `json:"probes"`
	FirstNS  int64   `json:"first_ns"` // since the window started; -1 without probes
	LastNS   int64   `json:"last_ns"`
	MeanGapS float64 `json:"mean_gap_s"`
	StdGapS  float64 `json:"std_gap_s"`
}

// Servers returns every server's window.
func (r *recorder) Servers() []ServerStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]ServerStats, len(r.servers))
	for i, s := range r.servers {
		ss := ServerStats{Index: i, Probes: s.count, FirstNS: -1, LastNS: -1}
		if s.count > 0 {
			ss.FirstNS, ss.LastNS = s.first-r.window, s.lastW-r.window
		}
		if s.ngaps > 0 {
			n := float64(s.ngaps)
			ss.MeanGapS = s.sum / n
			ss.StdGapS = math.Sqrt(max(s.sumsq/n-ss.MeanGapS*ss.MeanGapS, 0))
		}
		out[i] = ss
	}
	return out
}

// sortedPairs returns m as [key, value] pairs in key order.
func sortedPairs(m map[int64]int64) [][2]int64 {
	out := make([][2]int64, 0, len(m))
	for k, v := range m {
		out = append(out, [2]int64{k, v})
	}
	slices.SortFunc(out, func(a, b [2]int64) int { return cmp.Compare(a[0], b[0]) })
	return out
}
