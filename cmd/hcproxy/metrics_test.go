package main

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"hcproxy/status"
)

// scrapeMetrics reads the status listener's /metrics.
func (p *proxy) scrapeMetrics() (map[string]*dto.MetricFamily, string) {
	p.t.Helper()
	resp, err := http.Get("http://" + p.status + "/metrics")
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
	if err != nil {
		p.t.Fatalf("parse /metrics: %v", err)
	}
	return mfs, string(b)
}

// sum adds up the family's counter values (or histogram counts) whose labels include want.
func sum(mfs map[string]*dto.MetricFamily, name string, want ...string) float64 {
	var total float64
	mf := mfs[name]
	if mf == nil {
		return -1
	}
next:
	for _, m := range mf.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == want[i] && lp.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		}
	}
	return total
}

// TestRequestMetricsAddUp sends a bounded load through 2 workers, reloads, sends more, and
// checks that the request counters and the duration histogram count every request exactly
// once, across workers and the reload (they live in the table's slots), and that hcproxy's
// own 503s are counted for the upstream when no server is available. promtool check metrics,
// when installed, finds the exposition clean.
func TestRequestMetricsAddUp(t *testing.T) {
	bs := startBackends(t, 2)
	p := startProxy(t, proxyOpts{workers: 2}, bs)
	send := func(n int) {
		for i := 0; i < n; i++ {
			resp, err := http.Get(fmt.Sprintf("http://%s/r%d", p.listen, i))
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("request %d: %s", i, resp.Status)
			}
		}
	}
	send(100)
	gen := p.dump().Generation
	p.signal(syscall.SIGHUP)
	p.eventually("reloaded", 15*time.Second, func(d status.Document) bool { return d.Generation == gen+1 && readyWorkers(d) == 2 })
	send(100)
	var mfs map[string]*dto.MetricFamily
	var text string
	deadline := time.Now().Add(5 * time.Second)
	for {
		mfs, text = p.scrapeMetrics()
		if sum(mfs, "hcproxy_responses_total", "code", "2xx") == 200 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := sum(mfs, "hcproxy_responses_total", "code", "2xx"); got != 200 {
		t.Fatalf("2xx responses %v, want 200", got)
	}
	if got := sum(mfs, "hcproxy_responses_total"); got != 200 {
		t.Errorf("responses %v, want 200", got)
	}
	if got := sum(mfs, "hcproxy_request_duration_seconds"); got != 200 {
		t.Errorf("histogram count %v, want 200", got)
	}
	if got := sum(mfs, "hcproxy_reloads_total", "outcome", "ok"); got != 1 {
		t.Errorf("reloads ok %v, want 1", got)
	}
	if sum(mfs, "hcproxy_build_info") != 1 {
		t.Error("no build_info")
	}
	for _, b := range bs {
		if got := sum(mfs, "hcproxy_responses_total", "server", b.Addr); got < 20 {
			t.Errorf("server %s got %v responses of 200 (round robin)", b.Addr, got)
		}
	}
	// No server available: hcproxy's own 503, counted for the upstream (in its home slot).
	for _, b := range bs {
		b.SetFailing(true)
	}
	p.eventually("both down", 10*time.Second, func(d status.Document) bool {
		return len(d.Backends) == 2 && !d.Backends[0].Available && !d.Backends[1].Available
	})
	resp, err := http.Get("http://" + p.listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Fatalf("all down: %s", resp.Status)
	}
	if mfs, _ := p.scrapeMetrics(); sum(mfs, "hcproxy_no_server_responses_total", "upstream", "app") != 1 {
		t.Errorf("no_server responses of app %v, want 1", sum(mfs, "hcproxy_no_server_responses_total", "upstream", "app"))
	}
	if path, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(path, "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Log("promtool not installed: exposition not linted")
	}
}

// TestNoServerResponsesPerUpstream: on both engines, across 2 workers, every request to an
// upstream whose servers are all down is answered 503 and counted once under that upstream's
// name, summed over the workers through the table; another upstream that serves its requests
// counts none; the status page's JSON shows the same per upstream.
func TestNoServerResponsesPerUpstream(t *testing.T) {
	for _, engine := range []string{"fast", "std"} {
		t.Run(engine, func(t *testing.T) {
			good := startBackends(t, 1)[0]
			api := freePort(t)
			p := startProxyRaw(t, 2, fmt.Sprintf(`workers = 2
engine = %q
pid_file = "hcproxy.pid"
table = "hcproxy.table"
[status]
listen = "{{status}}"
[[server]]
listen = "{{listen}}"
upstream = "app"
[[server]]
listen = %q
upstream = "api"
[upstream.app]
servers = [%q, %q]
[upstream.app.check]
uri = "/health"
interval = "200ms"
timeout = "150ms"
fall = 1
[upstream.api]
servers = [%q]
[upstream.api.check]
uri = "/health"
interval = "200ms"
timeout = "150ms"
rise = 1
`, engine, api, freePort(t), freePort(t), good.Addr))
			p.eventually("app's servers down, api's up", 10*time.Second, func(d status.Document) bool {
				states := map[string]int{}
				for _, b := range d.Backends {
					states[b.Upstream+" "+b.State]++
				}
				return states["app down"] == 2 && states["api up"] == 1
			})
			mfs, _ := p.scrapeMetrics()
			workerBase := map[string]float64{}
			for _, m := range mfs["hcproxy_worker_requests_total"].GetMetric() {
				workerBase[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
			client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			get := func(addr string, i int) int {
				resp, err := client.Get(fmt.Sprintf("http://%s/r%d", addr, i))
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			const n = 40 // fresh connections: the listener spreads them over both workers
			got503 := 0
			for i := 0; i < n; i++ {
				if code := get(p.listen, i); code == 503 {
					got503++
				} else {
					t.Errorf("app request %d: %d, want 503", i, code)
				}
			}
			mfs, _ = p.scrapeMetrics()
			busy := 0
			for _, m := range mfs["hcproxy_worker_requests_total"].GetMetric() {
				if m.GetCounter().GetValue() > workerBase[m.GetLabel()[0].GetValue()] {
					busy++
				}
			}
			if busy != 2 {
				t.Errorf("%d workers answered app's %d requests, want both", busy, n)
			}
			for i := 0; i < 10; i++ {
				if code := get(api, i); code != 200 {
					t.Errorf("api request %d: %d, want 200", i, code)
				}
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				mfs, _ = p.scrapeMetrics()
				if sum(mfs, "hcproxy_responses_total", "upstream", "api") == 10 || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if v := sum(mfs, "hcproxy_no_server_responses_total", "upstream", "app"); v != float64(got503) || got503 != n {
				t.Errorf("no_server_responses_total{upstream=app} = %v, 503s received %d of %d", v, got503, n)
			}
			if v := sum(mfs, "hcproxy_no_server_responses_total", "upstream", "api"); v != 0 {
				t.Errorf("no_server_responses_total{upstream=api} = %v, want 0 (a series, at 0)", v)
			}
			if v := sum(mfs, "hcproxy_responses_total", "upstream", "app"); v != 0 {
				t.Errorf("app's responses_total = %v, want 0 (no server's response)", v)
			}
			if v := sum(mfs, "hcproxy_responses_total", "upstream", "api", "code", "2xx"); v != 10 {
				t.Errorf("api's 2xx responses = %v, want 10", v)
			}
			page, err := p.statusJSON()
			if err != nil {
				t.Fatal(err)
			}
			for what, doc := range map[string]status.Document{"status page JSON": page, "hcctl dump --json": p.dump()} {
				if len(doc.Upstreams) != 2 {
					t.Errorf("%s: upstreams %+v, want app and api", what, doc.Upstreams)
				}
				for _, u := range doc.Upstreams {
					if want := map[string]uint64{"app": uint64(got503)}[u.Name]; u.NoServer != want {
						t.Errorf("%s: upstream %s no_server %d, want %d", what, u.Name, u.NoServer, want)
					}
				}
			}
		})
	}
}

// TestListenerAndProcessMetrics: per listener, every connection accepted is counted once and
// the open gauge follows connections held and closed, on both engines; every live process
// (the master and each worker) has its process and Go figures, labelled by role and worker
// index, never by pid.
func TestListenerAndProcessMetrics(t *testing.T) {
	for _, engine := range []string{"fast", "std"} {
		t.Run(engine, func(t *testing.T) {
			bs := startBackends(t, 1)
			p := startProxy(t, proxyOpts{workers: 2, top: fmt.Sprintf("engine = %q", engine)}, bs)
			metric := func(name string, labels ...string) float64 {
				mfs, _ := p.scrapeMetrics()
				return sum(mfs, name, labels...)
			}
			base := max(metric("hcproxy_listener_connections_accepted_total", "listener", p.listen), 0)
			get := func(c *http.Client) {
				resp, err := c.Get("http://" + p.listen + "/")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			once := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
			for i := 0; i < 5; i++ {
				get(once)
			}
			var held []*http.Transport
			for i := 0; i < 3; i++ {
				tr := &http.Transport{}
				held = append(held, tr)
				get(&http.Client{Transport: tr}) // kept alive, idle, open
			}
			waitMetric := func(what string, want float64, name string, labels ...string) {
				t.Helper()
				deadline := time.Now().Add(5 * time.Second)
				for {
					got := metric(name, labels...)
					if got == want {
						return
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s: %s%v = %v, want %v", what, name, labels, got, want)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}
			waitMetric("8 connections", base+8, "hcproxy_listener_connections_accepted_total", "listener", p.listen)
			waitMetric("3 held", 3, "hcproxy_listener_connections_open", "listener", p.listen)
			for _, tr := range held {
				tr.CloseIdleConnections()
			}
			waitMetric("all closed", 0, "hcproxy_listener_connections_open", "listener", p.listen)

			mfs, text := p.scrapeMetrics()
			for _, name := range []string{"hcproxy_process_cpu_seconds_total", "hcproxy_process_resident_memory_bytes",
				"hcproxy_process_open_fds", "hcproxy_process_start_time_seconds"} {
				if n := series(mfs, name, "role", "master"); n != 1 {
					t.Errorf("%s: %d master series, want 1", name, n)
				}
				if n := series(mfs, name, "role", "worker"); n != 2 {
					t.Errorf("%s: %d worker series, want 2", name, n)
				}
			}
			if n := series(mfs, "hcproxy_go_goroutines", "role", "worker"); n != 2 {
				t.Errorf("go_goroutines: %d worker series, want 2", n)
			}
			if strings.Contains(text, "pid=") {
				t.Error("a series is labelled by pid")
			}
		})
	}
}

// series counts the family's series whose labels include want.
func series(mfs map[string]*dto.MetricFamily, name string, want ...string) int {
	n := 0
	if mf := mfs[name]; mf != nil {
	next:
		for _, m := range mf.Metric {
			for i := 0; i+1 < len(want); i += 2 {
				found := false
				for _, lp := range m.Label {
					found = found || lp.GetName() == want[i] && lp.GetValue() == want[i+1]
				}
				if !found {
					continue next
				}
			}
			n++
		}
	}
	return n
}
