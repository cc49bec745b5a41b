package main

// The integration tests start the real binaries (built once in TestMain, with -race when
// HCPROXY_RACE=1) in front of real backends on 127.0.0.1, and stop every process they start by
// its pid. The shared part (build, start, table reads, waits, stop, the log on failure) is
// internal/harness; the names below are the ones the tests here use.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hcproxy/internal/backend"
	"hcproxy/internal/harness"
	"hcproxy/internal/syncbuf"
	"hcproxy/status"
)

var (
	bin  struct{ hcproxy, hcctl string }
	bins harness.Binaries
)

func TestMain(m *testing.M) {
	os.Exit(harness.Main(m, func(b harness.Binaries) { bins, bin.hcproxy, bin.hcctl = b, b.Hcproxy, b.Hcctl }))
}

// freePort returns a loopback address nobody listens on right now.
func freePort(t *testing.T) string { return harness.FreeAddr(t) }

func startBackends(t *testing.T, n int) []*backend.Backend { return harness.StartBackends(t, "b", n) }

// proxy is a running hcproxy master: the fields a test sets (dir, config, listen, status, log,
// env) and the process it runs (cmd, done), kept in step with its harness.Proxy.
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
	h      *harness.Proxy
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
	p.harness().WriteConfig(cfg)
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

// harness returns p's harness.Proxy with p's fields and process (a test may have started the
// master itself and set cmd and done).
func (p *proxy) harness() *harness.Proxy {
	if p.h == nil {
		p.h = &harness.Proxy{T: p.t, Bin: bins}
	}
	if p.log == nil {
		p.log = &syncBuffer{}
	}
	p.h.Dir, p.h.Config, p.h.Env, p.h.Log, p.h.Cmd, p.h.Done = p.dir, p.config, p.env, p.log, p.cmd, p.done
	return p.h
}

func (p *proxy) start() {
	p.t.Helper()
	h := p.harness()
	h.Start()
	p.cmd, p.done = h.Cmd, h.Done
}

// kill stops the master and every worker it left, by pid.
func (p *proxy) kill() { p.harness().Stop(10 * time.Second) }

func (p *proxy) workerPids() []int { return p.harness().WorkerPids() }

func (p *proxy) dumpErr() (status.Document, error) { return p.harness().DumpErr() }

func (p *proxy) dump() status.Document {
	p.t.Helper()
	return p.harness().Dump()
}

// eventually polls cond until it holds or the deadline passes.
func (p *proxy) eventually(what string, timeout time.Duration, cond func(status.Document) bool) status.Document {
	p.t.Helper()
	return p.harness().Eventually(what, timeout, cond)
}

// waitWorkers waits until n ready workers of the published generation are in the table.
func (p *proxy) waitWorkers(n int) status.Document {
	p.t.Helper()
	return p.harness().WaitWorkers(n, 20*time.Second)
}

func readyWorkers(d status.Document) int { return harness.ReadyWorkers(d) }

func backendState(d status.Document, addr string) (status.Backend, bool) {
	return harness.BackendState(d, addr)
}

func (p *proxy) signal(sig syscall.Signal) {
	p.t.Helper()
	p.harness().Signal(sig)
}

func alive(pid int) bool { return syscall.Kill(pid, 0) == nil }
