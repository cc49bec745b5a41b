package shm

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// Alloc hands out the lowest free slot first on a fresh table, finds a slot freed below its
// moving start, says the table is full only when it is, and Index agrees with Find.
func TestAllocFreeIndex(t *testing.T) {
	tb, err := OpenMaster(filepath.Join(t.TempDir(), "hc", "table"), 8)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", 1000+i) }
	for i := range 8 {
		got, err := tb.Alloc(7, addr(i), "u", time.Second, 1, Up)
		if err != nil || got != i {
			t.Fatalf("alloc %d: slot %d, %v; want slot %d", i, got, err, i)
		}
	}
	if _, err := tb.Alloc(7, "127.0.0.1:1", "u", time.Second, 1, Up); !errors.Is(err, ErrFull) {
		t.Fatalf("alloc in a full table: %v, want ErrFull", err)
	}
	tb.Free(5)
	tb.Free(2)
	for _, want := range []int{2, 5} {
		got, err := tb.Alloc(9, fmt.Sprintf("127.0.0.2:%d", want), "u", time.Second, 1, Up)
		if err != nil || got != want {
			t.Fatalf("alloc after frees: slot %d, %v; want %d", got, err, want)
		}
	}
	if _, err := tb.Alloc(9, "127.0.0.2:1", "u", time.Second, 1, Up); !errors.Is(err, ErrFull) {
		t.Fatalf("alloc in a full table: %v, want ErrFull", err)
	}
	idx := tb.Index()
	if len(idx) != 8 {
		t.Fatalf("Index has %d slots, want 8", len(idx))
	}
	for k, i := range idx {
		if j, ok := tb.Find(k.Check, k.Addr); !ok || j != i {
			t.Errorf("Index says %v is slot %d, Find says %d, %v", k, i, j, ok)
		}
	}
	if i, ok := idx[SlotKey{9, "127.0.0.2:5"}]; !ok || i != 5 {
		t.Errorf("Index[9, 127.0.0.2:5] = %d, %v; want 5", i, ok)
	}
}
