package main

// systemd is not available here, so these tests play its part: they create the unix datagram
// socket that systemd would pass in NOTIFY_SOCKET, start the real hcproxy with it, and read the
// sd_notify messages with the sender's credentials (SO_PASSCRED), as systemd does to enforce
// NotifyAccess=main.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hcproxy/internal/backend"
	"hcproxy/status"
)

// notifySocket is a fake systemd notification socket.
type notifySocket struct {
	t    *testing.T
	addr string // the NOTIFY_SOCKET value
	conn *net.UnixConn
}

// sdMessage is one datagram: its fields (KEY=VALUE lines) and the sender's pid.
type sdMessage struct {
	raw    string
	fields map[string]string
	pid    int
}

// listenNotify creates the socket at addr (a path, or "@name" for an abstract socket) with
// SO_PASSCRED set, so every datagram carries its sender's pid.
func listenNotify(t *testing.T, addr string) *notifySocket {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	return &notifySocket{t: t, addr: addr, conn: conn}
}

// next returns the next message, or ok=false when none arrives within timeout.
func (s *notifySocket) next(timeout time.Duration) (msg sdMessage, ok bool) {
	s.t.Helper()
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	s.conn.SetReadDeadline(time.Now().Add(timeout))
	n, oobn, _, _, err := s.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return msg, false
		}
		s.t.Fatalf("read notify socket: %v", err)
	}
	msg = sdMessage{raw: string(buf[:n]), fields: map[string]string{}, pid: -1}
	for _, line := range strings.Split(msg.raw, "\n") {
		if k, v, found := strings.Cut(line, "="); found {
			msg.fields[k] = v
		} else if line != "" {
			s.t.Errorf("malformed notify line %q in %q", line, msg.raw)
		}
	}
	scms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		s.t.Fatalf("parse control message: %v", err)
	}
	for _, scm := range scms {
		if cred, err := unix.ParseUnixCredentials(&scm); err == nil {
			msg.pid = int(cred.Pid)
		}
	}
	return msg, true
}

// expect reads the next message, which must come from pid within timeout and carry key=value
// (value "" matches any value).
func (s *notifySocket) expect(what string, pid int, timeout time.Duration, key, value string) sdMessage {
	s.t.Helper()
	msg, ok := s.next(timeout)
	if !ok {
		s.t.Fatalf("no notify message within %v, expected %s", timeout, what)
	}
	s.t.Logf("notify from pid %d: %q", msg.pid, msg.raw)
	if msg.pid != pid {
		s.t.Errorf("%s: sent by pid %d, not the master (%d): NotifyAccess=main would drop it", what, msg.pid, pid)
	}
	if v, found := msg.fields[key]; !found || (value != "" && v != value) {
		s.t.Fatalf("expected %s (%s=%s), got %q", what, key, value, msg.raw)
	}
	return msg
}

// expectNone asserts that no message arrives within d.
func (s *notifySocket) expectNone(when string, d time.Duration) {
	s.t.Helper()
	if msg, ok := s.next(d); ok {
		s.t.Errorf("unexpected notify message %s, from pid %d: %q", when, msg.pid, msg.raw)
	}
}

// startNotifyProxy is startProxy with NOTIFY_SOCKET=sock in hcproxy's environment; it returns
// as soon as the master runs, without waiting for the workers (that is what READY=1 is for).
func startNotifyProxy(t *testing.T, o proxyOpts, backends []*backend.Backend, sock string) *proxy {
	t.Helper()
	dir := t.TempDir()
	p := &proxy{t: t, dir: dir, config: filepath.Join(dir, "hcproxy.toml"), listen: freePort(t), status: freePort(t), log: &syncBuffer{}}
	p.writeConfig(o, backends)
	p.cmd = exec.Command(bin.hcproxy, "-c", p.config)
	p.cmd.Env = append(withoutEnv(os.Environ(), "NOTIFY_SOCKET"), "NOTIFY_SOCKET="+sock)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	return p
}

func withoutEnv(env []string, key string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// notifyDir is a fresh directory for the socket whose path fits in sun_path (108 bytes).
func notifyDir(t *testing.T) string {
	dir := t.TempDir()
	if len(dir) > 80 {
		var err error
		if dir, err = os.MkdirTemp("", "sd"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	return dir
}

// monotonicNow is CLOCK_MONOTONIC in microseconds.
func monotonicNow(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

// The master tells "systemd" READY=1 only once every worker is ready, RELOADING=1 (with
// MONOTONIC_USEC) then READY=1 around a reload, READY=1 with the failure after a rejected
// reload, and STOPPING=1 at shutdown; every message comes from the master's pid, none from a
// worker, and there are exactly six.
func TestSystemdNotify(t *testing.T) {
	const workers = 3
	sock := listenNotify(t, filepath.Join(notifyDir(t), "notify.sock"))
	bs := startBackends(t, 2)
	p := startNotifyProxy(t, proxyOpts{workers: workers}, bs, sock.addr)
	master := p.cmd.Process.Pid

	// 1. READY=1, and at that moment the table already shows every worker ready.
	ready := sock.expect("READY=1 at start", master, 20*time.Second, "READY", "1")
	d := p.dump()
	if d.MasterPid != master || readyWorkers(d) != workers {
		t.Fatalf("READY=1 came before the workers were ready: master %d, %d of %d ready workers of generation %d: %+v",
			d.MasterPid, readyWorkers(d), workers, d.Generation, d.Workers)
	}
	if ready.fields["MAINPID"] != strconv.Itoa(master) {
		t.Errorf("MAINPID=%q, want %d", ready.fields["MAINPID"], master)
	}
	if ready.fields["STATUS"] == "" {
		t.Errorf("READY=1 without STATUS: %q", ready.raw)
	}
	// The workers' environment has no NOTIFY_SOCKET, so they cannot notify.
	for _, w := range d.Workers {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", w.Pid))
		if err != nil {
			t.Errorf("worker %d environ: %v", w.Pid, err)
			continue
		}
		if bytes.Contains(env, []byte("NOTIFY_SOCKET=")) {
			t.Errorf("worker %d inherited NOTIFY_SOCKET", w.Pid)
		}
	}
	sock.expectNone("while serving", 500*time.Millisecond)

	// 2. A HUP: RELOADING=1 with a MONOTONIC_USEC taken just now, then READY=1 once the new
	// generation is ready.
	gen := d.Generation
	before := monotonicNow(t)
	p.signal(syscall.SIGHUP)
	rel := sock.expect("RELOADING=1 on HUP", master, 5*time.Second, "RELOADING", "1")
	after := monotonicNow(t)
	usec, err := strconv.ParseInt(rel.fields["MONOTONIC_USEC"], 10, 64)
	if err != nil {
		t.Fatalf("MONOTONIC_USEC=%q: %v", rel.fields["MONOTONIC_USEC"], err)
	}
	if usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC=%d is not between the HUP (%d) and its receipt (%d)", usec, before, after)
	}
	reloaded := sock.expect("READY=1 after the reload", master, 20*time.Second, "READY", "1")
	if want := fmt.Sprintf("reloaded generation %d", gen+1); reloaded.fields["STATUS"] != want {
		t.Errorf("STATUS=%q after a reload, want %q", reloaded.fields["STATUS"], want)
	}
	d = p.dump()
	if d.Generation != gen+1 || readyWorkers(d) != workers {
		t.Fatalf("READY=1 after the reload, but the table has generation %d (want %d) with %d ready workers", d.Generation, gen+1, readyWorkers(d))
	}
	gen = d.Generation

	// 3. A HUP with a bad config: RELOADING=1, then READY=1 saying that it failed; the old
	// generation still serves.
	good, err := os.ReadFile(p.config)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(good), `interval = "200ms"`, `interval = "fast"`, 1)
	if err := os.WriteFile(p.config, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	p.signal(syscall.SIGHUP)
	sock.expect("RELOADING=1 on a bad HUP", master, 5*time.Second, "RELOADING", "1")
	failed := sock.expect("READY=1 after a failed reload", master, 5*time.Second, "READY", "1")
	if st := failed.fields["STATUS"]; !strings.Contains(st, "reload failed") || !strings.Contains(st, "interval") {
		t.Errorf("STATUS=%q after a rejected reload, want the failure and its reason", st)
	}
	if d = p.dump(); d.Generation != gen || readyWorkers(d) != workers {
		t.Errorf("a rejected reload changed the generation: %d -> %d, %d ready workers", gen, d.Generation, readyWorkers(d))
	}
	sock.expectNone("after the failed reload", 500*time.Millisecond)

	// 4. SIGTERM: STOPPING=1, then nothing more.
	pids := p.workerPids()
	p.signal(syscall.SIGTERM)
	sock.expect("STOPPING=1 on SIGTERM", master, 5*time.Second, "STOPPING", "1")
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("master did not exit after SIGTERM")
	}
	for _, pid := range pids {
		for deadline := time.Now().Add(5 * time.Second); alive(pid) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
		}
	}
	sock.expectNone("after the stop", 300*time.Millisecond)
}

// An abstract NOTIFY_SOCKET ("@name", what systemd passes nowadays) works too.
func TestSystemdNotifyAbstractSocket(t *testing.T) {
	sock := listenNotify(t, fmt.Sprintf("@hcproxy-test-%d-%d", os.Getpid(), time.Now().UnixNano()))
	bs := startBackends(t, 1)
	p := startNotifyProxy(t, proxyOpts{workers: 2}, bs, sock.addr)
	master := p.cmd.Process.Pid
	sock.expect("READY=1 at start", master, 20*time.Second, "READY", "1")
	if d := p.dump(); readyWorkers(d) != 2 {
		t.Fatalf("READY=1 with %d ready workers", readyWorkers(d))
	}
	p.signal(syscall.SIGQUIT)
	sock.expect("STOPPING=1 on SIGQUIT", master, 5*time.Second, "STOPPING", "1")
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatal("master did not exit after SIGQUIT")
	}
	sock.expectNone("after the stop", 300*time.Millisecond)
}

// Without NOTIFY_SOCKET hcproxy behaves as before (the other integration tests cover this too);
// with one nobody listens on, it logs once and serves anyway.
func TestSystemdNotifySocketGone(t *testing.T) {
	bs := startBackends(t, 1)
	p := startNotifyProxy(t, proxyOpts{workers: 2}, bs, filepath.Join(notifyDir(t), "nobody.sock"))
	p.waitWorkers(2)
	p.signal(syscall.SIGHUP)
	p.eventually("reloaded", 20*time.Second, func(d status.Document) bool { return d.Generation >= 2 && readyWorkers(d) == 2 })
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.log.String(), "sd_notify failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no sd_notify error in the log:\n%s", p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := strings.Count(p.log.String(), "sd_notify failed"); n != 1 {
		t.Errorf("sd_notify error logged %d times, want once", n)
	}
}
