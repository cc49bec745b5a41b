//go:build chaos

// Package chaos is hcproxy's chaos suite and soak test: it runs the real binaries on loopback
// under a bounded load (internal/load), injects faults (signals, kill -9, faulty backends, a low
// descriptor limit, ten thousand backends) and fails when a promise is broken. Each scenario
// prints one line starting with RESULT. Run it with `make chaos`; the soak with `make soak`.
// Every process a test starts is stopped by its pid.
package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hcproxy/internal/syncbuf"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hcproxy/internal/backend"
	"hcproxy/internal/load"
	"hcproxy/status"
)

var bin struct{ hcproxy, hcctl string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hcproxy-chaos-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.hcproxy, bin.hcctl = filepath.Join(dir, "hcproxy"), filepath.Join(dir, "hcctl")
	for out, pkg := range map[string]string{bin.hcproxy: "hcproxy/cmd/hcproxy", bin.hcctl: "hcproxy/cmd/hcctl"} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, b)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
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

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startBackends(t *testing.T, prefix string, n int) []*backend.Backend {
	t.Helper()
	var bs []*backend.Backend
	for i := 0; i < n; i++ {
		b, err := backend.Start(fmt.Sprintf("%s%d", prefix, i), "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		bs = append(bs, b)
	}
	return bs
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

// proxy is one running hcproxy master, started (possibly through a wrapper such as prlimit).
type proxy struct {
	t       *testing.T
	dir     string
	cfgPath string
	cfg     config
	wrapper []string
	cmd     *exec.Cmd
	log     *syncBuffer
	done    chan struct{}
	seen    map[int]bool // every worker pid seen, to stop leftovers by pid
}

// syncBuffer collects output written while the test reads it.
type syncBuffer = syncbuf.Buffer

// newProxy writes the config in a fresh directory; start starts the master.
func newProxy(t *testing.T, c config) *proxy {
	t.Helper()
	dir := t.TempDir()
	p := &proxy{t: t, dir: dir, cfgPath: filepath.Join(dir, "hcproxy.toml"), log: &syncBuffer{}, seen: map[int]bool{}}
	p.writeConfig(c)
	t.Cleanup(p.stop)
	return p
}

// writeConfig replaces the config file atomically (a reload never reads half a file).
func (p *proxy) writeConfig(c config) {
	p.t.Helper()
	p.cfg = c
	tmp := p.cfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(c.render()), 0o644); err != nil {
		p.t.Fatal(err)
	}
	if err := os.Rename(tmp, p.cfgPath); err != nil {
		p.t.Fatal(err)
	}
}

func (p *proxy) start() {
	p.t.Helper()
	args := append(append([]string{}, p.wrapper...), bin.hcproxy, "-c", p.cfgPath)
	p.cmd = exec.Command(args[0], args[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan struct{})
	p.done = done
	cmd := p.cmd
	go func() { cmd.Wait(); close(done) }()
}

func (p *proxy) pid() int { return p.cmd.Process.Pid }

// startReady starts the master and waits for its workers.
func (p *proxy) startReady() status.Document {
	p.t.Helper()
	p.start()
	return p.waitWorkers(p.cfg.workers, 20*time.Second)
}

// stop stops the master (TERM, then KILL) and then every worker pid it ever had that is still
// there.
func (p *proxy) stop() {
	if p.cmd == nil {
		return
	}
	for _, pid := range children(p.pid()) {
		p.seen[pid] = true
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	for pid := range p.seen {
		if running(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if p.t.Failed() {
		log := p.log.String()
		if len(log) > 20000 {
			log = "...\n" + log[len(log)-20000:]
		}
		p.t.Logf("hcproxy log (tail):\n%s", log)
	}
}

func (p *proxy) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

func (p *proxy) tablePath() string { return filepath.Join(p.dir, "hcproxy.table") }

func (p *proxy) dumpErr() (status.Document, error) {
	var d status.Document
	out, err := exec.Command(bin.hcctl, "--table", p.tablePath(), "dump", "--json").Output()
	if err != nil {
		return d, err
	}
	err = json.Unmarshal(out, &d)
	return d, err
}

func (p *proxy) dump() status.Document {
	p.t.Helper()
	d, err := p.dumpErr()
	if err != nil {
		p.t.Fatalf("hcctl dump: %v", err)
	}
	return d
}

func (p *proxy) eventually(what string, timeout time.Duration, cond func(status.Document) bool) status.Document {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d, err := p.dumpErr()
		if err == nil && cond(d) {
			return d
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out after %v waiting for %s (err %v); workers %+v", timeout, what, err, d.Workers)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *proxy) waitWorkers(n int, timeout time.Duration) status.Document {
	p.t.Helper()
	d := p.eventually(fmt.Sprintf("%d ready workers", n), timeout, func(d status.Document) bool {
		return d.MasterPid == p.pid() && readyWorkers(d) == n
	})
	for _, pid := range children(p.pid()) {
		p.seen[pid] = true
	}
	return d
}

func readyWorkers(d status.Document) int {
	n := 0
	for _, w := range d.Workers {
		if w.State == "ready" && w.Generation == d.Generation {
			n++
		}
	}
	return n
}

func backendState(d status.Document, addr string) (status.Backend, bool) {
	for _, b := range d.Backends {
		if b.Address == addr {
			return b, true
		}
	}
	return status.Backend{}, false
}

// waitChecked waits until every backend in the table was checked at least n times.
func (p *proxy) waitChecked(n uint64, timeout time.Duration) status.Document {
	p.t.Helper()
	return p.eventually("backends checked", timeout, func(d status.Document) bool {
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

// procStat returns the fields of /proc/PID/stat after the command name (field 3 is index 0).
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("bad stat")
	}
	return strings.Fields(string(b[i+1:])), nil
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	f, err := procStat(pid)
	return err == nil && len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// children lists the live (non-zombie) children of pid, from every /proc/*/stat's ppid.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := procStat(c)
		if err != nil || len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == pid {
			out = append(out, c)
		}
	}
	sort.Ints(out)
	return out
}

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
	f, err := procStat(pid)
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
	f, err := procStat(pid)
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
