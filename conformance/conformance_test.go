package conformance

import (
	"errors"
	"flag"
	"regexp"
	"sync"
	"testing"
	"time"
)

var (
	casesFlag  = flag.String("cases", "", "run only the corpus cases whose names match this regular expression")
	updateFlag = flag.Bool("update", false, "rewrite the generated section of docs/conformance.md from this run")
)

// lanes is how many cases run at once, each in its own lane: a port of every proxy and a
// recorder behind each.
const lanes = 32

// Settling: after the clients are done, a lane waits until its recorders have been idle this
// long and at least this long has passed since the clients finished (a smuggled request may
// trail its carrier; a proxy may flush or abandon a request only when its client goes), but no
// longer than settleMax.
const (
	settleIdle = 100 * time.Millisecond
	settleMax  = time.Second
)

// outcome is what one proxy did with one case.
type outcome struct {
	ans     answer
	reqs    []upstreamRequest // requests begun during this case
	late    []upstreamRequest // requests of earlier cases still arriving during this one
	garbage []garbage
}

// result is one case run through every proxy.
type result struct {
	c   testCase
	ref []message // the client's bytes as the reference reader frames them
	out map[string]*outcome
}

// TestConformance sends every corpus case on a fresh connection to hcproxy's two engines and
// to nginx and HAProxy, each in front of recorders, and judges hcproxy against the oracles and
// against the framing of what it accepted (judge_test.go). It needs nginx and HAProxy installed
// and skips, saying so, when either is missing.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance: skipped in -short mode (it starts four proxies and sends the whole corpus)")
	}
	nginxBin, err1 := lookOracle("nginx")
	haproxyBin, err2 := lookOracle("haproxy")
	if err := errors.Join(err1, err2); err != nil {
		t.Skipf("conformance: nginx and HAProxy are this test's oracles and are not both installed (%v); install them (Debian: apt-get install nginx haproxy) to run it", err)
	}
	bin, err := hcproxyBinary(t)
	if err != nil {
		t.Fatal(err)
	}
	cases, allow := selectCases(t)
	book := newSerialBook()
	procs, recs := startProxies(t, book, map[string]string{fastName: bin, stdName: bin, nginxName: nginxBin, haproxyName: haproxyBin})

	began := time.Now()
	results := runCases(cases, procs, recs)
	t.Logf("%d cases through %d proxies in %d lanes: %v", len(cases), len(proxyNames), lanes, time.Since(began).Round(time.Millisecond))

	verdicts := judgeAll(results, book, allow)
	for i, r := range results {
		if !anyFailure(verdicts[i]) {
			continue // a subtest only for a case with something to say, so that -v stays short
		}
		t.Run(r.c.Name, func(t *testing.T) {
			for _, v := range verdicts[i] {
				for _, f := range v.failures {
					if v.engine == nginxName || v.engine == haproxyName {
						t.Logf("%s (oracle, not a failure): %s", v.engine, f)
						continue
					}
					t.Errorf("%s engine: %s\n%s", v.engine, f, r.context())
				}
			}
		})
	}
	for _, unused := range allow.unused(verdicts, results) {
		t.Logf("allow.txt: %s is not needed in this run (the engine does not forward it, or an oracle does)", unused)
	}
	rep := buildReport(results, verdicts)
	rep.versions = []string{versionOf(bin, "-v"), versionOf(nginxBin, "-v"), versionOf(haproxyBin, "-v")}
	t.Log("\n" + rep.text())
	if *updateFlag {
		if err := rep.updateDoc("../docs/conformance.md"); err != nil {
			t.Error(err)
		}
	}
}

func anyFailure(vs []verdict) bool {
	for _, v := range vs {
		if len(v.failures) > 0 {
			return true
		}
	}
	return false
}

// selectCases loads the corpus (only the cases -cases matches) and the allow list.
func selectCases(t *testing.T) ([]testCase, allowList) {
	t.Helper()
	cases, err := loadCorpus("testdata")
	if err != nil {
		t.Fatal(err)
	}
	allow, err := loadAllow("testdata/" + allowFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := allow.check(cases); err != nil {
		t.Error(err)
	}
	if *casesFlag == "" {
		return cases, allow
	}
	re, err := regexp.Compile(*casesFlag)
	if err != nil {
		t.Fatalf("-cases: %v", err)
	}
	var some []testCase
	for _, c := range cases {
		if re.MatchString(c.Name) {
			some = append(some, c)
		}
	}
	return some, allow
}

// startProxies starts the health port, a recorder per proxy and lane, and the four proxies
// (bins maps each to its binary), and waits until every lane of each answers. Everything is
// stopped at cleanup, the proxies first.
func startProxies(t *testing.T, book *serialBook, bins map[string]string) (map[string]*proc, map[string][]*recorder) {
	t.Helper()
	health, err := startHealthPort()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(health.close)
	recs := map[string][]*recorder{}
	for _, name := range proxyNames {
		for lane := 0; lane < lanes; lane++ {
			r, err := startRecorder(name, lane, book)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(r.close)
			recs[name] = append(recs[name], r)
		}
	}
	launch := func(name string, listen []string) *proc {
		switch name {
		case nginxName:
			return startNginx(t, bins[name], listen, recs[name])
		case haproxyName:
			return startHaproxy(t, bins[name], listen, recs[name])
		}
		return startHcproxy(t, bins[name], name, listen, recs[name], health.port())
	}
	ports := reservePorts(t, lanes*len(proxyNames))
	procs := map[string]*proc{}
	for i, name := range proxyNames {
		procs[name] = launch(name, ports[i*lanes:(i+1)*lanes])
	}
	var wg sync.WaitGroup
	errs := make([]error, len(proxyNames))
	for i, name := range proxyNames {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = waitReady(procs[name], 20*time.Second)
		}()
	}
	wg.Wait()
	// A proxy that exited at once most likely lost a port to another process between
	// reservePorts and its bind: it gets one more start on fresh ports.
	for i, name := range proxyNames {
		if errs[i] != nil && procs[name].exited() {
			t.Logf("%s exited at start; starting it again on other ports: %v", name, errs[i])
			procs[name] = launch(name, reservePorts(t, lanes))
			errs[i] = waitReady(procs[name], 20*time.Second)
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for _, name := range proxyNames {
		for _, r := range recs[name] {
			r.finish() // drop the warm-up requests
		}
	}
	return procs, recs
}

// runCases runs every case, lanes at a time, and returns the results in corpus order.
func runCases(cases []testCase, procs map[string]*proc, recs map[string][]*recorder) []result {
	results := make([]result, len(cases))
	next := make(chan int)
	var wg sync.WaitGroup
	for lane := 0; lane < lanes; lane++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = runCase(lane, cases[i], procs, recs)
			}
		}()
	}
	for i := range cases {
		next <- i
	}
	close(next)
	wg.Wait()
	return results
}

// runCase sends one case through every proxy's port of a lane at once, waits until the lane's
// recorders settle, and collects what each proxy's recorder received.
func runCase(lane int, c testCase, procs map[string]*proc, recs map[string][]*recorder) result {
	r := result{c: c, ref: readMessages(c.Raw), out: map[string]*outcome{}}
	want := max(1, len(r.ref))
	heads := make([]bool, len(r.ref))
	for i, m := range r.ref {
		heads[i] = m.method == "HEAD"
	}
	for _, name := range proxyNames {
		recs[name][lane].begin(c.Name)
		r.out[name] = &outcome{}
	}
	var wg sync.WaitGroup
	for _, name := range proxyNames {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.out[name].ans = exchange(procs[name].listen[lane], c.Raw, want, heads)
		}()
	}
	wg.Wait()
	doneAt := time.Now()
	end := doneAt.Add(settleMax)
	for time.Now().Before(end) {
		idle := time.Since(doneAt) >= settleIdle
		for _, name := range proxyNames {
			if recs[name][lane].idleFor() < settleIdle {
				idle = false
			}
		}
		if idle {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, name := range proxyNames {
		o := r.out[name]
		reqs, junk := recs[name][lane].finish()
		for _, q := range reqs {
			if q.began == c.Name {
				o.reqs = append(o.reqs, q)
			} else {
				o.late = append(o.late, q)
			}
		}
		o.garbage = junk
	}
	return r
}
