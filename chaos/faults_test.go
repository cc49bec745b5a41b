//go:build chaos

package chaos

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"hcproxy/internal/faults"
	"hcproxy/internal/harness"
	"hcproxy/internal/load"
)

// Backend faults: one upstream per faulty backend, each with its own proxy listener, with
// connect_timeout and read_timeout 1s and a check timeout of 800ms. fall is 100 so the proxy
// keeps sending traffic to the faulty server for the whole run, and max_fails = 0 turns passive
// ejection off so every request meets the fault. Promise: every client request
// is answered (a response header, or the connection closed) within read_timeout + 1s, and the
// health check classifies each fault with the right reason.
func TestBackendFaults(t *testing.T) {
	const (
		readTimeout = time.Second
		runFor      = 6 * time.Second
		clients     = 3
	)
	cases := []struct {
		kind  faults.Kind
		delay time.Duration
		want  []string // acceptable last_result values
	}{
		{faults.Refused, 0, []string{"connect_refused"}},
		{faults.BlackHole, 0, []string{"timeout"}},
		// SYNs to a full accept queue are dropped (the dial times out), or the handshake
		// completes and the request is never read (the response times out).
		{faults.NoAccept, 0, []string{"connect_timeout", "timeout"}},
		{faults.Slow, 600 * time.Millisecond, []string{"ok"}},
		{faults.Reset, 0, []string{"early_close"}},
		{faults.Endless, 0, []string{"too_large"}},
		{faults.Garbage, 0, []string{"bad_response"}},
	}
	var ups []upstreamConf
	fb := map[faults.Kind]*faults.Backend{}
	for _, c := range cases {
		b, err := faults.Start(c.kind, c.delay)
		if err != nil {
			t.Fatalf("%s: %v", c.kind, err)
		}
		t.Cleanup(func() { b.Close() })
		fb[c.kind] = b
		ups = append(ups, upstreamConf{
			name: string(c.kind), listen: harness.FreeAddr(t), servers: []string{b.Addr},
			connect: "1s", read: "1s", interval: "1s", timeout: "800ms", rise: 1, fall: 100,
			ukeys: "max_fails = 0", // no passive ejection: every request meets the fault
		})
	}
	p := newProxy(t, config{workers: 2, status: harness.FreeAddr(t), upstreams: ups})
	p.startReady()
	p.waitChecked(2, 15*time.Second)

	type stats struct {
		mu       sync.Mutex
		res      load.Result
		lat      []time.Duration
		statuses map[int]int
	}
	all := map[faults.Kind]*stats{}
	var wg sync.WaitGroup
	deadline := time.Now().Add(runFor)
	for i, c := range cases {
		st := &stats{res: load.Result{Errors: map[string]int64{}}, statuses: map[int]int{}}
		all[c.kind] = st
		addr := ups[i].listen
		for j := 0; j < clients; j++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					code, kind, d := answer(addr, readTimeout+3*time.Second)
					st.mu.Lock()
					st.lat = append(st.lat, d)
					if kind != "" {
						st.res.Errors[kind]++
					} else {
						st.res.Requests++
						st.statuses[code]++
						if code < 200 || code > 299 {
							st.res.Non2xx++
						}
					}
					st.mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()

	// The checks' verdicts, once every server had a few checks during the run.
	d := p.Dump()
	for _, c := range cases {
		st := all[c.kind]
		sort.Slice(st.lat, func(i, j int) bool { return st.lat[i] < st.lat[j] })
		worst := st.lat[len(st.lat)-1]
		st.res.P99 = st.lat[len(st.lat)*99/100]
		b, _ := harness.BackendState(d, fb[c.kind].Addr)
		var codes []string
		for code, n := range st.statuses {
			codes = append(codes, fmt.Sprintf("%d:%d", code, n))
		}
		sort.Strings(codes)
		result("faults/"+string(c.kind), st.res, "n/a",
			fmt.Sprintf("max=%v statuses=%s check=%s want=%s history=%s detail=%q",
				worst.Round(time.Millisecond), strings.Join(codes, ","), b.LastResult, strings.Join(c.want, "|"), lastN(b.History, 8), b.LastDetail))
		if worst > readTimeout+time.Second {
			t.Errorf("%s: a client waited %v for an answer (limit %v)", c.kind, worst, readTimeout+time.Second)
		}
		if st.res.Errors["hang"] > 0 {
			t.Errorf("%s: %d requests got no answer at all", c.kind, st.res.Errors["hang"])
		}
		if !slices.Contains(c.want, b.LastResult) {
			t.Errorf("%s: check classified it %q (%s), want %s", c.kind, b.LastResult, b.LastDetail, strings.Join(c.want, " or "))
		}
		if c.kind == faults.Slow && (st.res.Non2xx != 0 || st.res.Failed() != 0) {
			t.Errorf("slow but in time: clients got %v", st.res)
		}
	}
}

func lastN(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// answer makes one request on a new connection and returns the status, or the kind of failure,
// and how long it took to get the response header or to see the connection end. A request
// still unanswered after limit is a "hang".
func answer(addr string, limit time.Duration) (int, string, time.Duration) {
	start := time.Now()
	c, err := net.DialTimeout("tcp", addr, limit)
	if err != nil {
		return 0, "dial", time.Since(start)
	}
	defer c.Close()
	c.SetDeadline(start.Add(limit))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr); err != nil {
		return 0, "write", time.Since(start)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	d := time.Since(start)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return 0, "hang", d
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return 0, "closed", d
		}
		return 0, "read", d
	}
	// Read a little of the body (an endless one is cut short by the deadline or the limit).
	c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, "", d
}
