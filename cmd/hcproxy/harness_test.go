package main

// The integration tests start the real binaries (built once in TestMain, with -race when
// HCPROXY_RACE=1) in front of real backends on 127.0.0.1, and stop every process they start by
// its pid.

import (
	"encoding/json"
	"fmt"
	"hcproxy/internal/syncbuf"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hcproxy/internal/backend"
	"hcproxy/status"
)

var bin struct{ hcproxy, hcctl string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hcproxy-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.hcproxy, bin.hcctl = filepath.Join(dir, "hcproxy"), filepath.Join(dir, "hcctl")
	args := []string{"build"}
	if os.Getenv("HCPROXY_RACE") == "1" {
		args = append(args, "-race")
	}
	for out, pkg := range map[string]string{bin.hcproxy: "hcproxy/cmd/hcproxy", bin.hcctl: "hcproxy/cmd/hcctl"} {
		cmd := exec.Command("go", append(args, "-o", out, pkg)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, b)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback address nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func startBackends(t *testing.T, n int) []*backend.Backend {
	t.Helper()
	var bs []*backend.Backend
	for i := 0; i < n; i++ {
		b, err := backend.Start(fmt.Sprintf("b%d", i), "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		bs = append(bs, b)
	}
	return bs
}

// proxy is a running hcproxy master.
type proxy struct {
	t      *testing.T
	dir    string
	config string
	listen string
	status string
	cmd    *exec.Cmd
	log    *syncBuffer
	done   chan struct{}
	env    []string // added to the master's environment
}

// syncBuffer collects output written while the test reads it.
type syncBuffer = syncbuf.Buffer

type proxyOpts struct {
	workers  int
	interval string
	rise     int
	fall     int
	extra    string   // appended to the check table
	top      string   // top-level keys, prepended to the config
	server   string   // appended to the [[server]] table
	upstream string   // appended to the [upstream.app] table (before its check table)
	env      []string // added to the master's environment
}

func (o proxyOpts) withDefaults() proxyOpts {
	if o.workers == 0 {
		o.workers = 4
	}
	if o.interval == "" {
		o.interval = "200ms"
	}
	if o.rise == 0 {
		o.rise = 2
	}
	if o.fall == 0 {
		o.fall = 3
	}
	return o
}

func (p *proxy) writeConfig(o proxyOpts, backends []*backend.Backend) {
	p.t.Helper()
	o = o.withDefaults()
	var servers []string
	for _, b := range backends {
		servers = append(servers, strconv.Quote(b.Addr))
	}
	cfg := fmt.Sprintf(`workers = %d
pid_file = "hcproxy.pid"
table = "hcproxy.table"
shutdown_timeout = "10s"
[status]
listen = %q
[[server]]
listen = %q
upstream = "app"
%s
[upstream.app]
servers = [%s]
%s
[upstream.app.check]
uri = "/health"
interval = %q
timeout = "150ms"
rise = %d
fall = %d
expect_body = "ok"
%s
`, o.workers, p.status, p.listen, o.server, strings.Join(servers, ", "), o.upstream, o.interval, o.rise, o.fall, o.extra)
	if o.top != "" {
		cfg = o.top + "\n" + cfg
	}
	if err := os.WriteFile(p.config, []byte(cfg), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// startProxy writes a config for backends and starts the master; it returns once every worker
// is ready and the generation is published.
func startProxy(t *testing.T, o proxyOpts, backends []*backend.Backend) *proxy {
	t.Helper()
	dir := t.TempDir()
	p := &proxy{t: t, dir: dir, config: filepath.Join(dir, "hcproxy.toml"), listen: freePort(t), status: freePort(t), log: &syncBuffer{}, env: o.env}
	p.writeConfig(o, backends)
	p.start()
	t.Cleanup(p.kill)
	p.waitWorkers(o.withDefaults().workers)
	return p
}

func (p *proxy) start() {
	p.t.Helper()
	p.cmd = exec.Command(bin.hcproxy, "-c", p.config)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if p.env != nil {
		p.cmd.Env = append(os.Environ(), p.env...)
	}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.done = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.done) }()
}

// kill stops the master and every worker it left, by pid.
func (p *proxy) kill() {
	workers := p.workerPids()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	for _, pid := range workers {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	if p.t.Failed() {
		p.t.Logf("hcproxy log:\n%s", p.log.String())
	}
}

func (p *proxy) workerPids() []int {
	d, err := p.dumpErr()
	if err != nil {
		return nil
	}
	var pids []int
	for _, w := range d.Workers {
		pids = append(pids, w.Pid)
	}
	return pids
}

func (p *proxy) dumpErr() (status.Document, error) {
	var d status.Document
	out, err := exec.Command(bin.hcctl, "--table", filepath.Join(p.dir, "hcproxy.table"), "dump", "--json").Output()
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

// eventually polls cond until it holds or the deadline passes.
func (p *proxy) eventually(what string, timeout time.Duration, cond func(status.Document) bool) status.Document {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d, err := p.dumpErr()
		if err == nil && cond(d) {
			return d
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("timed out after %v waiting for %s; last table: %+v (err %v)", timeout, what, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitWorkers waits until n ready workers of the published generation are in the table.
func (p *proxy) waitWorkers(n int) status.Document {
	p.t.Helper()
	return p.eventually(fmt.Sprintf("%d ready workers", n), 20*time.Second, func(d status.Document) bool {
		return d.MasterPid == p.cmd.Process.Pid && readyWorkers(d) == n
	})
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

func (p *proxy) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }
