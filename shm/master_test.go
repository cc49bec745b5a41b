package shm

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A table tells its master from a process that took its pid, and from no process.
func TestMasterRunning(t *testing.T) {
	tb, err := OpenMaster(filepath.Join(t.TempDir(), "table"), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	if tb.MasterRunning() {
		t.Fatal("a table no master attached to has a running master")
	}
	tb.SetMaster(os.Getpid())
	if !tb.MasterRunning() {
		t.Fatal("this process, recorded as the master, is not running")
	}
	tb.m.store(hMasterStart, procStart(os.Getpid())+1) // the pid now names a later process
	if tb.MasterRunning() {
		t.Error("a process with the master's pid but another start time is taken for the master")
	}
	tb.m.store(hMasterStart, 0) // an older build's table: a live pid is the master
	if !tb.MasterRunning() {
		t.Error("older table: the live pid is not taken for the master")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	tb.SetMaster(cmd.Process.Pid) // reaped: gone
	if tb.MasterRunning() {
		t.Error("an exited master is running")
	}
	if procStart(-1) != 0 || procStart(0) != 0 {
		t.Error("procStart of no process")
	}
}
