// Package docs holds the operator documents that are checked against the real proxy: the
// alerting rules (alerts.yml, with promtool's rule tests in alerts_test.yml) and the Grafana
// dashboard (grafana-dashboard.json). Its tests start a real hcproxy under a bounded load with
// failures, scrape its /metrics, check that every metric the rules and the dashboard use is
// exported, and fire every alert from the scraped series with `promtool test rules`.
package docs

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"hcproxy/internal/harness"
)

var bins harness.Binaries

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, func(b harness.Binaries) { bins = b }))
}

// promtool returns promtool's path, or skips the test saying how to get it.
func promtool(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (Debian: apt-get install prometheus): rules not tested")
	}
	return path
}

// TestAlertRules runs the hand-written rule tests.
func TestAlertRules(t *testing.T) {
	out, err := exec.Command(promtool(t), "test", "rules", "alerts_test.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules alerts_test.yml: %v\n%s", err, out)
	}
}

// firedByRealSeries are the alerts the failures of TestAlertsFireOnRealSeries must fire: all
// of alerts.yml but HcproxyMasterNotRunning and HcproxyWorkerHung (a running proxy cannot show
// them; alerts_test.yml fires them).
var firedByRealSeries = []string{
	"HcproxyChecksFailing", "HcproxyHigh5xxRatio", "HcproxyHighLatencyP99", "HcproxyNoServerResponses",
	"HcproxyReloadFailed", "HcproxyServerDown", "HcproxyUpstreamDegraded", "HcproxyUpstreamUnavailable",
	"HcproxyWorkerRestarts",
}

// TestAlertsFireOnRealSeries starts hcproxy with upstream app (a good server, one that answers
// 500, two that nobody listens on) and upstream gone (none listening), sends a bounded load
// (some requests slow), makes a reload fail and kills a worker, and scrapes /metrics before and
// after. Every metric name that alerts.yml and the dashboard use must be in the scrape; then
// the scraped series, each counter growing per minute by what it grew between the scrapes,
// are the input of a promtool rule test that expects exactly the alerts of firedByRealSeries.
func TestAlertsFireOnRealSeries(t *testing.T) {
	tool := promtool(t)
	p, f := startFailingProxy(t)
	before := f.scrape(t)
	f.load(t)
	p.WriteConfig("workers = [not toml\n")
	p.Signal(syscall.SIGHUP)
	f.waitFor(t, "a failed reload", func(m families) bool { return m.sum("hcproxy_reloads_total", "outcome", "failed") >= 1 })
	p.WriteConfig(f.config)
	pids := p.WorkerPids()
	if len(pids) == 0 {
		t.Fatal("no worker pid in the table")
	}
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	f.waitFor(t, "a worker restart", func(m families) bool { return m.sum("hcproxy_worker_restarts_total", "cause", "signal") >= 1 })
	p.WaitWorkers(2, 20*time.Second)
	after := f.scrape(t)

	// The 20 requests to gone (no server up) are its no-server 503s; app always had a server.
	for up, want := range map[string]float64{"gone": 20, "app": 0} {
		if got := after.sum("hcproxy_no_server_responses_total", "upstream", up) - before.sum("hcproxy_no_server_responses_total", "upstream", up); got != want {
			t.Errorf("no_server_responses_total{upstream=%q} grew by %v, want %v", up, got, want)
		}
	}
	rules := readFile(t, "alerts.yml")
	dash := dashboardExprs(t)
	for what, text := range map[string]string{"alerts.yml": rules, "grafana-dashboard.json": strings.Join(dash, "\n")} {
		for _, name := range metricNames(text) {
			if after.family(name) == nil {
				t.Errorf("%s uses %s, which /metrics does not export", what, name)
			}
		}
	}
	if path, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(path, "check", "metrics")
		cmd.Stdin = strings.NewReader(after.text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	}
	if t.Failed() {
		return
	}

	dir := t.TempDir()
	abs, _ := filepath.Abs("alerts.yml")
	test := ruleTest(abs, seriesFrom(before, after, metricNames(rules)), firedByRealSeries)
	file := filepath.Join(dir, "real_test.yml")
	if err := os.WriteFile(file, []byte(test), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(tool, "test", "rules", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules on the scraped series: %v\n%s\n--- test file:\n%s", err, out, test)
	}
}

// TestDashboard checks the dashboard's shape: valid JSON, the panels an operator looks at
// first, each with a query (the metric names are checked against a real scrape above).
func TestDashboard(t *testing.T) {
	var d struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal([]byte(readFile(t, "grafana-dashboard.json")), &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	var titles []string
	for _, p := range d.Panels {
		titles = append(titles, p.Title)
		if len(p.Targets) == 0 || p.Targets[0].Expr == "" {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
	for _, want := range []string{"Request rate by status class", "p99 latency by upstream", "Servers available per upstream",
		"Check failures by reason", "Reloads", "Worker restarts"} {
		if !slices.Contains(titles, want) {
			t.Errorf("no panel %q (panels: %q)", want, titles)
		}
	}
}

// fixture is the proxy of TestAlertsFireOnRealSeries and its addresses.
type fixture struct {
	p                 *harness.Proxy
	config            string
	status, app, gone string
}

func startFailingProxy(t *testing.T) (*harness.Proxy, *fixture) {
	t.Helper()
	ok := backend(t, 200)
	bad := backend(t, 500)
	f := &fixture{status: harness.FreeAddr(t), app: harness.FreeAddr(t), gone: harness.FreeAddr(t)}
	check := `
uri = "/health"
interval = "200ms"
timeout = "150ms"
rise = 1
fall = 1
`
	f.config = fmt.Sprintf(`workers = 2
pid_file = "hcproxy.pid"
table = "hcproxy.table"
shutdown_timeout = "5s"
[status]
listen = %q
[[server]]
listen = %q
upstream = "app"
[[server]]
listen = %q
upstream = "gone"
[upstream.app]
servers = [%q, %q, %q, %q]
[upstream.app.check]%s
[upstream.gone]
servers = [%q]
[upstream.gone.check]%s`, f.status, f.app, f.gone, ok, bad, harness.FreeAddr(t), harness.FreeAddr(t), check, harness.FreeAddr(t), check)
	p := harness.NewProxy(t, bins)
	f.p = p
	p.WriteConfig(f.config)
	p.Start()
	t.Cleanup(func() { p.Stop(10 * time.Second) })
	p.WaitWorkers(2, 20*time.Second)
	f.waitFor(t, "app: 2 of 4 available, gone: none", func(m families) bool {
		return m.sum("hcproxy_server_available", "upstream", "app") == 2 && m.sum("hcproxy_server_up", "upstream", "app") == 2 &&
			m.sum("hcproxy_server_up", "upstream", "gone") == 0 && m.sum("hcproxy_checks_total", "upstream", "gone") > 0
	})
	return p, f
}

// backend starts a server on loopback that answers checks (/health) "ok", /slow after 1.2s,
// and everything with status.
func backend(t *testing.T, status int) string {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			io.WriteString(w, "ok")
			return
		case "/slow":
			time.Sleep(1200 * time.Millisecond)
		}
		w.WriteHeader(status)
		io.WriteString(w, "body")
	}), ReadHeaderTimeout: 5 * time.Second}
	ln := listen(t)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// load sends 100 requests to app (10 of them /slow, at once) and 20 to gone, 10 at a time.
func (f *fixture) load(t *testing.T) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	errs := make(chan error, 120)
	client := &http.Client{Timeout: 10 * time.Second}
	for i := 0; i < 120; i++ {
		url := fmt.Sprintf("http://%s/r%d", f.app, i)
		switch {
		case i >= 100:
			url = fmt.Sprintf("http://%s/r%d", f.gone, i)
		case i%10 == 0:
			url = fmt.Sprintf("http://%s/slow", f.app)
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			resp, err := client.Get(url)
			if err != nil {
				errs <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// families is one scrape of /metrics.
type families struct {
	mfs  map[string]*dto.MetricFamily
	text string
}

func (f *fixture) scrape(t *testing.T) families {
	t.Helper()
	m, err := f.scrapeErr()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func (f *fixture) scrapeErr() (families, error) {
	resp, err := http.Get("http://" + f.status + "/metrics")
	if err != nil {
		return families{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return families{}, err
	}
	if resp.StatusCode != 200 {
		return families{}, fmt.Errorf("/metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(strings.NewReader(string(b)))
	return families{mfs, string(b)}, err
}

// waitFor scrapes until cond holds, for up to 20s.
func (f *fixture) waitFor(t *testing.T, what string, cond func(families) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		m, err := f.scrapeErr()
		if err == nil && cond(m) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s (err %v); last scrape:\n%s", what, err, m.text)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// family returns the family of a series name (name_bucket, _sum and _count are a histogram's).
func (m families) family(name string) *dto.MetricFamily {
	if mf := m.mfs[name]; mf != nil {
		return mf
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if mf := m.mfs[strings.TrimSuffix(name, suffix)]; mf != nil && mf.GetType() == dto.MetricType_HISTOGRAM {
			return mf
		}
	}
	return nil
}

// sum adds up the values of name's series whose labels include want (pairs).
func (m families) sum(name string, want ...string) float64 {
	var total float64
	if mf := m.mfs[name]; mf != nil {
		for _, s := range mf.Metric {
			if hasLabels(s, want) {
				total += s.GetCounter().GetValue() + s.GetGauge().GetValue()
			}
		}
	}
	return total
}

func hasLabels(s *dto.Metric, want []string) bool {
	for i := 0; i+1 < len(want); i += 2 {
		found := false
		for _, lp := range s.Label {
			found = found || lp.GetName() == want[i] && lp.GetValue() == want[i+1]
		}
		if !found {
			return false
		}
	}
	return true
}

var metricName = regexp.MustCompile(`\bhcproxy_[a-z0-9_]+`)

// metricNames returns the hcproxy metric names text mentions, sorted, each once.
func metricNames(text string) []string {
	names := metricName.FindAllString(text, -1)
	sort.Strings(names)
	return slices.Compact(names)
}

// dashboardExprs returns every query of the dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(readFile(t, "grafana-dashboard.json")), &v); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if s, ok := x.(string); ok && k == "expr" {
					exprs = append(exprs, s)
				}
				walk(x)
			}
		case []any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(v)
	return exprs
}

// sample is one series of a rule test's input: its name and labels, and its values.
type sample struct{ series, values string }

// seriesFrom turns the scraped series of the named families into promtool input series: a
// gauge holds its value after; a counter (a histogram's buckets, sum and count too) starts at
// its value before and grows each minute by what it grew between the scrapes.
func seriesFrom(before, after families, names []string) []sample {
	var out []sample
	counter := func(name string, labels []*dto.LabelPair, extra string, a, b float64) {
		out = append(out, sample{seriesName(name, labels, extra), fmt.Sprintf("%s+%sx40", num(a), num(max(b-a, 0)))})
	}
	seen := map[string]bool{}
	for _, n := range names {
		mf := after.family(n)
		if mf == nil || seen[mf.GetName()] {
			continue
		}
		seen[mf.GetName()] = true
		for _, s := range mf.Metric {
			prev := find(before.mfs[mf.GetName()], s)
			switch mf.GetType() {
			case dto.MetricType_GAUGE:
				out = append(out, sample{seriesName(mf.GetName(), s.Label, ""), num(s.GetGauge().GetValue()) + "x40"})
			case dto.MetricType_COUNTER:
				counter(mf.GetName(), s.Label, "", prev.GetCounter().GetValue(), s.GetCounter().GetValue())
			case dto.MetricType_HISTOGRAM:
				h, ph := s.GetHistogram(), prev.GetHistogram()
				for i, b := range h.Bucket {
					var pc uint64
					if ph != nil && i < len(ph.Bucket) {
						pc = ph.Bucket[i].GetCumulativeCount()
					}
					counter(mf.GetName()+"_bucket", s.Label, "le="+strconv.Quote(num(b.GetUpperBound())), float64(pc), float64(b.GetCumulativeCount()))
				}
				counter(mf.GetName()+"_bucket", s.Label, `le="+Inf"`, float64(ph.GetSampleCount()), float64(h.GetSampleCount()))
				counter(mf.GetName()+"_sum", s.Label, "", ph.GetSampleSum(), h.GetSampleSum())
				counter(mf.GetName()+"_count", s.Label, "", float64(ph.GetSampleCount()), float64(h.GetSampleCount()))
			}
		}
	}
	return out
}

// find returns the series of mf with the labels of s (nil if none: it counts from 0).
func find(mf *dto.MetricFamily, s *dto.Metric) *dto.Metric {
	if mf == nil {
		return nil
	}
	for _, m := range mf.Metric {
		if seriesName("", m.Label, "") == seriesName("", s.Label, "") {
			return m
		}
	}
	return nil
}

func seriesName(name string, labels []*dto.LabelPair, extra string) string {
	var ls []string
	for _, lp := range labels {
		ls = append(ls, lp.GetName()+"="+strconv.Quote(lp.GetValue()))
	}
	if extra != "" {
		ls = append(ls, extra)
	}
	return name + "{" + strings.Join(ls, ",") + "}"
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// ruleTest is a promtool rule test of rules on input that expects exactly the alerts fired
// (firing, by name) 25 minutes in.
func ruleTest(rules string, input []sample, fired []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rule_files: [%q]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n", rules)
	for _, s := range input {
		fmt.Fprintf(&b, "      - series: %q\n        values: %q\n", s.series, s.values)
	}
	b.WriteString("    promql_expr_test:\n      - expr: group by (alertname) (ALERTS{alertstate=\"firing\"})\n        eval_time: 25m\n        exp_samples:\n")
	for _, a := range fired {
		fmt.Fprintf(&b, "          - labels: '{alertname=%q}'\n            value: 1\n", a)
	}
	return b.String()
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}
