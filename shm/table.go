package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// Table is an attached health table.
type Table struct {
	m        mem
	f        *os.File
	readOnly bool
	slots    int
	// allocFrom is where Alloc looks for a free slot first (the master's own allocations and
	// frees keep it at or below the lowest free slot it knows; Alloc wraps around all the same).
	allocFrom int
	// Replaced is the layout version of an older build's table that OpenMaster replaced with
	// this fresh one (0: none); the master logs it.
	Replaced uint64
}

// OpenMaster opens the table file at path for a master, or creates and initialises it (mode
// 0600) when there is none; a missing last directory on the path is created, mode 0700. An
// existing table is kept, with its state, if it is valid and holds at least capacity slots. A
// valid table of an older layout version (an older build's, after an upgrade) is replaced by a
// fresh one and Table.Replaced says so; a newer one is refused.
//
// The rules of trust.go hold: no symlink on the path, the directory owned by root or this
// process's effective uid and writable by no one else unless sticky, the file owned by the
// effective uid and writable by no one else. A new table is initialised in a file of its own and
// renamed into place, so a file at path that is not a valid table (empty, short, zero magic,
// anything else) was never a master's: it is refused with ErrNotTable or ErrTruncated, never
// overwritten.
func OpenMaster(path string, capacity int) (*Table, error) {
	if capacity < 1 || capacity > MaxSlots {
		return nil, fmt.Errorf("shm: capacity %d out of range 1..%d", capacity, MaxSlots)
	}
	d, err := openTableDir(path, true)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	euid := os.Geteuid()
	if err := d.check(euid, "this process"); err != nil {
		return nil, err
	}
	for try := 0; ; try++ {
		if _, err := d.lstat(); errors.Is(err, unix.ENOENT) {
			f, err := d.create(capacity, false)
			if errors.Is(err, fs.ErrExist) && try == 0 {
				continue // another process made one meanwhile: open that one, with every check
			}
			if err != nil {
				return nil, err
			}
			return attachMaster(f, d.path, capacity)
		}
		f, err := d.openChecked(unix.O_RDWR, euid, "this process")
		if err != nil {
			return nil, err
		}
		t, err := attachMaster(f, d.path, capacity)
		var ve *VersionError
		if !errors.As(err, &ve) || ve.Found > Version {
			return t, err
		}
		// An older build's table, ours by every rule of trust.go: replaced by a fresh one (its
		// state cannot be read by this build), rather than a master that will not start after
		// an upgrade. The caller says so (Table.Replaced).
		if f, err = d.create(capacity, true); err != nil {
			return nil, err
		}
		if t, err = attachMaster(f, d.path, capacity); err == nil {
			t.Replaced = ve.Found
		}
		return t, err
	}
}

// VersionError is a table of another layout version than this build's (errors.Is ErrVersion).
type VersionError struct{ Found uint64 }

func (e *VersionError) Error() string {
	return fmt.Sprintf("%v: %d (this build reads %d)", ErrVersion, e.Found, Version)
}

func (e *VersionError) Is(target error) bool { return target == ErrVersion }

// attachMaster attaches the master's table file f and checks its capacity.
func attachMaster(f *os.File, path string, capacity int) (*Table, error) {
	t, err := attach(f, false)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w (not overwritten: remove it to start with a fresh table)", path, err)
	}
	if t.slots < capacity {
		t.Close()
		return nil, fmt.Errorf("shm: %s holds %d slots, fewer than the %d configured; remove it to recreate (health state is lost)", path, t.slots, capacity)
	}
	t.syncBoot()
	return t, nil
}

// Open attaches an existing table file, read-only (hcctl dump, tail) or read-write (hcctl set).
// It never follows a symlink at path. Read-only, anyone the file's mode lets read may attach.
// Read-write, the table must pass the master's checks (trust.go) for the user that owns it, the
// master that made it; whether the caller may write it is then the kernel's decision (an error
// wrapping fs.ErrPermission).
func Open(path string, readOnly bool) (*Table, error) {
	if !readOnly {
		return openWritable(path)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: open %s: %w", path, err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("shm: %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	t, err := attach(f, true)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

func openWritable(path string) (*Table, error) {
	d, err := openTableDir(path, false)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	st, err := d.lstat()
	if err != nil {
		return nil, fmt.Errorf("shm: open %s: %w", path, err)
	}
	owner := int(st.Uid)
	if err := d.check(owner, "the table's owner"); err != nil {
		return nil, err
	}
	f, err := d.openChecked(unix.O_RDWR, owner, "the owner it had when checked")
	if err != nil {
		return nil, err
	}
	t, err := attach(f, false)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// AttachFile attaches a table from an open file (a worker's inherited descriptor). The table takes
// ownership of f.
func AttachFile(f *os.File, readOnly bool) (*Table, error) { return attach(f, readOnly) }

// initialise sizes the new, empty file fd for capacity slots and writes a fresh header into it,
// the magic last.
func initialise(fd, capacity int) error {
	size := Size(capacity)
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return err
	}
	m, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	defer unix.Munmap(m)
	formatHeader(mem(m), capacity)
	return unix.Msync(m, unix.MS_SYNC)
}

// formatHeader writes a fresh header into m (already zeroed), the magic last.
func formatHeader(m mem, capacity int) {
	m.store(hVersion, Version)
	m.store(hHeaderSize, HeaderSize)
	m.store(hSlotSize, SlotSize)
	m.store(hSlotCap, uint64(capacity))
	m.store(hWorkerCap, WorkerCap)
	m.store(hFileSize, uint64(Size(capacity)))
	m.store(hEventCap, EventCap)
	m.store(hEventSize, EventSize)
	m.store(hChecksum, headerChecksum(m))
	m.store(hMagic, Magic)
}

func headerChecksum(m mem) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for off := hVersion; off <= hEventSize; off += 8 {
		v := m.load(off)
		for i := range b {
			b[i] = byte(v >> (8 * i))
		}
		h.Write(b[:])
	}
	return h.Sum64()
}

func attach(f *os.File, readOnly bool) (*Table, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: not a regular file", ErrNotTable)
	}
	hdr := make([]byte, min(st.Size(), HeaderSize))
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil, fmt.Errorf("shm: read header: %w", err)
	}
	slots, err := checkHeader(hdr, st.Size())
	if err != nil {
		return nil, err
	}
	prot := unix.PROT_READ
	if !readOnly {
		prot |= unix.PROT_WRITE
	}
	m, err := mapFile(f, Size(slots), prot)
	if err != nil {
		return nil, err
	}
	return &Table{m: m, f: f, readOnly: readOnly, slots: slots}, nil
}

// checkHeader validates a table's header bytes (the first min(fileSize, HeaderSize) bytes of
// the file) before anything is mapped, and returns the slot capacity.
func checkHeader(hdr []byte, fileSize int64) (int, error) {
	if len(hdr) >= 8 {
		if magic := binary.LittleEndian.Uint64(hdr); magic != Magic {
			return 0, fmt.Errorf("%w: %#x", ErrNotTable, magic)
		}
	}
	if fileSize < HeaderSize || len(hdr) < HeaderSize {
		return 0, fmt.Errorf("%w: %d bytes, a header alone is %d", ErrTruncated, fileSize, HeaderSize)
	}
	m := heapMem(HeaderSize)
	copy(m, hdr)
	return validateHeader(m, fileSize)
}

func mapFile(f *os.File, size, prot int) (mem, error) {
	var m []byte
	var err error
	cerr := withFd(f, func(fd int) { m, err = unix.Mmap(fd, 0, size, prot, unix.MAP_SHARED) })
	if cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, fmt.Errorf("shm: mmap: %w", err)
	}
	return mem(m), nil
}

func withFd(f *os.File, fn func(fd int)) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { fn(int(fd)) })
}

// validateHeader checks the header in a fixed order (magic, version, sizes, checksum, file size)
// and returns the slot capacity.
func validateHeader(m mem, fileSize int64) (int, error) {
	if magic := m.load(hMagic); magic != Magic {
		return 0, fmt.Errorf("%w: %#x", ErrNotTable, magic)
	}
	if v := m.load(hVersion); v != Version {
		return 0, &VersionError{Found: v}
	}
	if hs, ss, wc := m.load(hHeaderSize), m.load(hSlotSize), m.load(hWorkerCap); hs != HeaderSize || ss != SlotSize || wc != WorkerCap {
		return 0, fmt.Errorf("%w: header %d slot %d workers %d, want %d %d %d", ErrCorrupt, hs, ss, wc, HeaderSize, SlotSize, WorkerCap)
	}
	if ec, es := m.load(hEventCap), m.load(hEventSize); ec != EventCap || es != EventSize {
		return 0, fmt.Errorf("%w: event ring %d x %d, want %d x %d", ErrCorrupt, ec, es, EventCap, EventSize)
	}
	c := m.load(hSlotCap)
	if c < 1 || c > MaxSlots {
		return 0, fmt.Errorf("%w: slot capacity %d out of range", ErrCorrupt, c)
	}
	if fs := m.load(hFileSize); fs != uint64(Size(int(c))) {
		return 0, fmt.Errorf("%w: recorded size %d, capacity %d needs %d", ErrCorrupt, fs, c, Size(int(c)))
	}
	if sum := headerChecksum(m); sum != m.load(hChecksum) {
		return 0, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	if fileSize < int64(Size(int(c))) {
		return 0, fmt.Errorf("%w: %d bytes, capacity %d needs %d", ErrTruncated, fileSize, c, Size(int(c)))
	}
	return int(c), nil
}

// Close unmaps the table and closes its file. It is idempotent.
func (t *Table) Close() error {
	if t == nil || t.m == nil {
		return nil
	}
	err := unix.Munmap(t.m)
	t.m = nil
	if t.f != nil {
		err = errors.Join(err, t.f.Close())
		t.f = nil
	}
	return err
}

// File returns the table's open file, to pass to worker processes.
func (t *Table) File() *os.File { return t.f }

// Capacity returns the number of slots.
func (t *Table) Capacity() int { return t.slots }

// Generation returns the current generation, published by the master once its workers are ready.
func (t *Table) Generation() uint64 { return t.m.load(hGeneration) }

// SetGeneration publishes g as the current generation.
func (t *Table) SetGeneration(g uint64) { t.m.store(hGeneration, g) }

// MasterPid returns the pid of the master that last attached.
func (t *Table) MasterPid() int { return int(t.m.load(hMasterPid)) }

// SetMaster records the attaching master's pid, its process start time (so that MasterRunning
// can tell it from a later process with the same pid) and when it attached.
func (t *Table) SetMaster(pid int) {
	t.m.store(hMasterStart, procStart(pid))
	t.m.store(hMasterPid, uint64(pid))
	t.m.store(hMasterMs, uint64(NowMs()))
}

// NewToken returns a token for a new worker with the given pid: a serial never used before in this
// table and the pid, so a reused pid can never fake an earlier worker's ownership.
func (t *Table) NewToken(pid int) Token {
	serial := t.m.add(hSerial, 1)
	return Token(serial<<32 | uint64(uint32(pid)))
}
