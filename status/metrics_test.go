package status

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"hcproxy/shm"
)

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: status %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return mfs
}

// find returns the metric of family name whose labels include all of want, failing the test
// when there is none or more than one.
func find(t *testing.T, mfs map[string]*dto.MetricFamily, name string, want ...string) *dto.Metric {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("no metric family %s", name)
	}
	var found *dto.Metric
	for _, m := range mf.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i < len(want); i += 2 {
			match = match && have[want[i]] == want[i+1]
		}
		if match {
			if found != nil {
				t.Fatalf("%s%v: more than one series", name, want)
			}
			found = m
		}
	}
	if found == nil {
		t.Fatalf("%s%v: no series", name, want)
	}
	return found
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return -1
}

func TestMetrics(t *testing.T) {
	f := newFixture(t)
	// A server shared by two upstreams keeps its label as it is.
	i, err := f.tab.Alloc(8, "10.0.0.5:80", "app,web", time.Second, 2, shm.Up)
	if err != nil {
		t.Fatal(err)
	}
	f.tab.AppendEvent(shm.Event{Kind: shm.EventAdmin, Slot: i})
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()
	mfs := scrape(t, srv.URL)

	app1 := []string{"upstream", "app", "server", "10.0.0.1:80"}
	app2 := []string{"upstream", "app", "server", "10.0.0.2:80"}
	api := []string{"upstream", "api", "server", "10.0.0.9:81"}
	shared := []string{"upstream", "app,web", "server", "10.0.0.5:80"}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"hcproxy_server_up", app1, 1},
		{"hcproxy_server_up", app2, 0},
		{"hcproxy_server_up", api, 0},
		{"hcproxy_server_up", shared, 1},
		{"hcproxy_server_available", app1, 1},
		{"hcproxy_server_available", app2, 0},
		{"hcproxy_server_available", api, 0},
		{"hcproxy_server_admin_state", append(api, "state", "drain"), 1},
		{"hcproxy_server_admin_state", append(api, "state", "ready"), 0},
		{"hcproxy_server_admin_state", append(app1, "state", "ready"), 1},
		{"hcproxy_server_consecutive", app2, 2},
		{"hcproxy_server_weight", api, 3},
		{"hcproxy_server_weight", shared, 2},
		{"hcproxy_server_effective_weight", api, 3},
		{"hcproxy_server_active_requests", app1, 2},
		{"hcproxy_checks_total", app2, 3},
		{"hcproxy_check_failures_total", append(app2, "reason", "bad_status"), 2},
		{"hcproxy_server_transitions_total", app2, 2},
		{"hcproxy_server_requests_total", app1, 7},
		{"hcproxy_server_errors_total", app1, 1},
		{"hcproxy_server_passive_failures_total", app1, 1},
		{"hcproxy_worker_requests_total", []string{"index", "0"}, 0},
		{"hcproxy_worker_checks_owned", []string{"index", "0"}, 2},
		{"hcproxy_workers", []string{"state", "ready"}, 1},
		{"hcproxy_generation", nil, 3},
		{"hcproxy_table_slots_used", nil, 4},
		{"hcproxy_table_capacity", nil, 8},
		{"hcproxy_events_total", nil, 1},
	} {
		if got := value(find(t, mfs, tc.name, tc.labels...)); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// Failures by reason: only the reasons that occurred.
	if ms := mfs["hcproxy_check_failures_total"].Metric; len(ms) != 1 {
		t.Errorf("failure series = %v, want only app2's bad_status", ms)
	}
	if age := value(find(t, mfs, "hcproxy_worker_heartbeat_age_seconds", "index", "0")); age < 0 || age > 60 {
		t.Errorf("heartbeat age = %v s", age)
	}

	// The histogram: app2 had a 1.5ms pass and two 20ms failures.
	h := find(t, mfs, "hcproxy_check_duration_seconds", app2...).Histogram
	if h == nil || h.GetSampleCount() != 3 || h.GetSampleSum() < 0.0414 || h.GetSampleSum() > 0.0416 {
		t.Fatalf("histogram = %v", h)
	}
	if len(h.Bucket) != len(shm.RTTBounds)+1 { // the parser keeps +Inf
		t.Errorf("%d buckets", len(h.Bucket))
	}
	for _, b := range h.Bucket {
		var want uint64
		switch ub := b.GetUpperBound(); {
		case ub < 0.0015:
			want = 0
		case ub < 0.02:
			want = 1
		default:
			want = 3
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v = %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if h := find(t, mfs, "hcproxy_check_duration_seconds", api...).Histogram; h.GetSampleCount() != 0 {
		t.Errorf("unchecked server histogram = %v", h)
	}

	// Every worker answers the same: no per-process series.
	for name := range mfs {
		if name[:8] != "hcproxy_" {
			t.Errorf("foreign metric %s", name)
		}
	}
}

// Two slots of one server in one upstream (a reload changed its check; the old slot lingers) give
// one series, not a failed scrape.
func TestMetricsDuplicateSlot(t *testing.T) {
	f := newFixture(t)
	if _, err := f.tab.Alloc(99, "10.0.0.1:80", "app", time.Second, 1, shm.Down); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()
	mfs := scrape(t, srv.URL)
	if got := value(find(t, mfs, "hcproxy_server_up", "server", "10.0.0.1:80")); got != 1 {
		t.Errorf("up = %v, want the checked slot's 1", got)
	}
}

// A slot string that is not valid UTF-8 (bytes from the table) must not make the collector panic
// or drop the server's series: the bad bytes become U+FFFD.
func TestMetricsInvalidUTF8LabelKeepsTheSeries(t *testing.T) {
	f := newFixture(t)
	if _, err := f.tab.Alloc(77, "10.0.0.7:80", "bad\xffname", time.Second, 1, shm.Up); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()
	mfs := scrape(t, srv.URL)
	if got := value(find(t, mfs, "hcproxy_server_up", "upstream", "bad\uFFFDname", "server", "10.0.0.7:80")); got != 1 {
		t.Errorf("up = %v, want 1", got)
	}
}

// The no-server count is one series per upstream label, summed over the label's slots (a
// worker counts each request in its upstream's home slot), 0 for an upstream without any, and
// labelled upstream only.
func TestMetricsNoServerPerUpstream(t *testing.T) {
	f := newFixture(t)
	i, err := f.tab.Alloc(8, "10.0.0.5:80", "app,web", time.Second, 1, shm.Down)
	if err != nil {
		t.Fatal(err)
	}
	shared := f.tab.Slot(i)
	var app shm.Slot
	for j := 0; j < f.tab.Capacity(); j++ {
		if s := f.tab.Slot(j); s.Used() && s.Address() == "10.0.0.2:80" {
			app = s
		}
	}
	for range 3 {
		app.CountNoServer()
	}
	shared.CountNoServer()
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()
	mfs := scrape(t, srv.URL)
	for label, want := range map[string]float64{"app": 3, "api": 0, "app,web": 1} {
		m := find(t, mfs, "hcproxy_no_server_responses_total", "upstream", label)
		if got := value(m); got != want {
			t.Errorf("no_server_responses_total{upstream=%q} = %v, want %v", label, got, want)
		}
		if len(m.Label) != 1 {
			t.Errorf("no_server_responses_total{upstream=%q} labels %v, want upstream only", label, m.Label)
		}
	}
	if n := len(mfs["hcproxy_no_server_responses_total"].Metric); n != 3 {
		t.Errorf("%d no-server series, want one per upstream label (3)", n)
	}
	// Not a response of any server: the status classes do not count it.
	if got := value(find(t, mfs, "hcproxy_responses_total", "server", "10.0.0.2:80", "code", "5xx")); got != 0 {
		t.Errorf("app's 5xx responses = %v, want 0", got)
	}
}

// The fleet's series: absent without a [fleet]; with one, the master's figures and, per server,
// whether another host checks it.
func TestFleetMetrics(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()
	for _, name := range []string{"hcproxy_fleet_joined", "hcproxy_fleet_claims", "hcproxy_server_fleet_remote"} {
		if _, ok := scrape(t, srv.URL)[name]; ok {
			t.Errorf("%s without a [fleet]", name)
		}
	}
	f.tab.SetFleetStats(shm.FleetStats{Mode: shm.FleetJoined, Members: 3, Claims: 2, RoundTrips: 40, Writes: 9, Fallbacks: 1, Sessions: 2})
	sn := f.tab.Snapshot()
	remote := sn.Slots[0]
	f.tab.Slot(remote.Index).SetRemote(true)
	mfs := scrape(t, srv.URL)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"hcproxy_fleet_joined", nil, 1},
		{"hcproxy_fleet_members", nil, 3},
		{"hcproxy_fleet_claims", nil, 2},
		{"hcproxy_fleet_etcd_round_trips_total", nil, 40},
		{"hcproxy_fleet_etcd_writes_total", nil, 9},
		{"hcproxy_fleet_fallbacks_total", nil, 1},
		{"hcproxy_fleet_sessions_total", nil, 2},
		{"hcproxy_server_fleet_remote", []string{"server", remote.Address}, 1},
		{"hcproxy_server_fleet_remote", []string{"server", sn.Slots[1].Address}, 0},
	} {
		if got := value(find(t, mfs, tc.name, tc.labels...)); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
}
