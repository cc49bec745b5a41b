package harness

import (
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

// Children, Running and IsWorker on real processes: a child is listed and running until it is
// reaped; only a process with the worker role in its environment is a worker.
func TestChildrenRunningIsWorker(t *testing.T) {
	plain := exec.Command("sleep", "30")
	role := exec.Command("sleep", "30")
	role.Env = append(os.Environ(), workerEnv)
	for _, c := range []*exec.Cmd{plain, role} {
		if err := c.Start(); err != nil {
			t.Skipf("cannot start sleep: %v", err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	}
	kids := Children(os.Getpid())
	for _, c := range []*exec.Cmd{plain, role} {
		if !slices.Contains(kids, c.Process.Pid) || !Running(c.Process.Pid) {
			t.Errorf("child %d: listed %v, running %v", c.Process.Pid, slices.Contains(kids, c.Process.Pid), Running(c.Process.Pid))
		}
	}
	if IsWorker(plain.Process.Pid) || !IsWorker(role.Process.Pid) {
		t.Errorf("IsWorker: plain %v, with %s %v", IsWorker(plain.Process.Pid), workerEnv, IsWorker(role.Process.Pid))
	}
	plain.Process.Signal(syscall.SIGKILL)
	deadline := time.Now().Add(5 * time.Second)
	for Running(plain.Process.Pid) { // a zombie until reaped: not running
		if time.Now().After(deadline) {
			t.Fatalf("killed child %d still running after 5s", plain.Process.Pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if slices.Contains(Children(os.Getpid()), plain.Process.Pid) {
		t.Errorf("killed child %d still listed", plain.Process.Pid)
	}
}
