//go:build chaos

// Package chaos is hcproxy's chaos suite and soak test: it runs the real binaries on loopback
// under a bounded load (internal/load), injects faults (signals, kill -9, faulty backends, a low
// descriptor limit, ten thousand backends) and fails when a promise is broken. Each scenario
// prints one line starting with RESULT. Run it with `make chaos`; the soak with `make soak`.
// Every process a test starts is stopped by its pid.
package chaos

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"hcproxy/internal/backend"
	"hcproxy/internal/harness"
	"hcproxy/internal/load"
	"hcproxy/status"
)

var bins harness.Binaries

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, func(b harness.Binaries) { bins = b }))
}

// result prints the scenario's RESULT line: what the clients saw, and what leaked.
func result(scenario string, r load.Result, leaks string, extra ...string) {
	kinds := make([]string, 0, len(r.Errors))
	for k, v := range r.Errors {
		kinds = append(kinds, fmt.Sprintf("%s:%d", k, v))
	}
	sort.Strings(kinds)
	errs := "none"
	if len(kinds) > 0 {
		errs = strings.Join(kinds, ",")
	}
	line := fmt.Sprintf("RESULT %-22s requests=%d failed=%d errors=%s non2xx=%d p99=%v leaks=%s",
		scenario, r.Requests, r.Failed(), errs, r.Non2xx, r.P99.Round(10*time.Microsecond), leaks)
	if len(extra) > 0 {
		line += " " + strings.Join(extra, " ")
	}
	fmt.Println(line)
}

func addrs(bs []*backend.Backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.Addr)
	}
	return out
}

// upstreamConf is one [upstream.NAME] with its check and the [[server]] listener in front of it.
type upstreamConf struct {
	name     string
	listen   string // the [[server]] listen address; "" for no listener
	servers  []string
	connect  string // connect_timeout, "" for the default
	read     string // read_timeout, "" for the default
	interval string
	timeout  string
	rise     int
	fall     int
	extra    string // more lines of the check table
	ukeys    string // more lines of the upstream table
}

type config struct {
	workers    int
	maxServers int
	status     string
	upstreams  []upstreamConf
	top        string // more top-level lines
}

func (c config) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "workers = %d\npid_file = \"hcproxy.pid\"\ntable = \"hcproxy.table\"\nshutdown_timeout = \"10s\"\n", c.workers)
	if c.maxServers > 0 {
		fmt.Fprintf(&b, "max_servers = %d\n", c.maxServers)
	}
	b.WriteString(c.top + "\n")
	if c.status != "" {
		fmt.Fprintf(&b, "[status]\nlisten = %q\n", c.status)
	}
	for _, u := range c.upstreams {
		if u.listen != "" {
			fmt.Fprintf(&b, "[[server]]\nlisten = %q\nupstream = %q\n", u.listen, u.name)
		}
	}
	for _, u := range c.upstreams {
		var qs []string
		for _, s := range u.servers {
			qs = append(qs, strconv.Quote(s))
		}
		fmt.Fprintf(&b, "[upstream.%s]\nservers = [%s]\n", u.name, strings.Join(qs, ", "))
		if u.connect != "" {
			fmt.Fprintf(&b, "connect_timeout = %q\n", u.connect)
		}
		if u.read != "" {
			fmt.Fprintf(&b, "read_timeout = %q\n", u.read)
		}
		if u.ukeys != "" {
			b.WriteString(u.ukeys + "\n")
		}
		rise, fall := u.rise, u.fall
		if rise == 0 {
			rise = 2
		}
		if fall == 0 {
			fall = 2
		}
		fmt.Fprintf(&b, "[upstream.%s.check]\nuri = \"/health\"\ninterval = %q\ntimeout = %q\nrise = %d\nfall = %d\nexpect_body = \"ok\"\n%s\n",
			u.name, u.interval, u.timeout, rise, fall, u.extra)
	}
	return b.String()
}

// proxy is one hcproxy master (internal/harness) and the config it was last given.
type proxy struct {
	*harness.Proxy
	cfg config
}

// newProxy writes the config in a fresh directory; Start starts the master. The master and
// every worker it had are stopped when the test ends.
func newProxy(t *testing.T, c config) *proxy {
	t.Helper()
	p := &proxy{Proxy: harness.NewProxy(t, bins)}
	p.writeConfig(c)
	t.Cleanup(func() { p.Stop(15 * time.Second) })
	return p
}

// writeConfig replaces the config file atomically (a reload never reads half a file).
func (p *proxy) writeConfig(c config) {
	p.T.Helper()
	p.cfg = c
	p.WriteConfig(c.render())
}

// startReady starts the master and waits for its workers.
func (p *proxy) startReady() status.Document {
	p.T.Helper()
	p.Start()
	return p.WaitWorkers(p.cfg.workers, 20*time.Second)
}

// waitChecked waits until every backend in the table was checked at least n times.
func (p *proxy) waitChecked(n uint64, timeout time.Duration) status.Document {
	p.T.Helper()
	return p.Eventually("backends checked", timeout, func(d status.Document) bool {
		if len(d.Backends) == 0 {
			return false
		}
		for _, b := range d.Backends {
			if b.Checks < n {
				return false
			}
		}
		return true
	})
}

// --- /proc ---

// fdCount counts the open descriptors of pid.
func fdCount(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// cpuTicks is utime+stime of pid in clock ticks.
func cpuTicks(pid int) int64 {
	f, err := harness.ProcStat(pid)
	if err != nil || len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

const clockTicks = 100 // USER_HZ on Linux

// userTicks is utime of pid in clock ticks.
func userTicks(pid int) int64 {
	f, err := harness.ProcStat(pid)
	if err != nil || len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	return u
}

// procStatus returns VmRSS (KiB) and Threads from /proc/PID/status.
func procStatus(pid int) (rssKiB, threads int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1, -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			rssKiB, _ = strconv.ParseInt(f[1], 10, 64)
		case "Threads:":
			threads, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	return rssKiB, threads
}

// clientConns counts the established TCP connections pid holds whose local port is port (the
// proxy's clients on that listener), by matching the socket inodes of /proc/PID/fd against
// /proc/net/tcp.
func clientConns(pid int, port int) int {
	inodes := map[string]bool{}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil && strings.HasPrefix(l, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		return 0
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 || f[3] != "01" { // 01 = ESTABLISHED
			continue
		}
		i := strings.LastIndexByte(f[1], ':')
		lp, _ := strconv.ParseInt(f[1][i+1:], 16, 32)
		if int(lp) == port && inodes[f[9]] {
			n++
		}
	}
	return n
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// --- probes seen at the backends ---

// probeGaps returns, for the probe times inside [from, to], the smallest and the largest gap
// between two probes in a row and how many gaps were shorter than short.
func probeGaps(times []time.Time, from, to time.Time, short time.Duration) (minGap, maxGap time.Duration, nShort int) {
	var in []time.Time
	for _, t := range times {
		if !t.Before(from) && !t.After(to) {
			in = append(in, t)
		}
	}
	minGap = time.Hour
	prev := from
	for i, t := range in {
		g := t.Sub(prev)
		if g > maxGap {
			maxGap = g
		}
		if i > 0 {
			if g < minGap {
				minGap = g
			}
			if g < short {
				nShort++
			}
		}
		prev = t
	}
	if g := to.Sub(prev); g > maxGap {
		maxGap = g
	}
	return minGap, maxGap, nShort
}

func jitter(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rand.Int64N(int64(hi-lo)+1))
}

// pct returns the q-quantile (0..1) of sorted-in-place values.
func pct(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	sort.Float64s(v)
	i := int(float64(len(v)-1) * q)
	return v[i]
}
