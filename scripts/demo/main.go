// Command hcdemo is the `make run` demo of hcproxy: it starts three local backends (app-1,
// app-2, app-3; app-3 fails its health checks for 8 s, passes for 8 s, over and over), writes a
// config for them, checks it with `hcproxy -t` and runs `hcproxy -c CONFIG` in the foreground
// until Ctrl-C.
//
//	go build -o bin/ ./cmd/... && go run ./scripts/demo
//
// Flags:
//
//	-hcproxy PATH  the hcproxy binary (default bin/hcproxy)
//	-dir DIR       where the config, pid file and table go (default: a new temp dir, removed on exit)
//	-duration D    stop by itself after D (default 0: until SIGINT or SIGTERM)
//
// On SIGINT, SIGTERM or the end of -duration it stops hcproxy gracefully (SIGQUIT to the master,
// SIGKILL after 10 s), closes the backends and exits 0. If hcproxy exits on its own the demo
// exits 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"hcproxy/internal/backend"
)

// The demo's fixed addresses.
const (
	proxyAddr  = "127.0.0.1:8080"
	statusAddr = "127.0.0.1:8081"
	workers    = 2
)

// backends are the demo's backends, in config order; the last one flaps.
var backends = []struct{ name, addr string }{
	{"app-1", "127.0.0.1:19101"},
	{"app-2", "127.0.0.1:19102"},
	{"app-3", "127.0.0.1:19103"},
}

const (
	flapEvery    = 8 * time.Second  // app-3 fails for flapEvery, passes for flapEvery, ...
	readyTimeout = 10 * time.Second // for the proxy to answer after hcproxy started
	quitTimeout  = 10 * time.Second // for a graceful stop before SIGKILL
)

// options are the demo's flags, plus hooks for the test.
type options struct {
	HCProxy  string        // hcproxy binary
	Dir      string        // config, pid file and table; "" makes (and removes) a temp dir
	Duration time.Duration // > 0: stop by itself after this long
	Stdout   io.Writer     // banner, progress and hcproxy's stdout; nil: os.Stdout
	Stderr   io.Writer     // hcproxy's stderr; nil: os.Stderr
	OnReady  func(masterPid int, dir string)
}

func main() {
	var o options
	flag.StringVar(&o.HCProxy, "hcproxy", filepath.Join("bin", "hcproxy"), "the hcproxy `binary`")
	flag.StringVar(&o.Dir, "dir", "", "`directory` for the config, pid file and table (default: a new temp dir, removed on exit)")
	flag.DurationVar(&o.Duration, "duration", 0, "stop by itself after this long (0: until Ctrl-C)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "demo: unexpected argument %q\n", flag.Arg(0))
		flag.Usage()
		os.Exit(2)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	// Kept for the whole run: a second Ctrl-C does not kill the demo half-way through its
	// cleanup (the graceful stop is bounded by quitTimeout anyway).
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stdout, "\ndemo: %v, stopping\n", sig)
		cancel()
	}()

	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(1)
	}
}

// run runs the demo until ctx is done or o.Duration has passed, then stops everything and
// returns nil; it returns an error if the demo cannot start or hcproxy exits on its own.
func run(ctx context.Context, o options) (err error) {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}

	bin, err := exec.LookPath(o.HCProxy)
	if err != nil {
		return fmt.Errorf("hcproxy binary: %w (build it with: go build -o bin/ ./cmd/...)", err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	if err := checkPorts(); err != nil {
		return err
	}

	// The directory. Deferred first, so it is removed last, after hcproxy stopped.
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "hcdemo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return err
	}

	// The backends, and app-3's flapping.
	var bs []*backend.Backend
	defer func() {
		for _, b := range bs {
			b.Close()
		}
	}()
	for _, b := range backends {
		nb, err := backend.Start(b.name, b.addr)
		if err != nil {
			return listenError(b.addr, err)
		}
		bs = append(bs, nb)
	}
	stopFlap := flap(bs[len(bs)-1], o.Stdout)
	defer stopFlap()

	// The config, tested before it runs.
	cfgPath := filepath.Join(dir, "hcproxy.toml")
	if err := os.WriteFile(cfgPath, []byte(configText(dir)), 0o644); err != nil {
		return err
	}
	if out, err := exec.Command(bin, "-t", "-c", cfgPath).CombinedOutput(); err != nil {
		return fmt.Errorf("%s -t -c %s: %v\n%s", bin, cfgPath, err, out)
	}

	// hcproxy in the foreground. In a process group of its own, so a Ctrl-C in the terminal
	// reaches only the demo, which then stops hcproxy gracefully rather than fast.
	cmd := exec.Command(bin, "-c", cfgPath)
	cmd.Stdout, cmd.Stderr = o.Stdout, o.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = time.Second // workers may hold the output pipes a little longer
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start hcproxy: %w", err)
	}
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() { c.err = cmd.Wait(); close(c.done) }()
	pid := cmd.Process.Pid
	defer c.stop(o.Stdout) // on every return below that did not stop it already

	if err := waitReady(ctx, c); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return err
	}
	fmt.Fprintf(o.Stdout, `
hcproxy demo is running (master pid %[1]d, %[2]d workers)
  proxy:        http://%[3]s/        (curl it a few times: app-1, app-2 twice as often, app-3 when it is up)
  status page:  http://%[4]s/status  (app-3 goes down and up every 8 s)
  json:         http://%[4]s/status?format=json
  table:        bin/hcctl --table %[5]s dump
  reload:       kill -HUP %[1]d     (or bin/hcproxy -s reload -c %[6]s)
Ctrl-C stops everything.

`, pid, workers, proxyAddr, statusAddr, filepath.Join(dir, "hcproxy.table"), cfgPath)
	if o.OnReady != nil {
		o.OnReady(pid, dir)
	}

	select {
	case <-c.done:
		return c.exitedError()
	case <-ctx.Done():
		c.stop(o.Stdout)
		return nil
	}
}

// child is the running hcproxy master.
type child struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once it exited and was reaped
	err  error         // from Wait, once done is closed
}

func (c *child) exitedError() error {
	if c.err == nil {
		return fmt.Errorf("hcproxy (pid %d) exited on its own (status 0)", c.cmd.Process.Pid)
	}
	return fmt.Errorf("hcproxy (pid %d) exited on its own: %v", c.cmd.Process.Pid, c.err)
}

// stop stops hcproxy, if it is still running: SIGQUIT (graceful) to the master's pid, then
// SIGKILL to that pid if it has not exited within quitTimeout. Its workers follow their master
// by themselves. It never signals anything but the pid it started.
func (c *child) stop(w io.Writer) {
	select {
	case <-c.done:
		return
	default:
	}
	pid := c.cmd.Process.Pid
	fmt.Fprintf(w, "demo: stopping hcproxy gracefully (SIGQUIT to master pid %d)\n", pid)
	if err := c.cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		fmt.Fprintf(w, "demo: SIGQUIT to pid %d: %v\n", pid, err)
	}
	t := time.NewTimer(quitTimeout)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		fmt.Fprintf(w, "demo: hcproxy did not stop within %v, SIGKILL to pid %d\n", quitTimeout, pid)
		c.cmd.Process.Kill()
		<-c.done
	}
	if c.err != nil {
		fmt.Fprintf(w, "demo: hcproxy stopped: %v\n", c.err)
	} else {
		fmt.Fprintln(w, "demo: hcproxy stopped")
	}
}

// waitReady polls the proxy until it answers with any HTTP response, hcproxy exits, ctx is done
// or readyTimeout has passed.
func waitReady(ctx context.Context, c *child) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+proxyAddr+"/", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return nil
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("the proxy did not answer on http://%s/ within %v: %v", proxyAddr, readyTimeout, last)
		}
		select {
		case <-c.done:
			return c.exitedError()
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// flap makes b fail its health checks for flapEvery, pass for flapEvery, and so on, starting
// with failing; the returned func stops it and waits for it to be stopped.
func flap(b *backend.Backend, w io.Writer) (stop func()) {
	b.SetFailing(true)
	fmt.Fprintf(w, "demo: %s fails its health checks for %v\n", b.Name, flapEvery)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(flapEvery)
		defer t.Stop()
		failing := true
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				failing = !failing
				b.SetFailing(failing)
				if failing {
					fmt.Fprintf(w, "demo: %s fails its health checks for %v\n", b.Name, flapEvery)
				} else {
					fmt.Fprintf(w, "demo: %s passes its health checks for %v\n", b.Name, flapEvery)
				}
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(quit); wg.Wait() })
	}
}

// checkPorts returns an error naming the first of the demo's addresses that it cannot listen on.
func checkPorts() error {
	addrs := []string{proxyAddr, statusAddr}
	for _, b := range backends {
		addrs = append(addrs, b.addr)
	}
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return listenError(a, err)
		}
		ln.Close()
	}
	return nil
}

func listenError(addr string, err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%s is in use: %w", addr, err)
	}
	return fmt.Errorf("cannot listen on %s: %w", addr, err)
}

// configText is the demo's config (testdata/demo.toml, with pid_file and table in dir).
func configText(dir string) string {
	q := func(s string) string { return strconv.Quote(s) }
	return `# hcproxy demo config, written by scripts/demo (see testdata/demo.toml).
workers = ` + strconv.Itoa(workers) + `
pid_file = ` + q(filepath.Join(dir, "hcproxy.pid")) + `
table = ` + q(filepath.Join(dir, "hcproxy.table")) + `

[status]
listen = ` + q(statusAddr) + `

[[server]]
listen = ` + q(proxyAddr) + `
upstream = "app"

[upstream.app]
servers = [
  ` + q(backends[0].addr) + `,
  { address = ` + q(backends[1].addr) + `, weight = 2 },
  ` + q(backends[2].addr) + `,
]

[upstream.app.check]
type = "http"
uri = "/health"
interval = "1s"
timeout = "500ms"
rise = 2
fall = 2
expect_status = ["200"]
expect_body = "ok"
`
}
