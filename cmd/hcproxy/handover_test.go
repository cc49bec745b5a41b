package main

// Tests of issue 13's handover rule on real processes: a check that is due is made once, by one
// worker, and its result is recorded, across reloads, kill -9 of workers, a hung owner (lease),
// and a master restart. Each backend here records the arrival time of every probe.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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

	"hcproxy/status"
)

// recBackend answers GET /health with 200 "ok" (after healthDelay), or, black-holed, reads the
// probe and never answers; it records when every probe arrived. GET /slow answers after
// slowDelay; anything else answers at once. Connections are closed after each answer.
type recBackend struct {
	Addr        string
	ln          net.Listener
	blackHole   atomic.Bool
	healthDelay time.Duration
	slowDelay   time.Duration
	slowSeen    atomic.Int64
	closed      chan struct{}
	mu          sync.Mutex
	probes      []time.Time
	conns       map[net.Conn]bool
}

func startRecBackend(t *testing.T) *recBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &recBackend{Addr: ln.Addr().String(), ln: ln, closed: make(chan struct{}), conns: map[net.Conn]bool{}}
	go b.serve()
	t.Cleanup(b.close)
	return b
}

func (b *recBackend) serve() {
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.mu.Lock()
		b.conns[c] = true
		b.mu.Unlock()
		go b.handle(c)
	}
}

func (b *recBackend) handle(c net.Conn) {
	defer func() {
		c.Close()
		b.mu.Lock()
		delete(b.conns, c)
		b.mu.Unlock()
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err != nil {
		return
	}
	wait := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-b.closed:
			return false
		}
	}
	body := "hello\n"
	switch req.URL.Path {
	case "/health":
		b.mu.Lock()
		b.probes = append(b.probes, time.Now())
		b.mu.Unlock()
		if b.blackHole.Load() {
			io.Copy(io.Discard, c) // until the prober gives up and closes
			return
		}
		if !wait(b.healthDelay) {
			return
		}
		body = "ok\n"
	case "/slow":
		b.slowSeen.Add(1)
		if !wait(b.slowDelay) {
			return
		}
		body = "slow\n"
	}
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

// Probes returns the arrival times of the probes so far.
func (b *recBackend) Probes() []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Time(nil), b.probes...)
}

func (b *recBackend) close() {
	select {
	case <-b.closed:
		return
	default:
	}
	close(b.closed)
	b.ln.Close()
	b.mu.Lock()
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
}

// checkConf is the check table of a handover test.
type checkConf struct {
	workers         int
	interval        string
	timeout         string
	rise, fall      int
	shutdownTimeout string
	top             string // top-level keys
}

// startRecProxy starts a master in front of backends with the check c; it returns once every
// worker is ready.
func startRecProxy(t *testing.T, c checkConf, bs []*recBackend) *proxy {
	t.Helper()
	dir := t.TempDir()
	p := &proxy{t: t, dir: dir, config: filepath.Join(dir, "hcproxy.toml"), listen: freePort(t), status: freePort(t), log: &syncBuffer{}}
	var servers []string
	for _, b := range bs {
		servers = append(servers, strconv.Quote(b.Addr))
	}
	if c.shutdownTimeout == "" {
		c.shutdownTimeout = "10s"
	}
	cfg := fmt.Sprintf(`%s
workers = %d
pid_file = "hcproxy.pid"
table = "hcproxy.table"
shutdown_timeout = %q
[status]
listen = %q
[[server]]
listen = %q
upstream = "app"
[upstream.app]
servers = [%s]
[upstream.app.check]
uri = "/health"
interval = %q
timeout = %q
rise = %d
fall = %d
`, c.top, c.workers, c.shutdownTimeout, p.status, p.listen, strings.Join(servers, ", "), c.interval, c.timeout, c.rise, c.fall)
	if err := os.WriteFile(p.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p.start()
	t.Cleanup(p.kill)
	p.waitWorkers(c.workers)
	return p
}

// A reload while a probe is in flight used to lose that check: the new generation took the slot
// at once (a new fence), the old owner's result was refused, and the new owner went on from the
// due time the old one had already moved. With a black-holed server (accepts, never answers),
// interval 2s, timeout 1500ms and SIGHUP every 1.2s, the server was never marked down. Now it
// goes down within fall x interval + timeout + one interval, and every probe is recorded.
func TestReloadWithProbeInFlightLosesNoCheck(t *testing.T) {
	good, bad := startRecBackend(t), startRecBackend(t)
	p := startRecProxy(t, checkConf{workers: 2, interval: "2s", timeout: "1500ms", rise: 2, fall: 2}, []*recBackend{good, bad})
	p.eventually("both up", 10*time.Second, func(d status.Document) bool {
		for _, b := range d.Backends {
			if b.State != "up" {
				return false
			}
		}
		return len(d.Backends) == 2
	})
	bad.blackHole.Store(true)
	holed := time.Now()
	stop := make(chan struct{})
	reloads := make(chan int, 1)
	go func() {
		n := 0
		defer func() { reloads <- n }()
		tick := time.NewTicker(1200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				p.cmd.Process.Signal(syscall.SIGHUP)
				n++
			}
		}
	}()
	// fall x interval + timeout + one interval = 2*2s + 1.5s + 2s.
	limit := 7500 * time.Millisecond
	d := p.eventually("the black-holed server down", limit+time.Second, func(d status.Document) bool {
		b, _ := backendState(d, bad.Addr)
		return b.State == "down"
	})
	took := time.Since(holed)
	close(stop)
	n := <-reloads
	if took > limit {
		t.Errorf("black-holed server down after %v (%d reloads), want within %v", took, n, limit)
	}
	if n < 3 {
		t.Errorf("only %d reloads happened while the server went down", n)
	}
	// Every probe that reached it before it went down was recorded.
	b, _ := backendState(d, bad.Addr)
	if b.Failures < 2 {
		t.Errorf("down with %d failures recorded", b.Failures)
	}
	t.Logf("down after %v and %d reloads; probes reaching it since: %d", took.Round(10*time.Millisecond), n, countSince(bad.Probes(), holed))
}

func countSince(ts []time.Time, since time.Time) int {
	n := 0
	for _, at := range ts {
		if !at.Before(since) {
			n++
		}
	}
	return n
}

// When timeout equals interval, a server that times out used to be probed every ~1.04 intervals:
// the next probe waited for the next scan after the timeout, and the lateness added up. The
// next due time comes from the schedule, so the period is the interval.
func TestTimeoutEqualToIntervalKeepsThePeriod(t *testing.T) {
	bad := startRecBackend(t)
	bad.blackHole.Store(true)
	p := startRecProxy(t, checkConf{workers: 1, interval: "200ms", timeout: "200ms", rise: 1, fall: 1}, []*recBackend{bad})
	p.eventually("the server down", 10*time.Second, func(d status.Document) bool {
		b, _ := backendState(d, bad.Addr)
		return b.State == "down" && b.Checks >= 3
	})
	start := time.Now()
	time.Sleep(6 * time.Second)
	end := time.Now()
	n := 0
	for _, at := range bad.Probes() {
		if at.After(start) && at.Before(end) {
			n++
		}
	}
	// 6 s at 200 ms is 30 probes; a drift of 4% (the old behaviour, or worse) gives 28 or fewer.
	if n < 29 || n > 31 {
		t.Errorf("%d probes in 6s at interval = timeout = 200ms, want 30 (29-31)", n)
	}
}

// After -s quit a new client used to be accepted and then reset when the master exited: the
// master kept its copy of the listening socket. Now a new connection is refused at once while a
// request in flight still completes.
func TestQuitRefusesNewConnectionsWhileRequestsFinish(t *testing.T) {
	for _, steering := range []string{"shared", "auto"} {
		t.Run(steering, func(t *testing.T) {
			b := startRecBackend(t)
			b.slowDelay = 3 * time.Second
			p := startRecProxy(t, checkConf{workers: 2, interval: "500ms", timeout: "200ms", rise: 1, fall: 1, top: fmt.Sprintf("steering = %q", steering)}, []*recBackend{b})
			p.eventually("backend up", 10*time.Second, func(d status.Document) bool {
				s, _ := backendState(d, b.Addr)
				return s.State == "up"
			})
			type answer struct {
				body string
				err  error
			}
			got := make(chan answer, 1)
			go func() {
				c := &http.Client{Timeout: 10 * time.Second}
				resp, err := c.Get("http://" + p.listen + "/slow")
				if err != nil {
					got <- answer{err: err}
					return
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				got <- answer{body: string(body), err: err}
			}()
			deadline := time.Now().Add(5 * time.Second)
			for b.slowSeen.Load() == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the slow request never reached the backend")
				}
				time.Sleep(10 * time.Millisecond)
			}
			quit := exec.Command(bin.hcproxy, "-c", p.config, "-s", "quit")
			if out, err := quit.CombinedOutput(); err != nil {
				t.Fatalf("hcproxy -s quit: %v\n%s", err, out)
			}
			quitAt := time.Now()
			for {
				c, err := net.DialTimeout("tcp", p.listen, time.Second)
				if errors.Is(err, syscall.ECONNREFUSED) {
					break
				}
				if err == nil {
					c.Close()
				}
				if time.Since(quitAt) > time.Second {
					t.Fatalf("a new connection is still not refused %v after -s quit (last: %v)", time.Since(quitAt).Round(time.Millisecond), err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			refusedIn := time.Since(quitAt)
			select {
			case a := <-got:
				if a.err != nil || a.body != "slow\n" {
					t.Fatalf("the request in flight at quit: %q, %v", a.body, a.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the request in flight at quit never finished")
			}
			t.Logf("refused %v after quit", refusedIn.Round(time.Millisecond))
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Fatal("master did not exit after the drain")
			}
		})
	}
}

// gaps returns the gaps between consecutive times in ts within [from, to], with their start.
func gapsBetween(ts []time.Time, from, to time.Time) (starts []time.Time, gaps []time.Duration) {
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	var last time.Time
	for _, at := range ts {
		if at.Before(from) || at.After(to) {
			continue
		}
		if !last.IsZero() {
			starts = append(starts, last)
			gaps = append(gaps, at.Sub(last))
		}
		last = at
	}
	return starts, gaps
}

// Every interval at every backend has exactly one probe across 20 reloads, kill -9 of workers, a
// hung owner (SIGSTOP until its lease lapses, then SIGCONT) and a master restart (kill -9 and
// start again): no check lost (a gap of two intervals) or doubled (two probes in one). The
// exceptions are the ones the rule allows: a probe of a killed owner that had reached the
// backend (its check is made again at once), and the lease of a hung owner.
func TestNoCheckLostOrDoubledAcrossHandovers(t *testing.T) {
	const (
		iv      = 500 * time.Millisecond
		timeout = 300 * time.Millisecond
		lease   = iv + timeout + 2*time.Second // worker.leaseFor
	)
	var bs []*recBackend
	for i := 0; i < 6; i++ {
		bs = append(bs, startRecBackend(t))
	}
	bs[4].healthDelay = 200 * time.Millisecond // probes in flight for most of a handover
	bs[5].blackHole.Store(true)                // probes that take their whole timeout
	p := startRecProxy(t, checkConf{workers: 3, interval: "500ms", timeout: "300ms", rise: 2, fall: 2}, bs)
	p.eventually("every backend checked", 10*time.Second, func(d status.Document) bool {
		for _, b := range d.Backends {
			if b.Checks < 2 {
				return false
			}
		}
		return len(d.Backends) == len(bs)
	})
	start := time.Now()
	before := p.dump()

	// 20 reloads, each once the previous generation is published.
	gen := p.dump().Generation
	for i := 0; i < 20; i++ {
		p.signal(syscall.SIGHUP)
		gen++
		p.eventually(fmt.Sprintf("generation %d", gen), 10*time.Second, func(d status.Document) bool {
			return d.Generation >= gen && readyWorkers(d) == 3
		})
		time.Sleep(300 * time.Millisecond)
	}

	// kill -9 of four workers, one at a time.
	var kills []time.Time
	for i := 0; i < 4; i++ {
		d := p.waitWorkers(3)
		pid := 0
		for _, w := range d.Workers {
			if w.State == "ready" && w.Generation == d.Generation {
				pid = w.Pid
			}
		}
		kills = append(kills, time.Now())
		syscall.Kill(pid, syscall.SIGKILL)
		p.eventually("the killed worker replaced", 10*time.Second, func(d status.Document) bool {
			return !alive(pid) && readyWorkers(d) == 3
		})
		time.Sleep(time.Second)
	}

	// A hung owner: its checks are taken by lease; resumed, it probes none of them.
	d := p.waitWorkers(3)
	hung := 0
	for _, b := range d.Backends {
		if b.OwnerPid != 0 {
			hung = b.OwnerPid
		}
	}
	stopped := time.Now()
	if err := syscall.Kill(hung, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	p.eventually("the hung worker's checks taken by lease", 10*time.Second, func(d status.Document) bool {
		for _, b := range d.Backends {
			if b.OwnerPid == hung || b.OwnerPid == 0 {
				return false
			}
		}
		return true
	})
	syscall.Kill(hung, syscall.SIGCONT)
	time.Sleep(1500 * time.Millisecond)

	// A master restart: kill -9, and start again at once, as a supervisor would.
	masterKilled := time.Now()
	old := p.cmd.Process.Pid
	p.cmd.Process.Signal(syscall.SIGKILL)
	for !zombie(old) && time.Since(masterKilled) < 5*time.Second {
		time.Sleep(5 * time.Millisecond)
	}
	// A new master of its own (the old one's Wait ends only when its workers have exited).
	p2 := &proxy{t: t, dir: p.dir, config: p.config, listen: p.listen, status: p.status, log: &syncBuffer{}}
	p2.start()
	t.Cleanup(p2.kill)
	p2.waitWorkers(3)
	t.Logf("the new master's workers ready %v after the old master's kill (orphans keep their checks for worker.successorWait)", time.Since(masterKilled).Round(time.Millisecond))
	time.Sleep(3 * time.Second)
	end := time.Now()
	after := p2.dump()

	slack := iv / 4 // worker.lateSlack
	jitter := 100 * time.Millisecond
	short, long := iv-slack-jitter, iv+slack+jitter
	for i, b := range bs {
		starts, gaps := gapsBetween(b.Probes(), start, end)
		usedKill := map[int]bool{}
		usedStop := false
		for k, g := range gaps {
			at := starts[k]
			switch {
			case g < short:
				// Allowed once per kill: the killed owner's probe reached the backend just
				// before the kill, and the new owner made the check again.
				ok := false
				for j, kt := range kills {
					if !usedKill[j] && !at.Before(kt.Add(-timeout-jitter)) && !at.After(kt) {
						usedKill[j], ok = true, true
						break
					}
				}
				if !ok {
					t.Errorf("backend %d: two probes %v apart at %v (reloads from 0s, kills at %v, stop at %v, master kill at %v): a check doubled",
						i, g.Round(time.Millisecond), at.Sub(start).Round(time.Millisecond), offsets(kills, start), stopped.Sub(start).Round(time.Millisecond), masterKilled.Sub(start).Round(time.Millisecond))
				}
			case g > long:
				// Allowed once: the hung owner's lease.
				if !usedStop && !at.Before(stopped.Add(-iv-jitter)) && !at.After(stopped) && g <= lease+iv+jitter {
					usedStop = true
					continue
				}
				t.Errorf("backend %d: no probe for %v from %v (reloads from 0s, kills at %v, stop at %v, master kill at %v): a check lost",
					i, g.Round(time.Millisecond), at.Sub(start).Round(time.Millisecond), offsets(kills, start), stopped.Sub(start).Round(time.Millisecond), masterKilled.Sub(start).Round(time.Millisecond))
			}
		}
		// Every probe that reached it was recorded, but for those of killed or hung owners and
		// one in flight at each end of the window.
		b0, _ := backendState(before, b.Addr)
		b1, _ := backendState(after, b.Addr)
		arrived, recorded := countSince(b.Probes(), start)-countSince(b.Probes(), end), int(b1.Checks-b0.Checks)
		if d := arrived - recorded; d < -2 || d > len(kills)+1+2 {
			t.Errorf("backend %d: %d probes reached it, %d results recorded: checks lost", i, arrived, recorded)
		}
		t.Logf("backend %d: %d probes in %v, %d recorded", i, arrived, end.Sub(start).Round(time.Millisecond), recorded)
	}
}

func offsets(ts []time.Time, from time.Time) []time.Duration {
	var out []time.Duration
	for _, at := range ts {
		out = append(out, at.Sub(from).Round(time.Millisecond))
	}
	return out
}

// zombie reports whether pid has exited (and not been reaped yet) or is gone.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}
