package status

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"hcproxy/shm"
)

// weightTable is a table with three servers of upstream app:
//
//	10.0.0.1:80  weight, slow start slow, just came up (down, then one pass with rise 1)
//	10.0.0.2:80  weight 10, its agent asked for 50%
//	10.0.0.3:80  weight 3, nothing else
//
// It returns the table and the monotonic time 10.0.0.1 came up.
func weightTable(t *testing.T, weight int, slow time.Duration) (*shm.Table, int64) {
	t.Helper()
	tab, err := shm.OpenMaster(filepath.Join(t.TempDir(), "table"), 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Close() })
	tab.SetMaster(os.Getpid()) // a running process: the table is live
	alloc := func(addr string, weight int, h shm.Health) shm.Slot {
		i, err := tab.Alloc(7, addr, "app", time.Second, weight, h)
		if err != nil {
			t.Fatal(err)
		}
		return tab.Slot(i)
	}
	ramp := alloc("10.0.0.1:80", weight, shm.Down)
	tab.SetSlowStart(ramp.Index(), slow)
	tok := tab.NewToken(1)
	fence, _ := ramp.Claim(0, tok, 0)
	if tr, err := ramp.Record(tok, fence, shm.Result{OK: true}, 1, 1); err != nil || tr.To != shm.Up {
		t.Fatalf("came up: %+v %v", tr, err)
	}
	alloc("10.0.0.2:80", 10, shm.Up).SetAgent(50, shm.Ready)
	alloc("10.0.0.3:80", 3, shm.Up)
	return tab, ramp.UpSince()
}

// snapshotCollector is the table's collector over a fixed snapshot.
type snapshotCollector struct {
	c  *collector
	sn shm.Snapshot
}

func (s snapshotCollector) Describe(ch chan<- *prometheus.Desc) { s.c.Describe(ch) }
func (s snapshotCollector) Collect(ch chan<- prometheus.Metric) { s.c.collect(ch, s.sn) }

// gather returns the metric families the collector makes of sn, by name.
func gather(t *testing.T, tab *shm.Table, sn shm.Snapshot) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(snapshotCollector{newCollector(tab), sn})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	mfs := map[string]*dto.MetricFamily{}
	for _, mf := range fams {
		mfs[mf.GetName()] = mf
	}
	return mfs
}

// A server a second into a 4s slow start takes a quarter of its weight, and every format says
// so with the same number: the page an operator reads at 3 a.m. must not show a full weight
// the balancers do not give. After the ramp, the effective weight is the configured one again.
func TestEffectiveWeightMidRamp(t *testing.T) {
	tab, up := weightTable(t, 10, 4*time.Second)
	wall := time.UnixMilli(1_700_000_000_000)
	for _, tc := range []struct {
		name     string
		at       int64                        // monotonic now of the snapshot
		json     map[string]map[string]string // address -> field -> JSON text (and CSV cell)
		html     map[string]string            // address -> weight cell
		eweights map[string]float64           // address -> hcproxy_server_effective_weight
	}{{
		name: "1s into a 4s ramp",
		at:   up + int64(time.Second),
		json: map[string]map[string]string{
			"10.0.0.1:80": {"weight": "10", "effective_weight": "2.5", "slow_start_ms": "4000", "slow_start_remaining_ms": "3000"},
			"10.0.0.2:80": {"weight": "10", "effective_weight": "5", "slow_start_ms": "0", "slow_start_remaining_ms": "0", "agent_weight_pct": "50"},
			"10.0.0.3:80": {"weight": "3", "effective_weight": "3", "slow_start_ms": "0", "slow_start_remaining_ms": "0"},
		},
		html: map[string]string{
			"10.0.0.1:80": "10 → 2.5 (slow start 25%, 3s left)",
			"10.0.0.2:80": "10 → 5 (agent 50%)",
			"10.0.0.3:80": "3",
		},
		eweights: map[string]float64{"10.0.0.1:80": 2.5, "10.0.0.2:80": 5, "10.0.0.3:80": 3},
	}, {
		name: "ramp over",
		at:   up + int64(5*time.Second),
		json: map[string]map[string]string{
			"10.0.0.1:80": {"weight": "10", "effective_weight": "10", "slow_start_ms": "4000", "slow_start_remaining_ms": "0"},
		},
		html:     map[string]string{"10.0.0.1:80": "10"},
		eweights: map[string]float64{"10.0.0.1:80": 10},
	}} {
		sn := tab.Snapshot()
		sn.NowNs = tc.at
		doc := Build(sn, wall)

		body, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		_, values := jsonBackends(t, string(body))
		var buf bytes.Buffer
		if err := WriteCSV(&buf, doc.Backends); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&buf).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for i, b := range doc.Backends {
			for field, want := range tc.json[b.Address] {
				if got := values[i][field]; got != want {
					t.Errorf("%s: json %s %s = %s, want %s", tc.name, b.Address, field, got, want)
				}
				if got := recs[1+i][slices.Index(recs[0], field)]; got != want {
					t.Errorf("%s: csv %s %s = %s, want %s", tc.name, b.Address, field, got, want)
				}
			}
		}

		buf.Reset()
		if err := pageTmpl.Execute(&buf, newPage(doc, wall, 0, Filter{}, rateSample{}, false)); err != nil {
			t.Fatal(err)
		}
		rows := parseRows(t, buf.String())
		for addr, want := range tc.html {
			if got := rows[addr].cells["weight"]; got != want {
				t.Errorf("%s: html %s weight = %q, want %q", tc.name, addr, got, want)
			}
		}

		mfs := gather(t, tab, sn)
		for addr, want := range tc.eweights {
			m := find(t, mfs, "hcproxy_server_effective_weight", "upstream", "app", "server", addr)
			if got := value(m); got != want {
				t.Errorf("%s: hcproxy_server_effective_weight{server=%q} = %v, want %v", tc.name, addr, got, want)
			}
		}
	}
}

// The handler computes effective weights at the time of its snapshot: a server of weight 1 that
// just came up into a 1h slow start has 1/100 of a weight for its first 36s (the ramp's floor),
// in the JSON document and in /metrics alike.
func TestEffectiveWeightServed(t *testing.T) {
	tab, _ := weightTable(t, 1, time.Hour)
	srv := httptest.NewServer(Handler(tab, Options{}))
	defer srv.Close()

	_, body := get(t, srv.URL+"/status?format=json")
	var d Document
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	b := d.Backends[0]
	if b.Address != "10.0.0.1:80" || b.EffectiveWeight != 0.01 || b.SlowStartMs != time.Hour.Milliseconds() ||
		b.SlowStartRemainingMs <= (time.Hour-time.Minute).Milliseconds() || b.SlowStartRemainingMs > time.Hour.Milliseconds() {
		t.Errorf("a server just up into a 1h slow start: %+v", b)
	}
	if b := d.Backends[1]; b.EffectiveWeight != 5 {
		t.Errorf("a server of weight 10 at agent 50%%: effective %v", b.EffectiveWeight)
	}
	mfs := scrape(t, srv.URL)
	if got := value(find(t, mfs, "hcproxy_server_effective_weight", "server", "10.0.0.1:80")); got != 0.01 {
		t.Errorf("hcproxy_server_effective_weight of the ramping server = %v, want 0.01", got)
	}
	if got := value(find(t, mfs, "hcproxy_server_effective_weight", "server", "10.0.0.3:80")); got != 3 {
		t.Errorf("hcproxy_server_effective_weight of a plain server = %v, want 3", got)
	}
}
