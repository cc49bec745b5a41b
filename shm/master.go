package shm

import (
	"bytes"
	"encoding/binary"
	"os"
	"strconv"
)

// A table outlives its master: hcctl and the status page must tell a live table from one whose
// master stopped or died. The header records the master's pid, its process start time and the
// boot it ran in; the master is running when this boot is that boot and the process with that
// pid has that start time (a later process that reuses the pid has another). A table written
// by an older build records no start time: then a live pid is taken as the master.

// procStart returns the start time of process pid, in clock ticks since boot (field 22 of
// /proc/PID/stat), or 0 when there is no such process, it has exited (a zombie) or it cannot
// be read.
func procStart(pid int) uint64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces and parentheses: the
	// fields after it start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state)
	if len(f) < 20 || string(f[0]) == "Z" || string(f[0]) == "X" {
		return 0 // a zombie has exited: not running
	}
	n, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// MasterRunning reports whether the master that last attached to the table is still running:
// same boot, and its pid names a process with the start time it recorded (any live process
// with that pid, for a table an older build wrote).
func (t *Table) MasterRunning() bool {
	pid := int(t.m.load(hMasterPid))
	if pid <= 0 {
		return false
	}
	id := bootID()
	if t.m.load(hBootID) != binary.LittleEndian.Uint64(id[:8]) || t.m.load(hBootID+8) != binary.LittleEndian.Uint64(id[8:]) {
		return false
	}
	now := procStart(pid)
	if want := t.m.load(hMasterStart); want != 0 {
		return now == want
	}
	return now != 0
}

// MasterAttachedMs returns when the master that last attached did so (Unix ms).
func (t *Table) MasterAttachedMs() int64 { return int64(t.m.load(hMasterMs)) }
