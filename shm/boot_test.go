package shm

import (
	"testing"
	"time"
)

// A table written under another boot comes back with its monotonic times cleared (leases lapse,
// ejections end at the next passing check, schedules restart), its health kept.
func TestTableFromAnotherBoot(t *testing.T) {
	tb := heapTable(t, 1)
	tb.syncBoot()
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Down)
	s := tb.Slot(i)
	s.Claim(0, tb.NewToken(1), 1<<62)
	s.SetNextDue(1 << 62)
	s.eject(Now(), time.Hour)
	if tb.syncBoot() {
		t.Fatal("same boot: cleared")
	}
	tb.m.store(hBootID, 12345) // as if written under another boot
	if !tb.syncBoot() {
		t.Fatal("other boot: not cleared")
	}
	if s.Lease() != 0 || s.NextDue() != 0 || s.EjectedUntil() != 0 || s.State().Health() != Down {
		t.Fatalf("after another boot: lease %d due %d eject %d health %v", s.Lease(), s.NextDue(), s.EjectedUntil(), s.State().Health())
	}
}
