// Package pidfile is the master's pid file: the one master per file (an exclusive flock the
// master holds while it runs, the file never unlinked) and the signals -s and hcctl send it.
// hcctl and hcproxy -s use it without linking the master.
package pidfile

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/gofrs/flock"
)

// ErrRunning is returned when another master holds the pid file.
var ErrRunning = errors.New("pidfile: another hcproxy master is running")

// Lock takes the pid file's lock and writes our pid into it. The file is never unlinked:
// a new master must lock the same inode that an old one may still hold.
func Lock(path string) (*flock.Flock, error) {
	// Never through a symlink: a planted link must not make the root master truncate another file.
	fl := flock.New(path, flock.SetFlag(os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW), flock.SetPermissions(0o600))
	ok, err := fl.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock pid file %s: %w", path, err)
	}
	if !ok {
		pid, _ := Read(path)
		return nil, fmt.Errorf("%w (pid %d holds %s)", ErrRunning, pid, path)
	}
	if err := writePid(path); err != nil {
		fl.Unlock()
		return nil, fmt.Errorf("write pid file %s: %w", path, err)
	}
	return fl, nil
}

// Unlock empties the pid file (so -s finds no master) and releases the lock.
func Unlock(fl *flock.Flock) {
	os.Truncate(fl.Path(), 0)
	fl.Unlock()
}

// Read reads the master's pid from a pid file.
func Read(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return 0, fmt.Errorf("%s is empty: no master is running", path)
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s: not a pid: %q", path, s)
	}
	return pid, nil
}

// Signals maps the -s names to signals, as nginx does.
var Signals = map[string]syscall.Signal{
	"reload": syscall.SIGHUP,
	"quit":   syscall.SIGQUIT,
	"stop":   syscall.SIGTERM,
	"reopen": syscall.SIGUSR1,
}

// Signal sends the named signal to the master whose pid is in pidFile. It refuses when the pid
// file is not locked (a stale file whose pid may now be another process).
func Signal(pidFile, name string) error {
	sig, ok := Signals[name]
	if !ok {
		return fmt.Errorf("unknown signal %q (want reload, quit, stop or reopen)", name)
	}
	pid, err := Read(pidFile)
	if err != nil {
		return err
	}
	fl := flock.New(pidFile)
	if locked, err := fl.TryLock(); err == nil && locked {
		fl.Unlock()
		return fmt.Errorf("%s names pid %d but no master holds it: hcproxy is not running", pidFile, pid)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return fmt.Errorf("signal %s to pid %d: %w", name, pid, err)
	}
	return nil
}

// writePid writes our pid into the (locked) pid file, never through a symlink.
func writePid(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	return errors.Join(err, f.Close())
}
