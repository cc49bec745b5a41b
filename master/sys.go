package master

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"
)

// sys is the master's seam to the operating system: it starts worker processes (each a process
// that can be waited for and signalled), reads the clock, and subscribes the master to its
// signals. Run uses osSys; the unit tests put fake processes and a fake clock behind it, so a
// reload, a respawn with backoff and the lifeline are tested without building a binary (the
// same seam as cloudflare/tableflip's env). Everything else the master touches stays real: the
// table, the sockets, the pipes, the payload.
type sys struct {
	// start starts one worker process as spec says. It returns once the process exists; the
	// files in spec may be closed by the caller as soon as it returns.
	start func(spec procSpec) (process, error)
	// now reads the clock (how long a worker lived, how long a reload took).
	now func() time.Time
	// after fires once d has passed (ready timeout, respawn backoff, shutdown deadline).
	after func(d time.Duration) <-chan time.Time
	// signals makes the master's signals (HUP, QUIT, TERM, INT, USR1) arrive on c until stop.
	signals func(c chan<- os.Signal) (stop func())
}

// procSpec is what the master starts a worker with: the executable, its arguments and
// environment, the descriptors it inherits (ExtraFiles order: the first is descriptor 3, as
// named in the worker's environment), its output and its credential.
type procSpec struct {
	Path   string
	Args   []string
	Env    []string
	Files  []*os.File
	Attr   *syscall.SysProcAttr
	Stdout io.Writer
	Stderr io.Writer
}

// process is a started worker process.
type process interface {
	Pid() int
	// Wait blocks until the process has exited and returns nil for exit status 0, else an
	// error that has ExitCode() int (-1 when a signal ended it) and Sys() returning its
	// syscall.WaitStatus, as *exec.ExitError has. It is called once.
	Wait() error
	Signal(sig os.Signal) error
}

// osSys is the real seam: fork and exec, the system clock, signal.Notify.
func osSys() sys {
	return sys{
		start: startOS,
		now:   time.Now,
		after: time.After,
		signals: func(c chan<- os.Signal) func() {
			signal.Notify(c, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
			return func() { signal.Stop(c) }
		},
	}
}

func startOS(spec procSpec) (process, error) {
	cmd := &exec.Cmd{Path: spec.Path, Args: spec.Args, Env: spec.Env, ExtraFiles: spec.Files,
		SysProcAttr: spec.Attr, Stdout: spec.Stdout, Stderr: spec.Stderr}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return osProcess{cmd}, nil
}

// osProcess is a process started by os/exec.
type osProcess struct{ cmd *exec.Cmd }

func (p osProcess) Pid() int                   { return p.cmd.Process.Pid }
func (p osProcess) Wait() error                { return p.cmd.Wait() }
func (p osProcess) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// killed reports whether a worker's exit (process.Wait's error) was a signal's doing.
func killed(err error) bool {
	var ws interface{ Sys() any }
	if errors.As(err, &ws) {
		if st, ok := ws.Sys().(syscall.WaitStatus); ok {
			return st.Signaled()
		}
	}
	return false
}
