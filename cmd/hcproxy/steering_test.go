package main

// Listener steering (steering = "bpf" | "shared" | "auto") and privilege dropping (user = ...)
// with the real binary.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"hcproxy/internal/load"
	"hcproxy/status"
)

func TestSteeringBPFKillUnderLoad(t *testing.T) {
	p := startProxy(t, proxyOpts{workers: 2, top: `steering = "bpf"`}, startBackends(t, 2))
	if !strings.Contains(p.log.String(), "steering=bpf") {
		t.Fatalf("the log does not say steering=bpf:\n%s", p.log.String())
	}
	killUnderLoad(t, p)
	// Each worker has its own listening socket, and the hash spreads new connections over both
	// (the respawned workers were added to the live list).
	spread := connsPerWorker(t, p, 40)
	if len(spread.listen) != 2 {
		t.Errorf("bpf: the workers hold %d distinct listening sockets, want 2 (one each)", len(spread.listen))
	}
	for pid, n := range spread.conns {
		if n == 0 {
			t.Errorf("bpf: worker %d got none of 40 new connections (%v)", pid, spread.conns)
		}
	}
}

func TestSteeringSharedKillUnderLoad(t *testing.T) {
	p := startProxy(t, proxyOpts{workers: 2, top: `steering = "shared"`}, startBackends(t, 2))
	if !strings.Contains(p.log.String(), "steering=shared") {
		t.Fatalf("the log does not say steering=shared:\n%s", p.log.String())
	}
	killUnderLoad(t, p)
	if spread := connsPerWorker(t, p, 40); len(spread.listen) != 1 {
		t.Errorf("shared: the workers hold %d distinct listening sockets, want 1", len(spread.listen))
	}
}

// fresh is one request on a new connection.
type fresh struct {
	start, end time.Time
	err        error
}

// killUnderLoad runs a bounded keep-alive load (8 connections, 6 s) and, beside it, requests on
// new connections, while it kills a worker with SIGKILL every 1.5 s (3 kills). Only requests in
// flight on the killed worker's connections may fail: no dial error, no hang, and every request
// on a connection made after a kill succeeds.
func killUnderLoad(t *testing.T, p *proxy) {
	const (
		conns    = 8
		duration = 6 * time.Second
		kills    = 3
		every    = 1500 * time.Millisecond
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	var res load.Result
	var took time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		res = load.Run(ctx, load.Options{Addr: p.listen, Conns: conns, Duration: duration})
		took = time.Since(start)
	}()
	var mu sync.Mutex
	var fr []fresh
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
		for {
			select {
			case <-stop:
				return
			default:
			}
			f := fresh{start: time.Now()}
			resp, err := c.Get("http://" + p.listen + "/")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("status %d", resp.StatusCode)
				}
			}
			f.end, f.err = time.Now(), err
			mu.Lock()
			fr = append(fr, f)
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()

	var killed []time.Time
	time.Sleep(time.Second)
	for i := 0; i < kills; i++ {
		d := p.waitWorkers(2)
		var pid int
		for _, w := range d.Workers {
			if w.State == "ready" && w.Generation == d.Generation {
				pid = w.Pid
				break
			}
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill worker %d: %v", pid, err)
		}
		killed = append(killed, time.Now())
		if i < kills-1 {
			time.Sleep(every)
		}
	}
	time.Sleep(duration - time.Second - time.Duration(kills-1)*every)
	close(stop)
	wg.Wait()

	// Requests on new connections: those that started after a kill (by a margin for the signal
	// to land) and ended before the next one must all have succeeded.
	var after, afterFailed, spanning, spanningFailed int
	for _, f := range fr {
		span := false
		for _, k := range killed {
			if !f.start.After(k.Add(20*time.Millisecond)) && !f.end.Before(k) {
				span = true
			}
		}
		if span {
			spanning++
			if f.err != nil {
				spanningFailed++
			}
			continue
		}
		after++
		if f.err != nil {
			afterFailed++
			t.Errorf("request on a new connection made at %s (kills at %v) failed: %v", f.start.Format("15:04:05.000"), killed, f.err)
		}
	}
	t.Logf("keep-alive load: %v (took %v); new connections: %d ok-window requests (%d failed), %d spanning a kill (%d failed)",
		res, took.Round(time.Millisecond), after, afterFailed, spanning, spanningFailed)
	if res.Requests < 1000 {
		t.Errorf("only %d requests in %v", res.Requests, duration)
	}
	if n := res.Errors["dial"]; n != 0 {
		t.Errorf("%d dial errors: a connection was refused or timed out", n)
	}
	for kind := range res.Errors {
		switch kind {
		case "dial", "read", "read_eof", "read_body", "write":
		default:
			t.Errorf("unexpected error kind %q", kind)
		}
	}
	// Each connection can lose at most the request in flight when its worker is killed.
	if res.Failed() > conns*kills {
		t.Errorf("%d failed requests: more than one per connection per kill (%d)", res.Failed(), conns*kills)
	}
	// Timeout-freedom, not speed: the load client's deadline per request is 10 s.
	if res.P99 >= 2*time.Second {
		t.Errorf("p99 %v: some requests waited for a deadline", res.P99)
	}
	if took > duration+2*time.Second {
		t.Errorf("the load run took %v (bounded at %v): a request hung", took, duration)
	}
	if after == 0 {
		t.Error("no request on a new connection between the kills")
	}
	if got := strings.Count(p.log.String(), "worker exited unexpectedly"); got != kills {
		t.Errorf("%d unexpected worker exits logged, want %d", got, kills)
	}
	p.waitWorkers(2)
}

// TestSteeringAutoFallsBack runs with BPF refused (the HCPROXY_DISABLE_BPF seam of master's
// steering.go): "auto" logs one warning and serves from one shared socket; "bpf" fails start-up.
func TestSteeringAutoFallsBack(t *testing.T) {
	p := startProxy(t, proxyOpts{workers: 2, env: []string{"HCPROXY_DISABLE_BPF=1"}}, startBackends(t, 2))
	log := p.log.String()
	warn := `level=WARN msg="eBPF listener steering not available, using one shared socket"`
	if got := strings.Count(log, warn); got != 1 || !strings.Contains(log, `err="operation not permitted`) {
		t.Errorf("the fallback warning appears %d times, want once:\n%s", got, log)
	}
	if !strings.Contains(log, "steering=shared") {
		t.Errorf("the log does not say steering=shared:\n%s", log)
	}
	for i := 0; i < 20; i++ {
		resp, err := http.Get("http://" + p.listen + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}

	// steering = "bpf" where BPF is refused: start-up fails and says why.
	q := &proxy{t: t, dir: t.TempDir(), listen: freePort(t), status: freePort(t), log: &syncBuffer{}}
	q.config = filepath.Join(q.dir, "hcproxy.toml")
	q.writeConfig(proxyOpts{workers: 1, top: `steering = "bpf"`}, startBackends(t, 1))
	cmd := exec.Command(bin.hcproxy, "-c", q.config)
	cmd.Env = append(os.Environ(), "HCPROXY_DISABLE_BPF=1")
	out, err := runBounded(cmd, 10*time.Second)
	if err == nil || !strings.Contains(out, "eBPF listener steering not available") {
		t.Errorf(`steering = "bpf" without BPF: err %v, output:\n%s`, err, out)
	}
}

// runBounded runs cmd and returns its combined output; it kills it (by pid) after limit.
func runBounded(cmd *exec.Cmd, limit time.Duration) (string, error) {
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return out.String(), err
	case <-time.After(limit):
		cmd.Process.Kill()
		<-done
		return out.String(), fmt.Errorf("still running after %v", limit)
	}
}

// procIDs returns the real uid and gid of pid from /proc/PID/status.
func procIDs(t *testing.T, pid int) (uid, gid string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "Uid:" {
			uid = f[1]
		}
		if len(f) >= 2 && f[0] == "Gid:" {
			gid = f[1]
		}
	}
	return uid, gid
}

func TestUserDropsPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("user = \"nobody\" needs the master to run as root; this test runs as uid " + fmt.Sprint(os.Geteuid()))
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody here: %v", err)
	}
	// The workers re-execute the binary as nobody and open the error_log by path: both must be
	// reachable for nobody (t.TempDir and the binary's directory are 0700).
	if err := os.Chmod(filepath.Dir(bin.hcproxy), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "hcproxy-user")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, dir: dir, config: filepath.Join(dir, "hcproxy.toml"), listen: freePort(t), status: freePort(t), log: &syncBuffer{}}
	p.writeConfig(proxyOpts{workers: 2, top: "user = \"nobody\"\nerror_log = \"hcproxy.log\""}, startBackends(t, 2))
	p.start()
	t.Cleanup(p.kill)
	d := p.waitWorkers(2) // hcctl dump, as root, reads the root-owned table

	if uid, _ := procIDs(t, p.cmd.Process.Pid); uid != "0" {
		t.Errorf("master runs as uid %s, want 0", uid)
	}
	var workers []status.Worker
	for _, w := range d.Workers {
		if w.State == "ready" && w.Generation == d.Generation {
			workers = append(workers, w)
		}
	}
	for _, w := range workers {
		uid, gid := procIDs(t, w.Pid)
		if uid != nobody.Uid || gid != nobody.Gid {
			t.Errorf("worker %d runs as uid %s gid %s, want nobody (%s, %s)", w.Pid, uid, gid, nobody.Uid, nobody.Gid)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "hcproxy.table"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("table is uid %d mode %v, want root's and 0600", st.Uid, fi.Mode().Perm())
	}
	fi, err = os.Stat(filepath.Join(dir, "hcproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fmt.Sprint(st.Uid) != nobody.Uid {
		t.Errorf("error_log is owned by uid %d, want nobody's %s", st.Uid, nobody.Uid)
	}
	for i := 0; i < 10; i++ {
		resp, err := http.Get("http://" + p.listen + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "hcproxy.log"))
	if !strings.Contains(string(b), "worker ready") {
		t.Errorf("the workers did not log to the error_log they got from the master:\n%s", b)
	}
}

// TestUserNeedsRoot runs the master as nobody with user = "nobody": start-up fails and says why.
func TestUserNeedsRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to start the master as another user")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody here: %v", err)
	}
	if err := os.Chmod(filepath.Dir(bin.hcproxy), 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "hcproxy-user")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	p := &proxy{t: t, dir: dir, config: filepath.Join(dir, "hcproxy.toml"), listen: freePort(t), status: freePort(t)}
	p.writeConfig(proxyOpts{workers: 1, top: `user = "nobody"`}, startBackends(t, 1))
	var uid, gid uint32
	fmt.Sscan(nobody.Uid, &uid)
	fmt.Sscan(nobody.Gid, &gid)
	cmd := exec.Command(bin.hcproxy, "-c", p.config)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid}}
	out, err := runBounded(cmd, 10*time.Second)
	if err == nil || !strings.Contains(out, `user = "nobody" needs the master to run as root`) {
		t.Errorf("master as nobody with user = \"nobody\": err %v, output:\n%s", err, out)
	}
}

type spread struct {
	listen map[string]bool // inodes of the listening sockets the workers hold
	conns  map[int]int     // connections accepted, by worker pid
}

// connsPerWorker opens n keep-alive connections to p, makes one request on each, and returns
// while they are open which worker holds each (from /proc/PID/fd and /proc/net/tcp).
func connsPerWorker(t *testing.T, p *proxy, n int) spread {
	t.Helper()
	d := p.waitWorkers(2)
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", p.listen, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		resp.Body.Close()
	}
	_, port, _ := net.SplitHostPort(p.listen)
	listen, established := map[string]bool{}, map[string]bool{}
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 10 {
			continue
		}
		var lp int
		fmt.Sscanf(f[1][strings.IndexByte(f[1], ':')+1:], "%X", &lp)
		if fmt.Sprint(lp) != port {
			continue
		}
		switch f[3] {
		case "0A":
			listen[f[9]] = true
		case "01":
			established[f[9]] = true
		}
	}
	s := spread{listen: map[string]bool{}, conns: map[int]int{}}
	for _, w := range d.Workers {
		if w.State != "ready" || w.Generation != d.Generation {
			continue
		}
		s.conns[w.Pid] = 0
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", w.Pid))
		for _, fd := range fds {
			link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", w.Pid, fd.Name()))
			if !strings.HasPrefix(link, "socket:[") || err != nil {
				continue
			}
			ino := strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")
			if listen[ino] {
				s.listen[ino] = true
			}
			if established[ino] {
				s.conns[w.Pid]++
			}
		}
	}
	total := 0
	for _, c := range s.conns {
		total += c
	}
	t.Logf("%d new connections by worker: %v; listening sockets held by the workers: %d", n, s.conns, len(s.listen))
	if total != n {
		t.Errorf("the workers hold %d of the %d connections", total, n)
	}
	return s
}
