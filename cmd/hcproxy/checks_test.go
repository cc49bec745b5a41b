package main

import (
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"hcproxy/internal/backend"
	"hcproxy/status"
)

// probeGaps returns the gaps between consecutive health checks a backend received after since.
func probeGaps(b *backend.Backend, since time.Time) []time.Duration {
	var gaps []time.Duration
	var last time.Time
	for _, at := range b.Probes() {
		if at.Before(since) {
			continue
		}
		if !last.IsZero() {
			gaps = append(gaps, at.Sub(last))
		}
		last = at
	}
	return gaps
}

func minMax(gaps []time.Duration) (time.Duration, time.Duration) {
	if len(gaps) == 0 {
		return 0, 0
	}
	s := append([]time.Duration(nil), gaps...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[0], s[len(s)-1]
}

// With 4 workers, each backend is checked by exactly one of them: the backend sees one probe
// per interval, never two close together, and the checks are spread over the workers.
func TestOneProbePerBackendPerInterval(t *testing.T) {
	bs := startBackends(t, 16)
	p := startProxy(t, proxyOpts{workers: 4, interval: "200ms"}, bs)
	p.eventually("every backend checked", 10*time.Second, func(d status.Document) bool {
		for _, b := range d.Backends {
			if b.Checks < 3 {
				return false
			}
		}
		return len(d.Backends) == 16
	})
	start := time.Now()
	time.Sleep(3 * time.Second)
	end := time.Now()
	for _, b := range bs {
		n := 0
		for _, at := range b.Probes() {
			if at.After(start) && at.Before(end) {
				n++
			}
		}
		// 3 s at 200 ms is 15 checks; a second checker would double it.
		if n < 12 || n > 17 {
			t.Errorf("backend %s got %d checks in 3s at a 200ms interval, want about 15", b.Addr, n)
		}
		if lo, _ := minMax(probeGaps(b, start)); lo < 100*time.Millisecond {
			t.Errorf("backend %s: two checks %v apart: checked twice in one interval", b.Addr, lo)
		}
	}
	d := p.dump()
	owners := map[int]int{}
	for _, b := range d.Backends {
		owners[b.OwnerPid]++
	}
	if owners[0] > 0 {
		t.Errorf("%d backends without an owner", owners[0])
	}
	if len(owners) < 3 {
		t.Errorf("checks not spread: owners %v", owners)
	}
	for pid, n := range owners {
		if n > 10 {
			t.Errorf("worker %d owns %d of 16 checks: not spread evenly (%v)", pid, n, owners)
		}
	}
}

// A backend whose checks fail goes down after fall checks, takes no traffic while down, and
// comes back after rise passing checks.
func TestFailingBackendGoesDownAndComesBack(t *testing.T) {
	bs := startBackends(t, 2)
	p := startProxy(t, proxyOpts{workers: 2, interval: "200ms", rise: 2, fall: 3}, bs)
	bad := bs[1]
	p.eventually("both up and checked", 10*time.Second, func(d status.Document) bool {
		for _, b := range d.Backends {
			if b.State != "up" || b.Checks < 2 {
				return false
			}
		}
		return true
	})
	bad.SetFailing(true)
	d := p.eventually("failing backend down", 10*time.Second, func(d status.Document) bool {
		b, _ := backendState(d, bad.Addr)
		return b.State == "down"
	})
	b, _ := backendState(d, bad.Addr)
	if b.LastResult != "bad_status" || b.LastStatus != 503 || b.Consecutive < 3 || b.SinceReason != "bad_status" {
		t.Errorf("down backend: %+v", b)
	}
	if !strings.Contains(p.log.String(), "server down") || !strings.Contains(p.log.String(), "after=3") {
		t.Errorf("no transition log line with after=3:\n%s", p.log.String())
	}
	// Traffic avoids it.
	before := bad.Hits()
	for i := 0; i < 20; i++ {
		resp, err := http.Get("http://" + p.listen + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "hello from b0") {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if bad.Hits() != before {
		t.Errorf("a down backend got %d requests", bad.Hits()-before)
	}
	bad.SetFailing(false)
	d = p.eventually("backend back up", 10*time.Second, func(d status.Document) bool {
		b, _ := backendState(d, bad.Addr)
		return b.State == "up"
	})
	if b, _ := backendState(d, bad.Addr); b.Consecutive < 2 || !strings.Contains(b.History, "---++") || b.Transitions != 2 {
		t.Errorf("up again: consecutive %d, transitions %d, history %q", b.Consecutive, b.Transitions, b.History)
	}
	if !strings.Contains(p.log.String(), "server up") || !strings.Contains(p.log.String(), "after=2") {
		t.Errorf("no 'server up ... after=2' log line:\n%s", p.log.String())
	}
	// And takes traffic again.
	deadline := time.Now().Add(5 * time.Second)
	for bad.Hits() == before && time.Now().Before(deadline) {
		resp, err := http.Get("http://" + p.listen + "/")
		if err == nil {
			resp.Body.Close()
		}
	}
	if bad.Hits() == before {
		t.Error("a backend that came back up gets no traffic")
	}
}

// When every server is down, the proxy answers 503 at once (all_down = "fail", the default).
func TestAllDownIs503(t *testing.T) {
	bs := startBackends(t, 1)
	p := startProxy(t, proxyOpts{workers: 1, interval: "200ms", fall: 1}, bs)
	bs[0].SetFailing(true)
	p.eventually("backend down", 10*time.Second, func(d status.Document) bool {
		b, _ := backendState(d, bs[0].Addr)
		return b.State == "down"
	})
	resp, err := http.Get("http://" + p.listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d with every server down, want 503", resp.StatusCode)
	}
}
