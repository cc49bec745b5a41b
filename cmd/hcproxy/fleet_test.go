package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sys/unix"

	"hcproxy/internal/etcdtest"
	"hcproxy/internal/harness"
	"hcproxy/status"
)

// The fleet end to end (issue 17): a real 3-member etcd cluster and hcproxy hosts (each a
// master and its workers) on loopback, in front of backends that count the probes they get by
// host (the probing process is found from the connection's socket in /proc). It asserts what
// docs/fleet.md promises:
//
//   - each server is probed by exactly `checkers` (2) hosts, each once per interval;
//   - every host routes on the same state: a server that fails its check is down on all three,
//     the one that does not probe it included, and requests through each host avoid it;
//   - kill -9 of a whole host moves its checks within lease + one interval;
//   - one etcd member stopped changes nothing;
//   - all etcd stopped: every host falls back to checking everything within the lease, no
//     client request fails meanwhile, and they rejoin when etcd returns;
//   - a host whose endpoints point at a dead port holds no claim and checks everything itself.
const (
	fleetInterval = 500 * time.Millisecond
	fleetLease    = 2 * time.Second
	fleetCheckers = 2
	fleetPrefix   = "/e2e/"
)

// fleetBackend is a backend that answers /health with "ok" (or 500 while failing) and counts
// each probe by the host that made it; every other path is a client request, counted.
type fleetBackend struct {
	name, addr string
	srv        *http.Server
	who        func(remote string) string
	failing    atomic.Bool
	requests   atomic.Int64

	mu     sync.Mutex
	probes []fleetProbe
}

type fleetProbe struct {
	at   time.Time
	host string
}

func startFleetBackend(t *testing.T, name string, who func(string) string) *fleetBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &fleetBackend{name: name, addr: ln.Addr().String(), who: who}
	b.srv = &http.Server{Handler: b, ReadHeaderTimeout: 5 * time.Second}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func (b *fleetBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/health" {
		b.requests.Add(1)
		io.WriteString(w, "hello from "+b.name)
		return
	}
	host := b.who(r.RemoteAddr)
	b.mu.Lock()
	b.probes = append(b.probes, fleetProbe{time.Now(), host})
	b.mu.Unlock()
	if b.failing.Load() {
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, "failing")
		return
	}
	io.WriteString(w, "ok")
}

// probesSince counts the probes since t by host.
func (b *fleetBackend) probesSince(t time.Time) map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string]int{}
	for _, p := range b.probes {
		if !p.at.Before(t) {
			out[p.host]++
		}
	}
	return out
}

// firstProbeSince returns when host first probed b at or after t.
func (b *fleetBackend) firstProbeSince(host string, t time.Time) (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.probes {
		if p.host == host && !p.at.Before(t) {
			return p.at, true
		}
	}
	return time.Time{}, false
}

// fleetHost is one hcproxy host of the fleet: a master, its workers, its own directory, ports
// and name.
type fleetHost struct {
	name   string
	p      *proxy
	listen string
	master atomic.Int64 // the master's pid, for fleetHosts' goroutine
}

// pid is the master's pid, 0 before it started.
func (h *fleetHost) pid() int { return int(h.master.Load()) }

// start starts the master (again).
func (h *fleetHost) start() {
	h.p.start()
	h.master.Store(int64(h.p.cmd.Process.Pid))
}

// fleetHosts finds which host a probe came from: the probe's connection is a socket of one of
// a host's workers. /proc/net/tcp is no help on a busy machine (tens of thousands of sockets to
// read per probe); instead each worker's socket descriptors are duplicated with pidfd_getfd
// (the workers are this test's grandchildren) and the one whose local port is the probe's
// names the host. The workers' pids are refreshed in the background.
type fleetHosts struct {
	mu    sync.Mutex
	hosts []*fleetHost
	pids  map[string][]int // host -> its workers, as last seen
}

func newFleetHosts(t *testing.T) *fleetHosts {
	fh := &fleetHosts{pids: map[string][]int{}}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fh.mu.Lock()
			hosts := append([]*fleetHost(nil), fh.hosts...)
			fh.mu.Unlock()
			pids := map[string][]int{}
			for _, h := range hosts {
				if pid := h.pid(); pid != 0 {
					pids[h.name] = harness.Children(pid)
				}
			}
			fh.mu.Lock()
			fh.pids = pids
			fh.mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
	return fh
}

func (fh *fleetHosts) add(h *fleetHost) {
	fh.mu.Lock()
	fh.hosts = append(fh.hosts, h)
	fh.mu.Unlock()
}

// who returns the name of the host whose worker holds the client end of the connection from
// remote ("127.0.0.1:port"), "?" if none.
func (fh *fleetHosts) who(remote string) string {
	_, ps, err := net.SplitHostPort(remote)
	port, perr := strconv.Atoi(ps)
	if err != nil || perr != nil {
		return "?"
	}
	fh.mu.Lock()
	pids := fh.pids
	fh.mu.Unlock()
	for host, ws := range pids {
		for _, pid := range ws {
			if holdsPort(pid, port) {
				return host
			}
		}
	}
	return "?"
}

// holdsPort reports whether process pid has a TCP socket bound to local port.
func holdsPort(pid, port int) bool {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return false
	}
	defer unix.Close(pfd)
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if l, _ := os.Readlink(filepath.Join(dir, e.Name())); !strings.HasPrefix(l, "socket:[") {
			continue
		}
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		fd, err := unix.PidfdGetfd(pfd, n, 0)
		if err != nil {
			continue
		}
		sa, err := unix.Getsockname(fd)
		unix.Close(fd)
		if a, ok := sa.(*unix.SockaddrInet4); err == nil && ok && a.Port == port {
			return true
		}
	}
	return false
}

// fleetConfig is a host's config: its name, its etcd endpoints, the backends.
func fleetConfig(name, listen string, endpoints []string, backends []*fleetBackend) string {
	var servers, eps []string
	for _, b := range backends {
		servers = append(servers, strconv.Quote(b.addr))
	}
	for _, e := range endpoints {
		eps = append(eps, strconv.Quote(e))
	}
	return fmt.Sprintf(`workers = 2
pid_file = "hcproxy.pid"
table = "hcproxy.table"
shutdown_timeout = "5s"
[[server]]
listen = %q
upstream = "app"
[upstream.app]
servers = [%s]
[upstream.app.check]
uri = "/health"
interval = %q
timeout = "300ms"
rise = 1
fall = 1
expect_body = "ok"
[fleet]
endpoints = [%s]
host = %q
prefix = %q
checkers = %d
lease_ttl = "%ds"
`, listen, strings.Join(servers, ", "), fleetInterval.String(), strings.Join(eps, ", "), name, fleetPrefix, fleetCheckers, int(fleetLease/time.Second))
}

func startFleetHost(t *testing.T, fh *fleetHosts, name string, endpoints []string, backends []*fleetBackend) *fleetHost {
	t.Helper()
	dir := t.TempDir()
	h := &fleetHost{name: name, listen: freePort(t)}
	h.p = &proxy{t: t, dir: dir, config: filepath.Join(dir, "hcproxy.toml"), log: &syncBuffer{}}
	h.p.harness().WriteConfig(fleetConfig(name, h.listen, endpoints, backends))
	h.start()
	t.Cleanup(h.p.kill)
	fh.add(h)
	return h
}

// mode is the host's fleet mode in its table ("" if unreadable or none).
func (h *fleetHost) mode() string {
	d, err := h.p.dumpErr()
	if err != nil || d.Fleet == nil {
		return ""
	}
	return d.Fleet.Mode
}

// claims reads the claims in etcd: server address -> sorted hosts.
func etcdClaims(t *testing.T, cli *clientv3.Client) map[string][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := cli.Get(ctx, fleetPrefix+"claims/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("read claims: %v", err)
	}
	out := map[string][]string{}
	for _, kv := range r.Kvs {
		rest := strings.TrimPrefix(string(kv.Key), fleetPrefix+"claims/")
		i := strings.LastIndexByte(rest, '/')
		if i < 0 {
			continue
		}
		key, err := url.PathUnescape(rest[:i])
		if err != nil {
			continue
		}
		addr, _, _ := strings.Cut(key, "#")
		out[addr] = append(out[addr], rest[i+1:])
	}
	for _, hs := range out {
		sort.Strings(hs)
	}
	return out
}

// waitFleet polls cond until it holds or within passes, and fails with its last message.
func waitFleet(t *testing.T, what string, within time.Duration, cond func() (bool, string)) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, msg := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v: %s", what, within, msg)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// settled: every backend is claimed by exactly `checkers` of the hosts named, in etcd, and
// every host shows the backends it does not check as fleet-sourced.
func settled(t *testing.T, cli *clientv3.Client, backends []*fleetBackend, hosts []*fleetHost) (bool, string) {
	claims := etcdClaims(t, cli)
	names := map[string]*fleetHost{}
	for _, h := range hosts {
		names[h.name] = h
	}
	for _, b := range backends {
		hs := claims[b.addr]
		if len(hs) != fleetCheckers {
			return false, fmt.Sprintf("%s claimed by %v", b.name, hs)
		}
		for _, n := range hs {
			if names[n] == nil {
				return false, fmt.Sprintf("%s claimed by %v, not all live", b.name, hs)
			}
		}
	}
	for _, h := range hosts {
		d, err := h.p.dumpErr()
		if err != nil || d.Fleet == nil || d.Fleet.Mode != "fleet" {
			return false, fmt.Sprintf("%s not in the fleet (%v)", h.name, err)
		}
		for _, b := range backends {
			be, _ := backendState(d, b.addr)
			mine := false
			for _, n := range claims[b.addr] {
				mine = mine || n == h.name
			}
			if want := map[bool]string{true: "local", false: "fleet"}[mine]; be.Source != want {
				return false, fmt.Sprintf("%s: %s is %s, want %s", h.name, b.name, be.Source, want)
			}
		}
	}
	return true, ""
}

// checkProbeCounts counts the probes over window and asserts each backend was probed by exactly
// the hosts holding its claims, each about once per interval; hosts in fallback (also) probe
// every backend.
func checkProbeCounts(t *testing.T, cli *clientv3.Client, backends []*fleetBackend, fallback []string, window time.Duration) {
	t.Helper()
	start := time.Now()
	time.Sleep(window) // the measurement window, not a wait for a state
	claims := etcdClaims(t, cli)
	per := int(window / fleetInterval)
	for _, b := range backends {
		got := b.probesSince(start)
		want := map[string]bool{}
		for _, h := range claims[b.addr] {
			want[h] = true
		}
		for _, h := range fallback {
			want[h] = true
		}
		for h, n := range got {
			if !want[h] {
				t.Errorf("%s probed %d times by %s, which does not check it (checkers %v)", b.name, n, h, claims[b.addr])
			}
		}
		for h := range want {
			if n := got[h]; n < per-1 || n > per+1 {
				t.Errorf("%s probed %d times by %s in %v, want %d±1 (one per %v)", b.name, n, h, window, per, fleetInterval)
			}
		}
		t.Logf("%s: probes in %v by host %v (claims %v)", b.name, window, got, claims[b.addr])
	}
}

// getThrough sends one request through host h and returns the status (0 on error) and body.
func getThrough(c *http.Client, h *fleetHost) (int, string, error) {
	resp, err := c.Get("http://" + h.listen + "/x")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestFleetEndToEnd(t *testing.T) {
	etcdtest.Need(t)
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp: the backends cannot tell which host probed them")
	}
	cl := etcdtest.Start(t, 3)
	cli := cl.Client()
	fh := newFleetHosts(t)
	var backends []*fleetBackend
	for i := range 4 {
		backends = append(backends, startFleetBackend(t, fmt.Sprintf("b%d", i), fh.who))
	}
	var hosts []*fleetHost
	for i := 1; i <= 3; i++ {
		hosts = append(hosts, startFleetHost(t, fh, fmt.Sprintf("h%d", i), cl.Endpoints(), backends))
	}
	// h4's only endpoint is a dead port: it never joins, holds no claim, checks everything.
	dead := startFleetHost(t, fh, "h4", []string{"http://" + freePort(t)}, backends)
	for _, h := range append(hosts, dead) {
		h.p.waitWorkers(2)
	}
	took := waitFleet(t, "the fleet settles", 20*time.Second, func() (bool, string) { return settled(t, cli, backends, hosts) })
	t.Logf("settled %v after the hosts were ready", took.Round(time.Millisecond))
	if m := dead.mode(); m != "fallback" {
		t.Fatalf("h4 (dead endpoints) is in mode %q, want fallback", m)
	}

	t.Run("checkers per server", func(t *testing.T) {
		checkProbeCounts(t, cli, backends, []string{"h4"}, 6*fleetInterval)
		claims := etcdClaims(t, cli)
		for addr, hs := range claims {
			for _, h := range hs {
				if h == "h4" {
					t.Errorf("h4 holds a claim on %s with its endpoints dead", addr)
				}
			}
		}
		// hcctl fleet shows the same: the members, and who checks what (the master rewrites
		// the file it reads within half a second of a change).
		waitFleet(t, "hcctl fleet on h1 shows the fleet", 2*time.Second, func() (bool, string) {
			out, err := exec.Command(bins.Hcctl, "--table", hosts[0].p.harness().TablePath(), "fleet", "--json").Output()
			if err != nil {
				return false, fmt.Sprintf("hcctl fleet: %v", err)
			}
			var st status.FleetStatus
			if err := json.Unmarshal(out, &st); err != nil {
				return false, fmt.Sprintf("hcctl fleet --json: %v\n%s", err, out)
			}
			if st.Host != "h1" || st.Mode != "fleet" || strings.Join(st.Members, ",") != "h1,h2,h3" || len(st.Servers) != len(backends) {
				return false, fmt.Sprintf("host %q mode %q members %v, %d servers", st.Host, st.Mode, st.Members, len(st.Servers))
			}
			for _, s := range st.Servers {
				mine := strings.Contains(strings.Join(claims[s.Address], ","), "h1")
				if strings.Join(s.Checkers, ",") != strings.Join(claims[s.Address], ",") || s.CheckedHere != mine || s.Fleet != "up" || s.Disagree {
					return false, fmt.Sprintf("%+v, claims in etcd %v", s, claims[s.Address])
				}
			}
			return true, ""
		})
	})
	if t.Failed() {
		return
	}

	client := &http.Client{Timeout: 2 * time.Second}
	t.Run("same state on every host", func(t *testing.T) {
		bad := backends[0]
		claims := etcdClaims(t, cli)[bad.addr]
		bad.failing.Store(true)
		var notChecking *fleetHost
		for _, h := range hosts {
			if !strings.Contains(strings.Join(claims, ","), h.name) {
				notChecking = h
			}
		}
		for _, h := range append(hosts, dead) {
			h.p.eventually(bad.name+" down on "+h.name, 4*fleetInterval+time.Second, func(d status.Document) bool {
				b, _ := backendState(d, bad.addr)
				return b.State == "down"
			})
		}
		d := notChecking.p.dump()
		b, _ := backendState(d, bad.addr)
		if b.Source != "fleet" || !strings.Contains(b.LastDetail, "down") {
			t.Errorf("%s (not a checker of %s) shows it down from %q with detail %q, want the fleet's verdict", notChecking.name, bad.name, b.Source, b.LastDetail)
		}
		before := bad.requests.Load()
		for _, h := range append(hosts, dead) {
			for range 20 {
				code, body, err := getThrough(client, h)
				if err != nil || code != 200 || body == "hello from "+bad.name {
					t.Fatalf("request through %s: %d %q %v", h.name, code, body, err)
				}
			}
		}
		if n := bad.requests.Load() - before; n != 0 {
			t.Errorf("%d requests reached %s, which every host has down", n, bad.name)
		}
		bad.failing.Store(false)
		for _, h := range append(hosts, dead) {
			h.p.eventually(bad.name+" up again on "+h.name, 4*fleetInterval+time.Second, func(d status.Document) bool {
				b, _ := backendState(d, bad.addr)
				return b.State == "up"
			})
		}
	})
	if t.Failed() {
		return
	}

	t.Run("kill -9 of a host", func(t *testing.T) {
		victim := hosts[2]
		claims := etcdClaims(t, cli)
		var moved []*fleetBackend
		for _, b := range backends {
			if strings.Contains(strings.Join(claims[b.addr], ","), victim.name) {
				moved = append(moved, b)
			}
		}
		pids := append([]int{victim.p.cmd.Process.Pid}, harness.Children(victim.p.cmd.Process.Pid)...)
		killed := time.Now()
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		<-victim.p.done
		survivors := hosts[:2]
		limit := fleetLease + fleetInterval
		for _, b := range moved {
			// With three hosts and two checkers, both survivors check it once the victim's
			// claims lapse.
			var newHost string
			for _, h := range survivors {
				if !strings.Contains(strings.Join(claims[b.addr], ","), h.name) {
					newHost = h.name
				}
			}
			waitFleet(t, b.name+" probed by "+newHost, limit+3*time.Second, func() (bool, string) {
				_, ok := b.firstProbeSince(newHost, killed)
				return ok, fmt.Sprintf("probes since the kill: %v", b.probesSince(killed))
			})
			at, _ := b.firstProbeSince(newHost, killed)
			t.Logf("%s: first probe by %s %v after the kill (limit lease+interval = %v)", b.name, newHost, at.Sub(killed).Round(time.Millisecond), limit)
			if at.Sub(killed) > limit {
				t.Errorf("%s: its check moved to %s %v after the kill, want within lease + one interval (%v)", b.name, newHost, at.Sub(killed).Round(time.Millisecond), limit)
			}
		}
		waitFleet(t, "the survivors settle", 10*time.Second, func() (bool, string) { return settled(t, cli, backends, survivors) })
		// The host comes back, under its name, on its table.
		victim.start()
		victim.p.waitWorkers(2)
		waitFleet(t, "the fleet settles with the host back", 20*time.Second, func() (bool, string) { return settled(t, cli, backends, hosts) })
	})
	if t.Failed() {
		return
	}

	t.Run("one etcd member stopped", func(t *testing.T) {
		var before []uint64
		for _, h := range hosts {
			before = append(before, h.p.dump().Fleet.Fallbacks)
		}
		claims := etcdClaims(t, cli)
		leader := cl.Leader() // the harder case: an election follows
		if leader == nil {
			t.Fatal("no etcd member leads")
		}
		cl.Stop(leader)
		start := time.Now()
		for time.Since(start) < fleetLease+time.Second { // a lease and more: nothing may change
			for i, h := range hosts {
				d, err := h.p.dumpErr()
				if err == nil && (d.Fleet == nil || d.Fleet.Mode != "fleet" || d.Fleet.Fallbacks != before[i]) {
					t.Fatalf("%s left the fleet with one etcd member of three down: %+v", h.name, d.Fleet)
				}
			}
			time.Sleep(100 * time.Millisecond)
		}
		if now := etcdClaims(t, cli); fmt.Sprint(now) != fmt.Sprint(claims) {
			t.Errorf("claims changed with one etcd member down:\nbefore %v\nafter  %v", claims, now)
		}
		checkProbeCounts(t, cli, backends, []string{"h4"}, 4*fleetInterval)
		cl.Start(leader)
	})
	if t.Failed() {
		return
	}

	t.Run("all etcd stopped", func(t *testing.T) {
		// A bounded client load through every host for the whole outage.
		var failed, sent atomic.Int64
		var firstErr atomic.Value
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, h := range hosts {
			wg.Add(1)
			go func(h *fleetHost) {
				defer wg.Done()
				for n := 0; n < 2000; n++ {
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
					sent.Add(1)
					if code, body, err := getThrough(client, h); err != nil || code != 200 {
						failed.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %d %q %v", h.name, code, body, err))
					}
				}
			}(h)
		}
		endLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
		defer endLoad()
		time.Sleep(fleetInterval) // load running before the outage
		cl.StopAll()
		stopped := time.Now()
		for _, h := range hosts {
			// The table says when the host fell back; reading it takes a while on a busy machine.
			var d status.Document
			waitFleet(t, h.name+" falls back", fleetLease+5*time.Second, func() (bool, string) {
				var err error
				d, err = h.p.dumpErr()
				if err != nil || d.Fleet == nil {
					return false, fmt.Sprint(err)
				}
				return d.Fleet.Mode == "fallback", "mode " + d.Fleet.Mode
			})
			since := time.UnixMilli(d.Fleet.SinceUnixMs).Sub(stopped)
			t.Logf("%s in fallback %v after etcd stopped", h.name, since.Round(time.Millisecond))
			// The lease, and the agent's tick (100ms) to write it into the table.
			if since > fleetLease+200*time.Millisecond {
				t.Errorf("%s fell back %v after etcd stopped, want within the lease (%v)", h.name, since.Round(time.Millisecond), fleetLease)
			}
		}
		// In fallback every host checks every server itself.
		start := time.Now()
		time.Sleep(4 * fleetInterval)
		for _, b := range backends {
			got := b.probesSince(start)
			for _, h := range hosts {
				if got[h.name] < 2 {
					t.Errorf("%s probed %d times by %s in fallback over %v", b.name, got[h.name], h.name, 4*fleetInterval)
				}
			}
		}
		cl.RestartAll()
		for _, h := range hosts {
			waitFleet(t, h.name+" rejoins", 15*time.Second, func() (bool, string) {
				m := h.mode()
				return m == "fleet", "mode " + m
			})
		}
		endLoad()
		if f := failed.Load(); f != 0 {
			t.Errorf("%d of %d client requests failed during the etcd outage; first: %v", f, sent.Load(), firstErr.Load())
		}
		t.Logf("%d client requests through the outage, none failed", sent.Load())
		waitFleet(t, "the fleet settles after etcd returned", 20*time.Second, func() (bool, string) { return settled(t, cli, backends, hosts) })
		checkProbeCounts(t, cli, backends, []string{"h4"}, 4*fleetInterval)
	})
}
