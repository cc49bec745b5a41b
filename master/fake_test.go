package master

// The fakes behind the process seam (sys.go): a clock that moves only when the test says so and
// records every wait asked of it, and worker processes that live inside the test binary. A fake
// worker inherits what a real one inherits (a duplicate of every descriptor the master passes,
// named by HCPROXY_WORKER_FDS), speaks the control protocol on its socket ("ready" out; "drain",
// "stop" and the rest in), reads its generation from the payload, and exits when its lifeline
// reaches EOF, as worker.serve does. Everything else in these tests is real: the table, the
// listening sockets, the pipes, the config file.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hcproxy/internal/handoff"
)

// fakeClock is a clock that moves only on advance.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
	waits  []time.Duration // every d passed to after, in order
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After records d and returns a channel that fires once the clock has moved d on (at once for
// d <= 0).
func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.waits = append(c.waits, d)
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), c: ch})
	return ch
}

// Advance moves the clock d on and fires every timer that is due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if tm.at.After(c.now) {
			kept = append(kept, tm)
			continue
		}
		tm.c <- c.now
	}
	c.timers = kept
}

// Waits returns the waits asked of the clock so far.
func (c *fakeClock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// asked returns how many waits of exactly d were asked so far. A test that must act once a
// particular wait is armed counts before and waits for one more: a timer of the same length
// armed earlier (the first generation's ready timeout, never fired) is still pending.
func (c *fakeClock) asked(d time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, w := range c.waits {
		if w == d {
			n++
		}
	}
	return n
}

// behaviour is what a fake worker does after it started.
type behaviour int

const (
	reportReady  behaviour = iota // reports ready at once
	holdReady                     // reports ready when the test calls releaseReady
	crashAtStart                  // exits with status 1 before it is ready
	neverReady                    // hangs: never reports ready, exits only when told or killed
)

// fakeExit is a fake worker's exit, read as *exec.ExitError is (ExitCode, Sys).
type fakeExit struct{ ws syscall.WaitStatus }

func (e fakeExit) Error() string {
	if e.ws.Signaled() {
		return "signal: " + e.ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(e.ws.ExitStatus())
}
func (e fakeExit) ExitCode() int { return e.ws.ExitStatus() }
func (e fakeExit) Sys() any      { return e.ws }

func exitCode(code int) error {
	if code == 0 {
		return nil
	}
	return fakeExit{syscall.WaitStatus(code << 8)}
}

func killedBy(sig syscall.Signal) error { return fakeExit{syscall.WaitStatus(sig)} }

// fakeWorker is one fake worker process.
type fakeWorker struct {
	pid     int
	payload handoff.Payload
	files   map[string]*os.File // its duplicates of what it inherited, by name
	control net.Conn
	lineFl  int // the file status flags of its lifeline (O_RDONLY for the read end)

	mu   sync.Mutex
	cmds []string // control messages received, in order
	why  string   // why it exited: "drain", "stop", "lifeline", "control closed", "crash", "killed"
	done chan struct{}
	err  error
	once sync.Once
}

func (w *fakeWorker) Pid() int { return w.pid }

func (w *fakeWorker) Wait() error {
	<-w.done
	return w.err
}

// Signal delivers sig: SIGKILL ends the worker; others are recorded as control messages.
func (w *fakeWorker) Signal(sig os.Signal) error {
	select {
	case <-w.done:
		return os.ErrProcessDone
	default:
	}
	if sig == os.Kill {
		w.exit("killed", killedBy(syscall.SIGKILL))
		return nil
	}
	w.mu.Lock()
	w.cmds = append(w.cmds, "signal "+sig.String())
	w.mu.Unlock()
	return nil
}

// exit ends the worker once: its descriptors close (so the master's end of the control socket
// reads EOF) and Wait returns err.
func (w *fakeWorker) exit(why string, err error) {
	w.once.Do(func() {
		w.mu.Lock()
		w.why = why
		w.mu.Unlock()
		if w.control != nil {
			w.control.Close()
		}
		for _, f := range w.files {
			f.Close()
		}
		w.err = err
		close(w.done)
	})
}

// crash makes the worker exit by itself with code.
func (w *fakeWorker) crash(code int) { w.exit("crash", exitCode(code)) }

// releaseReady makes a holdReady worker report ready; it returns once "ready" is written.
func (w *fakeWorker) releaseReady() { io.WriteString(w.control, "ready\n") }

func (w *fakeWorker) exited() (bool, string) {
	select {
	case <-w.done:
		w.mu.Lock()
		defer w.mu.Unlock()
		return true, w.why
	default:
		return false, ""
	}
}

func (w *fakeWorker) got(cmd string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.cmds {
		if c == cmd {
			return true
		}
	}
	return false
}

// fakeOS starts fake workers; behave decides what the next one does.
type fakeOS struct {
	t     *testing.T
	clock *fakeClock

	mu      sync.Mutex
	next    behaviour
	workers []*fakeWorker
	started chan *fakeWorker
}

func newFakeOS(t *testing.T) *fakeOS {
	return &fakeOS{t: t, clock: newFakeClock(), started: make(chan *fakeWorker, 256)}
}

func (f *fakeOS) sys() sys {
	return sys{
		start:   f.start,
		now:     f.clock.Now,
		after:   f.clock.After,
		signals: func(chan<- os.Signal) func() { return func() {} }, // the test sends on m.sigs
	}
}

// behave sets what the workers started from now on do.
func (f *fakeOS) behave(b behaviour) {
	f.mu.Lock()
	f.next = b
	f.mu.Unlock()
}

// all returns every worker started so far.
func (f *fakeOS) all() []*fakeWorker {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*fakeWorker(nil), f.workers...)
}

// start is the seam's start: it inherits spec's descriptors as exec would (a duplicate of
// each, so the master closing its copies changes nothing) and runs the worker's side.
func (f *fakeOS) start(spec procSpec) (process, error) {
	f.mu.Lock()
	b := f.next
	pid := 4_000_000 + len(f.workers) // above any real pid_max default: never a real process
	f.mu.Unlock()
	files, err := inherit(spec)
	if err != nil {
		return nil, err
	}
	w := &fakeWorker{pid: pid, files: files, done: make(chan struct{})}
	if err := w.readPayload(); err != nil {
		closeAll(files)
		return nil, err
	}
	if w.lineFl, err = unix.FcntlInt(files[handoff.FdLifeline].Fd(), unix.F_GETFL, 0); err != nil {
		closeAll(files)
		return nil, err
	}
	if w.control, err = net.FileConn(files[handoff.FdControl]); err != nil {
		closeAll(files)
		return nil, err
	}
	f.mu.Lock()
	f.workers = append(f.workers, w)
	f.mu.Unlock()
	go w.run(b)
	f.started <- w
	return w, nil
}

// inherit duplicates the descriptors named in spec's HCPROXY_WORKER_FDS.
func inherit(spec procSpec) (map[string]*os.File, error) {
	var names string
	for _, kv := range spec.Env {
		if v, ok := strings.CutPrefix(kv, handoff.EnvFds+"="); ok {
			names = v
		}
	}
	files := map[string]*os.File{}
	for _, part := range strings.Split(names, ",") {
		name, num, _ := strings.Cut(part, "=")
		fd, err := strconv.Atoi(num)
		if err != nil || fd < 3 || fd-3 >= len(spec.Files) {
			closeAll(files)
			return nil, fmt.Errorf("bad %s entry %q", handoff.EnvFds, part)
		}
		dup, err := unix.FcntlInt(spec.Files[fd-3].Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			closeAll(files)
			return nil, err
		}
		files[name] = os.NewFile(uintptr(dup), name)
	}
	for _, need := range []string{handoff.FdTable, handoff.FdControl, handoff.FdLifeline, handoff.FdPayload} {
		if files[need] == nil {
			closeAll(files)
			return nil, fmt.Errorf("descriptor %q not passed", need)
		}
	}
	return files, nil
}

func closeAll(files map[string]*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func (w *fakeWorker) readPayload() error {
	f := w.files[handoff.FdPayload]
	st, err := f.Stat()
	if err != nil {
		return err
	}
	return json.NewDecoder(io.NewSectionReader(f, 0, st.Size())).Decode(&w.payload)
}

// run is the worker's side: report ready as b says, obey the control socket, and exit when
// the lifeline reaches EOF.
func (w *fakeWorker) run(b behaviour) {
	go func() {
		var buf [1]byte
		w.files[handoff.FdLifeline].Read(buf[:]) // blocks until every write end is closed
		w.exit("lifeline", nil)
	}()
	switch b {
	case crashAtStart:
		w.crash(1)
		return
	case reportReady:
		io.WriteString(w.control, "ready\n")
	}
	sc := bufio.NewScanner(w.control)
	for sc.Scan() {
		cmd := sc.Text()
		w.mu.Lock()
		w.cmds = append(w.cmds, cmd)
		w.mu.Unlock()
		if cmd == "drain" || cmd == "stop" {
			w.exit(cmd, nil)
			return
		}
	}
	w.exit("control closed", nil)
}

// pending reports whether a timer of exactly d is waiting.
func (c *fakeClock) pending(d time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tm := range c.timers {
		if tm.at.Sub(c.now) == d {
			return true
		}
	}
	return false
}
