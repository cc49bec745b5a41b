package status

import (
	"log/slog"
	"net/http"
	"runtime"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"hcproxy/probe"
	"hcproxy/shm"
	"hcproxy/version"
)

// newMetricsHandler serves /metrics from a private registry holding only collectors of the table
// (and of /proc for the pids in it), so every worker exposes the same series: no Go or process
// collector of the serving process, whose series would change with the worker a scrape reaches.
func newMetricsHandler(t *shm.Table, log *slog.Logger) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(t), newProcCollector(t))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// collector is a prometheus.Collector that reads one table Snapshot per scrape. Server series are
// labelled upstream (the slot's label as it is: several upstreams comma separated) and server;
// the no-server count upstream only (summed over the label's slots: upstream.Policy counts it
// in one slot per upstream); worker series by their index in the worker table (bounded by
// shm.WorkerCap, so a reload starts no new series, as a pid or generation label would).
type collector struct {
	t *shm.Table

	up, available, admin, consecutive, weight, active *prometheus.Desc
	eweight, duration                                 *prometheus.Desc
	checks, failures, transitions                     *prometheus.Desc
	requests, errors, passive                         *prometheus.Desc
	wRequests, wOwned, wHeartbeat, workers            *prometheus.Desc
	generation, slotsUsed, capacity, events           *prometheus.Desc

	// request metrics (shm.Slot.CountRequest, CountNoServer) and process counters (shm.ProcessStats)
	responses, reqDuration, headerSum, connectSum, connects *prometheus.Desc
	bytesIn, bytesOut, retries, own, noServer               *prometheus.Desc
	reloads, reloadLast, reloadOK, restarts, build, master  *prometheus.Desc
	// The fleet's (only with a [fleet]).
	fleetJoined, fleetMembers, fleetClaims, fleetRoundTrips, fleetWrites, fleetFallbacks, fleetSessions, remote *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(t *shm.Table) *collector {
	server := []string{"upstream", "server"}
	worker := []string{"index"} // the worker table's entry, bounded by shm.WorkerCap: no pid or generation
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
		workers:     d("workers", "Workers in the table by state.", "state"),

		responses:   d("responses_total", "Responses to clients by status class (1xx..5xx), all workers; hcproxy's own included.", append(server, "code")...),
		reqDuration: d("request_duration_seconds", "Time from a request's arrival to its end, all workers.", server...),
		headerSum:   d("upstream_header_seconds_total", "Time from the first try to the response head, summed over requests.", server...),
		connectSum:  d("upstream_connect_seconds_total", "Time to connect new upstream connections, summed (fast engine).", server...),
		connects:    d("upstream_connects_total", "New upstream connections timed (fast engine).", server...),
		bytesIn:     d("request_body_bytes_total", "Request body bytes read from clients.", server...),
		bytesOut:    d("response_body_bytes_total", "Response body bytes sent to clients.", server...),
		retries:     d("retries_total", "Tries after the first, all workers.", server...),
		own:         d("own_responses_total", "Requests hcproxy answered itself, by reason: timeout (504), upstream_error (502), client_closed (499, 408).", append(server, "reason")...),
		noServer:    d("no_server_responses_total", "Requests answered 503 because no server of the upstream was available, all workers.", "upstream"),
		reloads:     d("reloads_total", "Reloads by outcome.", "outcome"),
		reloadLast:  d("last_reload_timestamp_seconds", "When the last reload ended (0: none yet)."),
		reloadOK:    d("last_reload_success", "Whether the last reload succeeded (1) or kept the running configuration (0)."),
		restarts:    d("worker_restarts_total", "Workers replaced after an unexpected exit, by cause: exit (by itself) or signal (killed).", "cause"),
		build:       d("build_info", "The build of the worker that answered: 1, labelled with its version and Go version.", "version", "goversion"),
		master:      d("master_running", "Whether the master that last attached to the table still runs."),

		fleetJoined:     d("fleet_joined", "Whether this host is in the fleet (1) or in fallback, checking every server itself (0). Only with a [fleet]."),
		fleetMembers:    d("fleet_members", "Live members of the fleet this host sees (0 in fallback)."),
		fleetClaims:     d("fleet_claims", "Servers this host holds a claim on, and so checks (0 in fallback)."),
		fleetRoundTrips: d("fleet_etcd_round_trips_total", "Requests to etcd since the master started."),
		fleetWrites:     d("fleet_etcd_writes_total", "Write requests to etcd (transactions, grants, revokes) since the master started."),
		fleetFallbacks:  d("fleet_fallbacks_total", "Times this host left the fleet for fallback (etcd out of reach, its lease lapsed)."),
		fleetSessions:   d("fleet_sessions_total", "Times this host joined the fleet."),
		remote:          d("server_fleet_remote", "Whether another host of the fleet checks the server (1: its state is the fleet's vote) or this host does (0).", server...),
	}
}

// Describe sends every descriptor.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.available, c.admin, c.consecutive, c.weight, c.eweight, c.active, c.duration,
		c.checks, c.failures, c.transitions, c.requests, c.errors, c.passive, c.wRequests, c.wOwned, c.wHeartbeat,
		c.generation, c.slotsUsed, c.capacity, c.events, c.workers,
		c.responses, c.reqDuration, c.headerSum, c.connectSum, c.connects, c.bytesIn, c.bytesOut, c.retries, c.own,
		c.noServer, c.reloads, c.reloadLast, c.reloadOK, c.restarts, c.build, c.master,
		c.fleetJoined, c.fleetMembers, c.fleetClaims, c.fleetRoundTrips, c.fleetWrites, c.fleetFallbacks, c.fleetSessions, c.remote} {
		ch <- d
	}
}

// Collect reads one snapshot and sends its metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.collect(ch, c.t.Snapshot())
	c.collectProcess(ch, c.t.ProcessStats())
}

// collectProcess sends the process counters and the build.
func (c *collector) collectProcess(ch chan<- prometheus.Metric, ps shm.ProcessStats) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.reloads, ps.ReloadsOK, "ok")
	counter(c.reloads, ps.ReloadsFailed, "failed")
	ch <- prometheus.MustNewConstMetric(c.reloadLast, prometheus.GaugeValue, float64(ps.ReloadLastMs)/1e3)
	ch <- prometheus.MustNewConstMetric(c.reloadOK, prometheus.GaugeValue, bool01(ps.ReloadLastOK || ps.ReloadLastMs == 0))
	counter(c.restarts, ps.RestartsExit, "exit")
	counter(c.restarts, ps.RestartsKill, "signal")
	ch <- prometheus.MustNewConstMetric(c.build, prometheus.GaugeValue, 1, version.Version, runtime.Version())
}

// collect sends the metrics of sn (and the table's event count).
func (c *collector) collect(ch chan<- prometheus.Metric, sn shm.Snapshot) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(c.generation, float64(sn.Generation))
	gauge(c.master, bool01(sn.MasterRunning))
	gauge(c.slotsUsed, float64(len(sn.Slots)))
	gauge(c.capacity, float64(sn.Capacity))
	counter(c.events, c.t.EventHead())
	fleet := sn.Fleet.Mode != shm.FleetNone
	if f := sn.Fleet; fleet {
		gauge(c.fleetJoined, bool01(f.Mode == shm.FleetJoined))
		gauge(c.fleetMembers, float64(f.Members))
		gauge(c.fleetClaims, float64(f.Claims))
		counter(c.fleetRoundTrips, f.RoundTrips)
		counter(c.fleetWrites, f.Writes)
		counter(c.fleetFallbacks, f.Fallbacks)
		counter(c.fleetSessions, f.Sessions)
	}

	noServer := map[string]uint64{} // by upstream label: each upstream counts in one of its slots
	var labels []string
	for _, in := range dedupe(sn.Slots) {
		// Label values must be UTF-8, or the registry drops the metric (with a logged panic): a
		// slot's strings are bytes from the table, so invalid sequences become U+FFFD.
		in.Label, in.Address = strings.ToValidUTF8(in.Label, "\uFFFD"), strings.ToValidUTF8(in.Address, "\uFFFD")
		l := []string{in.Label, in.Address}
		if _, ok := noServer[in.Label]; !ok {
			labels = append(labels, in.Label)
		}
		noServer[in.Label] += in.Req.NoServer
		gauge(c.up, bool01(in.State.Health() == shm.Up), l...)
		gauge(c.available, bool01(in.State.Available()), l...)
		for _, a := range []shm.Admin{shm.Ready, shm.Drain, shm.Maint} {
			gauge(c.admin, bool01(in.State.Admin() == a), in.Label, in.Address, a.String())
		}
		gauge(c.consecutive, float64(in.State.Streak()), l...)
		if fleet {
			gauge(c.remote, bool01(in.State.Remote()), l...)
		}
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
		c.requestMetrics(ch, in, l)
	}
	for _, l := range labels { // every upstream label, 0 included, so a rate has a series from the start
		counter(c.noServer, noServer[l], l)
	}

	now := sn.NowNs
	states := map[string]int{"starting": 0, "ready": 0, "draining": 0, "dead": 0}
	for _, w := range sn.Workers {
		states[w.State.String()]++
		if w.Token == 0 {
			continue // reserved but not yet registered
		}
		l := strconv.Itoa(w.Index)
		counter(c.wRequests, w.Requests, l)
		gauge(c.wOwned, float64(w.Owned), l)
		if w.BeatNs != 0 {
			gauge(c.wHeartbeat, float64(max(now-w.BeatNs, 0))/1e9, l)
		}
	}
	for st, n := range states {
		gauge(c.workers, float64(n), st)
	}
}

// requestMetrics sends a slot's request metrics, labelled l (upstream, server).
func (c *collector) requestMetrics(ch chan<- prometheus.Metric, in shm.SlotInfo, l []string) {
	r := in.Req
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for i, n := range r.Classes {
		counter(c.responses, n, l[0], l[1], strconv.Itoa(i+1)+"xx")
	}
	buckets := make(map[float64]uint64, len(shm.ReqBounds))
	var cum uint64
	for i, b := range shm.ReqBounds {
		cum += r.DurBuckets[i]
		buckets[b.Seconds()] = cum
	}
	ch <- prometheus.MustNewConstHistogram(c.reqDuration, max(r.Responses(), cum), float64(r.DurSumUs)/1e6, buckets, l...)
	ch <- prometheus.MustNewConstMetric(c.headerSum, prometheus.CounterValue, float64(r.HeaderSumUs)/1e6, l...)
	ch <- prometheus.MustNewConstMetric(c.connectSum, prometheus.CounterValue, float64(r.ConnectSum)/1e6, l...)
	counter(c.connects, r.Connects, l...)
	counter(c.bytesIn, r.BytesIn, l...)
	counter(c.bytesOut, r.BytesOut, l...)
	counter(c.retries, r.Retries, l...)
	for i, n := range r.Own {
		counter(c.own, n, l[0], l[1], shm.OwnReason(i+1).String())
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
