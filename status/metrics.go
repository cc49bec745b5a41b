package status

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hcproxy/probe"
	"hcproxy/shm"
)

// newMetricsHandler serves /metrics from a private registry holding only the table collector, so
// every worker exposes the same series (no per-process Go or process metrics).
func newMetricsHandler(t *shm.Table, log *slog.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(t))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// collector is a prometheus.Collector that reads one table Snapshot per scrape. Server series are
// labelled upstream (the slot's label as it is: several upstreams comma separated) and server;
// worker series pid, generation and state.
type collector struct {
	t *shm.Table

	up, available, admin, consecutive, weight, active *prometheus.Desc
	eweight, duration                                 *prometheus.Desc
	checks, failures, transitions                     *prometheus.Desc
	requests, errors, passive                         *prometheus.Desc
	wRequests, wOwned, wHeartbeat                     *prometheus.Desc
	generation, slotsUsed, capacity, events           *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(t *shm.Table) *collector {
	server := []string{"upstream", "server"}
	worker := []string{"pid", "generation", "state"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("hcproxy_"+name, help, labels, nil)
	}
	return &collector{
		t:           t,
		up:          d("server_up", "Whether the server's active checks find it up (1) or not (0: down or checking).", server...),
		available:   d("server_available", "Whether the server takes new requests: up, admin ready and not ejected by passive checks.", server...),
		admin:       d("server_admin_state", "The operator's admin state of the server: 1 for the current state (ready, drain, maint), 0 for the others.", append(server, "state")...),
		consecutive: d("server_consecutive", "Consecutive check results equal to the last one.", server...),
		weight:      d("server_weight", "Configured balancing weight of the server.", server...),
		eweight:     d("server_effective_weight", "Balancing weight the server gets while available: its weight times its agent check's percentage and slow-start ramp.", server...),
		active:      d("server_active_requests", "Requests in flight to the server, all workers.", server...),
		duration:    d("check_duration_seconds", "Round-trip time of the server's active checks.", server...),
		checks:      d("checks_total", "Active checks of the server.", server...),
		failures:    d("check_failures_total", "Failed active checks of the server by reason.", append(server, "reason")...),
		transitions: d("server_transitions_total", "Health transitions of the server (up, down).", server...),
		requests:    d("server_requests_total", "Requests proxied to the server, all workers.", server...),
		errors:      d("server_errors_total", "Proxied requests that failed upstream (connect error, timeout, reset), all workers.", server...),
		passive:     d("server_passive_failures_total", "Failed requests counted by passive checks, all workers.", server...),
		wRequests:   d("worker_requests_total", "Requests proxied by the worker.", worker...),
		wOwned:      d("worker_checks_owned", "Checks the worker owned at its last heartbeat.", worker...),
		wHeartbeat:  d("worker_heartbeat_age_seconds", "Time since the worker's last heartbeat.", worker...),
		generation:  d("generation", "Generation of workers the master last published."),
		slotsUsed:   d("table_slots_used", "Allocated slots of the health table."),
		capacity:    d("table_capacity", "Slots in the health table."),
		events:      d("events_total", "Events appended to the event ring since the table was created."),
	}
}

// Describe sends every descriptor.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.available, c.admin, c.consecutive, c.weight, c.eweight, c.active, c.duration,
		c.checks, c.failures, c.transitions, c.requests, c.errors, c.passive, c.wRequests, c.wOwned, c.wHeartbeat,
		c.generation, c.slotsUsed, c.capacity, c.events} {
		ch <- d
	}
}

// Collect reads one snapshot and sends its metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) { c.collect(ch, c.t.Snapshot()) }

// collect sends the metrics of sn (and the table's event count).
func (c *collector) collect(ch chan<- prometheus.Metric, sn shm.Snapshot) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.generation, float64(sn.Generation))
	gauge(c.slotsUsed, float64(len(sn.Slots)))
	gauge(c.capacity, float64(sn.Capacity))
	counter(c.events, c.t.EventHead())

	for _, in := range dedupe(sn.Slots) {
		// Label values must be UTF-8, or the registry drops the metric (with a logged panic): a
		// slot's strings are bytes from the table, so invalid sequences become U+FFFD.
		in.Label, in.Address = strings.ToValidUTF8(in.Label, "\uFFFD"), strings.ToValidUTF8(in.Address, "\uFFFD")
		l := []string{in.Label, in.Address}
		gauge(c.up, bool01(in.State.Health() == shm.Up), l...)
		gauge(c.available, bool01(in.State.Available()), l...)
		for _, a := range []shm.Admin{shm.Ready, shm.Drain, shm.Maint} {
			gauge(c.admin, bool01(in.State.Admin() == a), in.Label, in.Address, a.String())
		}
		gauge(c.consecutive, float64(in.State.Streak()), l...)
		gauge(c.weight, float64(in.Weight), l...)
		gauge(c.eweight, float64(in.EffectiveWeight(sn.NowNs))/shm.WeightScale, l...)
		gauge(c.active, float64(in.Active), l...)
		ch <- c.histogram(in)
		counter(c.checks, in.Checks, l...)
		for r, n := range in.FailReasons {
			if n > 0 {
				counter(c.failures, n, in.Label, in.Address, probe.Reason(r).String())
			}
		}
		counter(c.transitions, in.Transitions, l...)
		counter(c.requests, in.Requests, l...)
		counter(c.errors, in.Errors, l...)
		counter(c.passive, in.Passive, l...)
	}

	now := sn.NowNs
	seen := map[[3]string]bool{}
	for _, w := range sn.Workers {
		l := [3]string{strconv.Itoa(w.Token.Pid()), strconv.FormatUint(w.Generation, 10), w.State.String()}
		if w.Token == 0 || seen[l] {
			continue // reserved but not yet registered: no pid to name it by
		}
		seen[l] = true
		counter(c.wRequests, w.Requests, l[:]...)
		gauge(c.wOwned, float64(w.Owned), l[:]...)
		if w.BeatNs != 0 {
			gauge(c.wHeartbeat, float64(max(now-w.BeatNs, 0))/1e9, l[:]...)
		}
	}
}

// histogram makes the check round-trip histogram of a slot: its per-bucket counts made cumulative,
// its sum, and its check count. The count is never below the buckets (the counters are read one
// by one while a check may be recorded).
func (c *collector) histogram(in shm.SlotInfo) prometheus.Metric {
	buckets := make(map[float64]uint64, len(shm.RTTBounds))
	var cum uint64
	for i, b := range shm.RTTBounds {
		cum += in.RTTBuckets[i]
		buckets[b.Seconds()] = cum
	}
	count := max(in.Checks, cum)
	return prometheus.MustNewConstHistogram(c.duration, count, float64(in.RTTSumUs)/1e6, buckets, in.Label, in.Address)
}

// dedupe drops all but one slot per (label, address) — a reload that changed a server's check
// leaves the old slot until the old workers are gone — keeping the one checked last, so that no
// series is sent twice.
func dedupe(slots []shm.SlotInfo) []shm.SlotInfo {
	at := map[[2]string]int{}
	out := slots[:0:0]
	for _, in := range slots {
		k := [2]string{in.Label, in.Address}
		if i, ok := at[k]; ok {
			if in.LastCheckMs > out[i].LastCheckMs {
				out[i] = in
			}
			continue
		}
		at[k] = len(out)
		out = append(out, in)
	}
	return out
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
