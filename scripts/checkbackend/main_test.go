package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// fakeClock is the recorder's clock seam: the test moves it.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// probeAt records a probe of server i at offset d from the clock's start.
func probeAt(r *recorder, c *fakeClock, start time.Time, i int, d time.Duration) {
	c.t = start.Add(d)
	r.Probe(i)
}

func TestRecorderMeasuresGapsFromTheProbeBeforeTheWindow(t *testing.T) {
	start := time.Unix(1000, 0)
	c := &fakeClock{start}
	r := newRecorder(2, c.now)
	probeAt(r, c, start, 0, 0)
	probeAt(r, c, start, 0, time.Second)
	c.t = start.Add(1500 * time.Millisecond)
	r.Reset()
	// In the window: server 0 at 2.05 s (gap 1.05 s from the probe before the reset) and 3 s
	// (gap 0.95 s); server 1 at 2.5 s, its first probe ever (no gap).
	probeAt(r, c, start, 0, 2050*time.Millisecond)
	probeAt(r, c, start, 1, 2500*time.Millisecond)
	probeAt(r, c, start, 0, 3000*time.Millisecond)
	c.t = start.Add(3500 * time.Millisecond)
	st := r.Snapshot()
	if st.Probes != 3 || st.Gaps != 2 || st.WindowNS != int64(2*time.Second) {
		t.Fatalf("probes %d gaps %d window %v, want 3, 2, 2s", st.Probes, st.Gaps, time.Duration(st.WindowNS))
	}
	if st.MinGapNS != int64(950*time.Millisecond) || st.MaxGapNS != int64(1050*time.Millisecond) {
		t.Fatalf("gaps %v..%v, want 950ms..1.05s", time.Duration(st.MinGapNS), time.Duration(st.MaxGapNS))
	}
	if want := [][2]int64{{1, 1}, {2, 1}}; fmt.Sprint(st.PerServer) != fmt.Sprint(want) {
		t.Fatalf("per server %v, want %v", st.PerServer, want)
	}
	s, err := Summarize(st, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Both gaps are 50 ms off the interval (to within half a 100 µs bucket).
	if d := s.LagP50 - 50*time.Millisecond; d < -gapBucket || d > gapBucket || s.LagMax != 50*time.Millisecond {
		t.Fatalf("lag p50 %v max %v, want 50ms", s.LagP50, s.LagMax)
	}
	if s.GapMean != time.Second {
		t.Fatalf("mean gap %v, want 1s", s.GapMean)
	}
	if s.PerSecond != 1.5 || s.Schedule != 2 || s.Kept != 0.75 || s.Unprobed != 0 {
		t.Fatalf("per second %v schedule %v kept %v unprobed %d, want 1.5 2 0.75 0", s.PerSecond, s.Schedule, s.Kept, s.Unprobed)
	}
	srv := r.Servers()
	if srv[0].Probes != 2 || srv[0].FirstNS != int64(550*time.Millisecond) || srv[0].LastNS != int64(1500*time.Millisecond) ||
		srv[0].MeanGapS < 0.999 || srv[0].MeanGapS > 1.001 || srv[0].StdGapS < 0.049 || srv[0].StdGapS > 0.051 {
		t.Fatalf("server 0 %+v, want 2 probes at 550ms and 1.5s, gaps 1s ± 50ms", srv[0])
	}
	if srv[1].Probes != 1 || srv[1].MeanGapS != 0 {
		t.Fatalf("server 1 %+v, want 1 probe and no gap", srv[1])
	}
}

func TestSummaryCountsSkippedDoubledAndUnprobed(t *testing.T) {
	start := time.Unix(1000, 0)
	c := &fakeClock{start}
	r := newRecorder(3, c.now)
	// Server 0 on time for 100 probes; server 1 skips one interval (a 2 s gap) and is probed
	// twice 1 ms apart once; server 2 never.
	for k := range 100 {
		probeAt(r, c, start, 0, time.Duration(k)*time.Second)
	}
	for _, at := range []time.Duration{0, time.Second, 3 * time.Second, 3*time.Second + time.Millisecond, 4 * time.Second} {
		probeAt(r, c, start, 1, at)
	}
	c.t = start.Add(100 * time.Second)
	s, err := Summarize(r.Snapshot(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// 103 gaps: 99 + 1 exact, then 999 ms (lag 1 ms), 1 ms (lag 999 ms) and 2 s (lag 1 s): the
	// 99th percentile is the 101st smallest lag, 1 ms.
	if s.LagP50 > gapBucket || s.LagP99 < time.Millisecond-gapBucket || s.LagP99 > time.Millisecond+gapBucket || s.LagMax != time.Second {
		t.Fatalf("lag p50 %v p99 %v max %v, want ~0, ~1ms, 1s", s.LagP50, s.LagP99, s.LagMax)
	}
	if s.GapMin != time.Millisecond || s.GapMax != 2*time.Second || s.Unprobed != 1 || s.PerServerMin != 0 || s.PerServerMax != 100 {
		t.Fatalf("summary %s", s)
	}
	for _, f := range []string{"unprobed=1", "lag_max_ms=1000.0", "gap_min_ms=1.0", "kept=0.350"} {
		if !strings.Contains(s.String(), f) {
			t.Errorf("summary %q lacks %q", s, f)
		}
	}
}

func TestSummaryCountsGapsPastTheHistogramAtTheLongest(t *testing.T) {
	start := time.Unix(1000, 0)
	c := &fakeClock{start}
	r := newRecorder(1, c.now)
	probeAt(r, c, start, 0, 0)
	probeAt(r, c, start, 0, 30*time.Second)
	st := r.Snapshot()
	if st.Overflow != 1 || st.Gaps != 1 || len(st.Hist) != 0 {
		t.Fatalf("overflow %d gaps %d hist %v, want the one gap in overflow", st.Overflow, st.Gaps, st.Hist)
	}
	s, err := Summarize(st, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if s.LagP50 != 29*time.Second || s.LagP99 != 29*time.Second {
		t.Fatalf("lag %v %v, want 29s", s.LagP50, s.LagP99)
	}
}

func TestMergeAddsProcesses(t *testing.T) {
	a := Stats{Processes: 1, Servers: 2, WindowNS: 10, Probes: 3, Gaps: 2, GapSumS: 1.5, MinGapNS: -1, MaxGapNS: 5, BucketNS: 100,
		Hist: [][2]int64{{1, 1}, {3, 1}}, PerServer: [][2]int64{{1, 1}, {2, 1}}}
	b := Stats{Processes: 1, Servers: 1, WindowNS: 12, Probes: 2, Gaps: 1, GapSumS: 0.5, MinGapNS: 4, MaxGapNS: 4, BucketNS: 100,
		Hist: [][2]int64{{3, 1}}, PerServer: [][2]int64{{2, 1}}, Conns: 2}
	m, err := Merge(Stats{}, a)
	if err != nil {
		t.Fatal(err)
	}
	if m, err = Merge(m, b); err != nil {
		t.Fatal(err)
	}
	want := "{2 3 12 5 3 2 0 2 4 5 100 [[1 1] [3 2]] 0 [[1 1] [2 2]]}"
	if got := fmt.Sprint(m); got != want {
		t.Fatalf("merged %s, want %s", got, want)
	}
	if _, err := Merge(m, Stats{Processes: 1, BucketNS: 50}); err == nil {
		t.Fatal("merged histograms of different bucket widths")
	}
}

func TestSummarizeRefusesNoWindow(t *testing.T) {
	if _, err := Summarize(Stats{}, time.Second); err == nil {
		t.Fatal("summarized an empty window")
	}
	if _, err := Summarize(Stats{Servers: 1, WindowNS: 1}, 0); err == nil {
		t.Fatal("summarized against a zero interval")
	}
}

func TestLayoutSpreadsServersOverAddresses(t *testing.T) {
	l := Layout{Port: 23000, PortsPerIP: 100}
	for i, want := range map[int]string{0: "127.0.1.1:23000", 99: "127.0.1.1:23099", 100: "127.0.1.2:23000",
		24999: "127.0.1.250:23099", 25000: "127.0.2.1:23000", 99999: "127.0.4.250:23099"} {
		if got := l.Addr(i).String(); got != want {
			t.Errorf("server %d at %s, want %s", i, got, want)
		}
	}
	for _, bad := range []struct {
		l        Layout
		first, n int
	}{{Layout{0, 1}, 0, 1}, {Layout{65535, 2}, 0, 1}, {l, -1, 1}, {l, 0, 0}, {l, 0, l.maxServers() + 1}} {
		if err := bad.l.validate(bad.first, bad.n); err == nil {
			t.Errorf("layout %+v first %d n %d accepted", bad.l, bad.first, bad.n)
		}
	}
}

func TestRunRefusesBadArguments(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{nil, {"bogus"}, {"serve", "-n", "x"}, {"summary"}, {"reset"}} {
		var out, errb bytes.Buffer
		if err := run(ctx, args, &out, &errb); !errors.Is(err, errUsage) || !strings.Contains(errb.String(), "usage") {
			t.Errorf("run %q: %v (stderr %q), want a usage error", args, err, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if err := run(ctx, []string{"serve", "-n", "0"}, &out, &errb); err == nil || !strings.HasPrefix(err.Error(), "first, n:") {
		t.Errorf("serve -n 0: %v, want a first, n: error", err)
	}
	if err := run(ctx, []string{"addrs", "-first", "99", "-n", "2", "-ports-per-ip", "100"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if out.String() != "127.0.1.1:23099\n127.0.1.2:23000\n" {
		t.Errorf("addrs: %q", out.String())
	}
}

// startTestBackend starts a backend of n servers, 2 to an address, on a port free on 127.0.1.1
// and 127.0.1.2 (tried a few times: another process may take it between the check and the bind).
func startTestBackend(t *testing.T, n int) (*backend, Layout) {
	t.Helper()
	var lastErr error
	for range 5 {
		ln, err := net.Listen("tcp", "127.0.1.1:0")
		if err != nil {
			t.Skipf("no 127.0.1.1 on this host: %v", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port == 1 {
			continue
		}
		l := Layout{Port: port - 1, PortsPerIP: 2}
		b, err := startBackend(l, 0, n, "127.0.0.1:0", io.Discard)
		if err == nil {
			t.Cleanup(b.Close)
			return b, l
		}
		lastErr = err
	}
	t.Fatalf("no free ports: %v", lastErr)
	return nil, Layout{}
}

func TestBackendRecordsProbesOverKeepAliveAndClose(t *testing.T) {
	b, l := startTestBackend(t, 3)
	ctx := context.Background()
	if err := resetAll(ctx, []string{b.ctlAddr}); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer client.CloseIdleConnections()
	get := func(i int, path string, close bool) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, "http://"+l.Addr(i).String()+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Close = close
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && string(body) != "ok\n" {
			t.Fatalf("body %q", body)
		}
		return resp.StatusCode
	}
	// Server 0: two probes on one kept-alive connection; server 2: a probe that closes;
	// server 1: no probe, one other request.
	for _, c := range []struct {
		i     int
		path  string
		close bool
		want  int
	}{{0, "/health", false, 200}, {0, "/health", false, 200}, {2, "/health", true, 200}, {1, "/", true, 404}} {
		if got := get(c.i, c.path, c.close); got != c.want {
			t.Fatalf("server %d %s: status %d, want %d", c.i, c.path, got, c.want)
		}
	}
	s, err := summarizeAll(ctx, []string{b.ctlAddr}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if s.Servers != 3 || s.Probes != 3 || s.Other != 1 || s.Unprobed != 1 || s.PerServerMax != 2 || s.GapMax <= 0 {
		t.Fatalf("summary %s", s)
	}
	// 3 connections for 3 probes and a 404: the first two probes shared one.
	if s.ConnsPerProbe != 1 {
		t.Fatalf("conns per probe %v, want 1 (3 connections: one kept alive for two probes, two closed)", s.ConnsPerProbe)
	}
	if err := resetAll(ctx, []string{b.ctlAddr}); err != nil {
		t.Fatal(err)
	}
	if s, err = summarizeAll(ctx, []string{b.ctlAddr}, time.Second); err != nil || s.Probes != 0 || s.Unprobed != 3 {
		t.Fatalf("after reset: %s, %v", s, err)
	}
}

func TestServeWritesItsControlAddressAndStopsOnCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.1.1:0")
	if err != nil {
		t.Skipf("no 127.0.1.1 on this host: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctlFile := t.TempDir() + "/ctl"
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-n", "1", "-port", fmt.Sprint(port), "-ctl-file", ctlFile}, &out, io.Discard)
	}()
	deadline := time.Now().Add(10 * time.Second)
	var ctl []byte
	for len(ctl) == 0 {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no control address after 10s: %v", <-done)
		}
		ctl = readFileOrNil(ctlFile)
		time.Sleep(10 * time.Millisecond)
	}
	if err := resetAll(context.Background(), []string{strings.TrimSpace(string(ctl))}); err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop within 10s of its context")
	}
	if !strings.Contains(out.String(), "servers=1 ") || !strings.Contains(out.String(), "probes=0 ") {
		t.Fatalf("exit summary %q", out.String())
	}
}

// readFileOrNil reads path, or returns nil if it cannot (not written yet).
func readFileOrNil(path string) []byte {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	return b
}
