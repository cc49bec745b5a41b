package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"hcproxy/internal/syncbuf"
	"hcproxy/status"
)

// Proxy is an hcproxy master started by a test from the config file in Dir.
type Proxy struct {
	T       testing.TB
	Bin     Binaries
	Dir     string   // the config, the table (hcproxy.table) and the pid file live here
	Config  string   // the config file
	Wrapper []string // the master runs under this command (prlimit ...), if set
	Env     []string // added to the master's environment

	Cmd  *exec.Cmd       // the master process, once started
	Log  *syncbuf.Buffer // the master's and its workers' output
	Done chan struct{}   // closed when the master has exited

	seen map[int]bool // worker pids seen, stopped by Stop if still there
}

// NewProxy returns a Proxy on a new temporary directory, its config file hcproxy.toml not yet
// written.
func NewProxy(t testing.TB, bin Binaries) *Proxy {
	dir := t.TempDir()
	return &Proxy{T: t, Bin: bin, Dir: dir, Config: filepath.Join(dir, "hcproxy.toml"), Log: &syncbuf.Buffer{}}
}

// WriteConfig replaces the config file with text atomically (a reload never reads half a file).
func (p *Proxy) WriteConfig(text string) {
	p.T.Helper()
	tmp := p.Config + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		p.T.Fatal(err)
	}
	if err := os.Rename(tmp, p.Config); err != nil {
		p.T.Fatal(err)
	}
}

// Start starts the master (again, after it exited) with output to Log.
func (p *Proxy) Start() {
	p.T.Helper()
	args := append(append([]string{}, p.Wrapper...), p.Bin.Hcproxy, "-c", p.Config)
	cmd := exec.Command(args[0], args[1:]...)
	if p.Log == nil {
		p.Log = &syncbuf.Buffer{}
	}
	cmd.Stdout, cmd.Stderr = p.Log, p.Log
	if p.Env != nil {
		cmd.Env = append(os.Environ(), p.Env...)
	}
	if err := cmd.Start(); err != nil {
		p.T.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	p.Cmd, p.Done = cmd, done
}

// Pid is the master's pid.
func (p *Proxy) Pid() int { return p.Cmd.Process.Pid }

// Signal sends sig to the master.
func (p *Proxy) Signal(sig syscall.Signal) {
	p.T.Helper()
	if err := p.Cmd.Process.Signal(sig); err != nil {
		p.T.Fatal(err)
	}
}

// TablePath is the path of the master's health table.
func (p *Proxy) TablePath() string { return filepath.Join(p.Dir, "hcproxy.table") }

// DumpErr reads the table with hcctl dump --json.
func (p *Proxy) DumpErr() (status.Document, error) {
	var d status.Document
	out, err := exec.Command(p.Bin.Hcctl, "--table", p.TablePath(), "dump", "--json").Output()
	if err != nil {
		return d, fmt.Errorf("hcctl dump: %w", err)
	}
	err = json.Unmarshal(out, &d)
	return d, err
}

// Dump reads the table or fails the test.
func (p *Proxy) Dump() status.Document {
	p.T.Helper()
	d, err := p.DumpErr()
	if err != nil {
		p.T.Fatal(err)
	}
	return d
}

// Eventually polls the table until cond holds, and fails the test with the last table read if
// timeout passes first.
func (p *Proxy) Eventually(what string, timeout time.Duration, cond func(status.Document) bool) status.Document {
	p.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d, err := p.DumpErr()
		if err == nil && cond(d) {
			return d
		}
		if time.Now().After(deadline) {
			p.T.Fatalf("timed out after %v waiting for %s (err %v); last table: %s", timeout, what, err, brief(d))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// brief renders d for a failure message: all of it, less the servers when there are many.
func brief(d status.Document) string {
	if len(d.Backends) > 20 {
		return fmt.Sprintf("generation %d, master %d, workers %+v, %d servers", d.Generation, d.MasterPid, d.Workers, len(d.Backends))
	}
	return fmt.Sprintf("%+v", d)
}

// WaitWorkers waits until this master has published a generation with n ready workers, and
// remembers their pids for Stop.
func (p *Proxy) WaitWorkers(n int, timeout time.Duration) status.Document {
	p.T.Helper()
	d := p.Eventually(fmt.Sprintf("%d ready workers", n), timeout, func(d status.Document) bool {
		return d.MasterPid == p.Pid() && ReadyWorkers(d) == n
	})
	p.Remember(Children(p.Pid())...)
	return d
}

// WorkerPids returns the pids of the workers in the table (nil if it cannot be read).
func (p *Proxy) WorkerPids() []int {
	d, err := p.DumpErr()
	if err != nil {
		return nil
	}
	var pids []int
	for _, w := range d.Workers {
		pids = append(pids, w.Pid)
	}
	return pids
}

// Remember records worker pids for Stop to stop if they outlive the master.
func (p *Proxy) Remember(pids ...int) {
	if p.seen == nil {
		p.seen = map[int]bool{}
	}
	for _, pid := range pids {
		p.seen[pid] = true
	}
}

// Stop stops the master (TERM; KILL after grace) and then every worker it had that is still
// there (KILL, by pid, only if the pid is still an hcproxy worker), and shows the log's tail
// if the test failed. It does nothing before Start.
func (p *Proxy) Stop(grace time.Duration) {
	if p.Cmd == nil || p.Cmd.Process == nil {
		return
	}
	p.Remember(Children(p.Pid())...)
	p.Remember(p.WorkerPids()...)
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.Done:
	case <-time.After(grace):
		p.Cmd.Process.Kill()
		<-p.Done
	}
	for pid := range p.seen {
		if Running(pid) && IsWorker(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if p.T.Failed() && p.Log != nil {
		p.T.Logf("hcproxy log (tail):\n%s", Tail(p.Log.String(), 32<<10))
	}
}

// Tail returns the last max bytes of s, marked as cut when they are not all of it.
func Tail(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return "...\n" + s[len(s)-max:]
}
