package shm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOpenMasterCreatesKeepsAndRefuses(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.table")
	tb, err := OpenMaster(path, 8)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("table mode %v, want 0600", st.Mode().Perm())
	}
	i, _ := tb.Alloc(5, "127.0.0.1:1", "app", time.Second, 1, Down)
	tb.Close()
	tb.Close() // idempotent

	// Reopened by a new master: state kept.
	tb, err = OpenMaster(path, 4)
	if err != nil {
		t.Fatal(err)
	}
	if j, ok := tb.Find(5, "127.0.0.1:1"); !ok || j != i || tb.Slot(j).State().Health() != Down {
		t.Fatalf("state not kept across reopen: %v %v", ok, tb.Slot(j).State().Health())
	}
	tb.Close()

	if _, err := OpenMaster(path, 16); err == nil {
		t.Fatal("a table smaller than configured must be refused, not silently resized")
	}

	// Read-only attach works and sees the slot.
	ro, err := Open(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if sn := ro.Snapshot(); len(sn.Slots) != 1 || sn.Slots[0].Address != "127.0.0.1:1" {
		t.Fatalf("snapshot %+v", sn)
	}
	ro.Close()
}

func TestOpenRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "real")
	os.WriteFile(target, nil, 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(target, link)
	if _, err := OpenMaster(link, 1); err == nil {
		t.Fatal("OpenMaster followed a symlink")
	}
	if _, err := Open(link, true); err == nil {
		t.Fatal("Open followed a symlink")
	}
}

func TestOpenMasterRefusesForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(path, []byte("precious data, not a table"), 0o600)
	if _, err := OpenMaster(path, 1); !errors.Is(err, ErrNotTable) {
		t.Fatalf("foreign file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious data, not a table" {
		t.Fatal("a foreign file was overwritten")
	}
}

func TestOpenCorrupt(t *testing.T) {
	fresh := func() []byte {
		path := filepath.Join(t.TempDir(), "t")
		tb, err := OpenMaster(path, 2)
		if err != nil {
			t.Fatal(err)
		}
		tb.Close()
		b, _ := os.ReadFile(path)
		return b
	}
	put := func(b []byte, off int, v uint64) []byte { binary.LittleEndian.PutUint64(b[off:], v); return b }
	cases := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short header", fresh()[:100], ErrTruncated},
		{"bad magic", put(fresh(), hMagic, 42), ErrNotTable},
		{"other version", put(fresh(), hVersion, 99), ErrVersion},
		{"slot size", put(fresh(), hSlotSize, 64), ErrCorrupt},
		{"capacity huge", put(fresh(), hSlotCap, 1<<40), ErrCorrupt},
		{"checksum", put(fresh(), hFileSize, uint64(Size(2))+0) /* unchanged */, nil},
		{"checksum tampered", put(fresh(), hChecksum, 1), ErrCorrupt},
		{"truncated slots", fresh()[:Size(2)-1], ErrTruncated},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "t")
			os.WriteFile(path, c.data, 0o600)
			tb, err := Open(path, true)
			if c.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				tb.Close()
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// FuzzAttach feeds arbitrary table files to the attach checks: they must accept the file or
// refuse it with an error, never panic, and a table they accept must be readable in full within
// its bounds. It runs on heap memory (the same checks Open runs before it maps anything), so the
// fuzzer is not slowed by files and mappings; TestOpenCorrupt covers the file path.
func FuzzAttach(f *testing.F) {
	path := filepath.Join(f.TempDir(), "seed")
	tb, err := OpenMaster(path, 1)
	if err != nil {
		f.Fatal(err)
	}
	tb.Alloc(1, "127.0.0.1:80", "app", time.Second, 1, Up)
	tb.Close()
	good, _ := os.ReadFile(path)
	f.Add(good)                                  // a valid one-slot table with one server
	f.Add(good[:HeaderSize])                     // header only: truncated
	f.Add([]byte("HCPTBL01"))                    // magic only
	f.Add(make([]byte, 9000))                    // zeros
	f.Add(append(good[:len(good):len(good)], 0)) // one byte too many: still valid
	f.Fuzz(func(t *testing.T, data []byte) {
		slots, err := checkHeader(data[:min(len(data), HeaderSize)], int64(len(data)))
		if err != nil {
			return
		}
		if Size(slots) > len(data) {
			t.Fatalf("accepted %d slots in a %d-byte file", slots, len(data))
		}
		m := heapMem(Size(slots))
		copy(m, data)
		tb := &Table{m: m, slots: slots, readOnly: true}
		for _, s := range tb.Snapshot().Slots {
			if len(s.Address) >= addrLen || len(s.Label) >= labelLen || len(s.Detail) >= detailLen {
				t.Fatalf("field longer than its slot: %+v", s)
			}
		}
	})
}

// After an upgrade, a master replaces an older build's table (a fresh one, Replaced naming the
// old layout) instead of refusing to start; a newer build's table is refused and left as it is.
func TestOpenMasterReplacesOlderLayout(t *testing.T) {
	made := func() (string, []byte) {
		path := filepath.Join(t.TempDir(), "t")
		tb, err := OpenMaster(path, 2)
		if err != nil {
			t.Fatal(err)
		}
		tb.Alloc(1, "127.0.0.1:80", "app", time.Second, 1, Up)
		tb.Close()
		b, _ := os.ReadFile(path)
		return path, b
	}
	path, b := made()
	binary.LittleEndian.PutUint64(b[hVersion:], Version-1)
	os.WriteFile(path, b, 0o600)
	tb, err := OpenMaster(path, 2)
	if err != nil {
		t.Fatalf("an older layout: %v, want it replaced", err)
	}
	if tb.Replaced != Version-1 {
		t.Fatalf("Replaced = %d, want %d", tb.Replaced, Version-1)
	}
	if _, found := tb.Find(1, "127.0.0.1:80"); found {
		t.Fatal("the fresh table still holds the old table's server")
	}
	tb.Close()
	if tb, err = Open(path, true); err != nil {
		t.Fatalf("the replacement does not open: %v", err)
	}
	tb.Close()

	path, b = made()
	binary.LittleEndian.PutUint64(b[hVersion:], Version+1)
	os.WriteFile(path, b, 0o600)
	if _, err := OpenMaster(path, 2); !errors.Is(err, ErrVersion) {
		t.Fatalf("a newer layout: %v, want ErrVersion", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, b) {
		t.Fatal("a newer build's table was changed")
	}
}
