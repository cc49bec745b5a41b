package shm

import (
	"encoding/binary"
	"os"
	"strings"
)

// The table keeps CLOCK_MONOTONIC times (schedules, leases, ejections, heartbeats), which mean
// nothing after a reboot. A table on a filesystem that survives reboots would otherwise come back
// with leases that never lapse and ejections that last the previous uptime, so the header records
// the kernel's boot id and a master that finds another one clears every monotonic time.

// bootID reads /proc/sys/kernel/random/boot_id as 16 bytes (zeros if it cannot).
func bootID() [16]byte {
	var id [16]byte
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return id
	}
	hex := strings.ReplaceAll(strings.TrimSpace(string(b)), "-", "")
	for i := 0; i < 16 && 2*i+1 < len(hex); i++ {
		id[i] = unhex(hex[2*i])<<4 | unhex(hex[2*i+1])
	}
	return id
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}

// syncBoot clears the monotonic times if they were written under another boot, and records this
// boot. Only the master calls it, before any worker attaches. It reports whether it cleared.
func (t *Table) syncBoot() bool {
	id := bootID()
	lo, hi := binary.LittleEndian.Uint64(id[:8]), binary.LittleEndian.Uint64(id[8:])
	if t.m.load(hBootID) == lo && t.m.load(hBootID+8) == hi {
		return false
	}
	for i := 0; i < t.slots; i++ {
		s := t.Slot(i)
		for _, off := range []int{sLease, sNextDue, sPassWindow, sEjectUntil, sUpSinceNs} {
			s.m.store(s.off+off, 0)
		}
	}
	for i := 0; i < WorkerCap; i++ {
		t.m.store(workerOff(i)+wBeatNs, 0)
	}
	t.m.store(hBootID, lo)
	t.m.store(hBootID+8, hi)
	return true
}
