package status

import (
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"hcproxy/shm"
)

// Upstream sums up the servers of one upstream label (the label as the table has it: servers
// that several upstreams share form a label of their own, "a,b"): how many are available, and
// their request counters since the slots were allocated, all workers. An upstream's requests
// that no server could take are counted in one of its slots (upstream.Policy's home slot: one
// of its own, so they show under its name, unless all its servers are shared).
type Upstream struct {
	Name         string `json:"name"`
	Servers      int    `json:"servers"`       // configured (allocated slots)
	Available    int    `json:"available"`     // up, ready and not ejected
	Responses    uint64 `json:"responses"`     // responses to clients, all status classes
	Responses5xx uint64 `json:"responses_5xx"` // of which 5xx
	NoServer     uint64 `json:"no_server"`     // requests answered 503 because no server was available (not in Responses)
	// DurationCounts are the cumulative counts of the request duration histogram at the
	// bounds DurationBoundsMs (the last count, at +Inf, is Responses).
	DurationCounts []uint64 `json:"duration_counts"`
	P99Ms          float64  `json:"p99_ms"` // 99th percentile since allocation, -1 without requests, +Inf beyond the last bound
}

// DurationBoundsMs are the bounds of Upstream.DurationCounts, in milliseconds.
var DurationBoundsMs = func() []float64 {
	b := make([]float64, len(shm.ReqBounds))
	for i, d := range shm.ReqBounds {
		b[i] = float64(d) / float64(time.Millisecond)
	}
	return b
}()

// upstreams sums the slots up by label, sorted by name.
func upstreams(slots []shm.SlotInfo) []Upstream {
	at := map[string]int{}
	var out []Upstream
	for _, in := range slots {
		i, ok := at[in.Label]
		if !ok {
			i = len(out)
			at[in.Label] = i
			out = append(out, Upstream{Name: in.Label, DurationCounts: make([]uint64, len(shm.ReqBounds))})
		}
		u := &out[i]
		u.Servers++
		if in.State.Available() {
			u.Available++
		}
		r := in.Req
		u.Responses += r.Responses()
		u.Responses5xx += r.Classes[4]
		u.NoServer += r.NoServer
		var cum uint64
		for j, n := range r.DurBuckets {
			cum += n
			u.DurationCounts[j] += cum
		}
	}
	for i := range out {
		out[i].P99Ms = quantileMs(0.99, out[i].DurationCounts, out[i].Responses)
	}
	slices.SortFunc(out, func(a, b Upstream) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// quantileMs estimates the q-quantile from cumulative counts at DurationBoundsMs and the total,
// interpolating linearly within the bucket as Prometheus's histogram_quantile does: -1 for no
// requests, +Inf when it lies beyond the last bound.
func quantileMs(q float64, cum []uint64, total uint64) float64 {
	if total == 0 {
		return -1
	}
	rank := q * float64(total)
	lower, below := 0.0, uint64(0)
	for i, c := range cum {
		if float64(c) >= rank && c > below {
			return lower + (DurationBoundsMs[i]-lower)*(rank-float64(below))/float64(c-below)
		}
		lower, below = DurationBoundsMs[i], c
	}
	return math.Inf(1)
}

// rateWindow is the longest window a page's rates are computed over, and rateMin the shortest.
const (
	rateWindow = time.Minute
	rateMin    = 2 * time.Second
)

// rates keeps the upstream summaries of the last minute of pages this handler served, so that
// a page shows request rates, error ratios and p99 over a recent window (between the oldest
// view of the last minute, at least rateMin old, and now). Each worker keeps its own: the page
// says over which window its figures are.
type rates struct {
	mu      sync.Mutex
	samples []rateSample
}

type rateSample struct {
	at  time.Time
	ups map[string]Upstream
}

// window records ups at now and returns the sample to compare them with (ok false: none old
// enough yet).
func (r *rates) window(now time.Time, ups []Upstream) (rateSample, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.samples = slices.DeleteFunc(r.samples, func(s rateSample) bool { return now.Sub(s.at) > rateWindow || s.at.After(now) })
	var base rateSample
	ok := false
	if len(r.samples) > 0 && now.Sub(r.samples[0].at) >= rateMin {
		base, ok = r.samples[0], true
	}
	if n := len(r.samples); n == 0 || now.Sub(r.samples[n-1].at) >= rateMin {
		m := make(map[string]Upstream, len(ups))
		for _, u := range ups {
			m[u.Name] = u
		}
		r.samples = append(r.samples, rateSample{at: now, ups: m})
	}
	return base, ok
}
