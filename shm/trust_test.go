package shm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The rules of trust.go, one test each. Those that need another user's files run as root and
// chown them to nobody's uid; they skip otherwise.

// otherUID returns a uid that is not ours, for files chowned to it; it skips when the test cannot
// chown (not root).
func otherUID(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to chown files to another user (running as uid %d)", os.Geteuid())
	}
	if u, err := user.Lookup("nobody"); err == nil {
		if uid, err := strconv.Atoi(u.Uid); err == nil && uid != 0 {
			return uid
		}
	}
	return 65534
}

// fileState is a file's bytes, owner and mode, to check that a refused file was left alone.
type fileState struct {
	data []byte
	uid  uint32
	mode os.FileMode
}

func stateOf(t *testing.T, path string) fileState {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	return fileState{b, fi.Sys().(*syscall.Stat_t).Uid, fi.Mode()}
}

func (s fileState) same(o fileState) bool {
	return bytes.Equal(s.data, o.data) && s.uid == o.uid && s.mode == o.mode
}

// validTable makes a valid table at path with one server in it, and returns the server's slot.
func validTable(t *testing.T, path string) int {
	t.Helper()
	tb, err := OpenMaster(path, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	i, err := tb.Alloc(9, "127.0.0.1:1", "app", time.Second, 1, Down)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// refused checks that OpenMaster (and, with rw, a read-write Open) refuses path with want, the
// error naming the file or its directory (and, from OpenMaster, each of mention), and that the
// file was left as it was.
func refused(t *testing.T, path string, want error, rw bool, mention ...string) {
	t.Helper()
	before := stateOf(t, path)
	opens := map[string]func() (*Table, error){"OpenMaster": func() (*Table, error) { return OpenMaster(path, 4) }}
	if rw {
		opens["Open read-write"] = func() (*Table, error) { return Open(path, false) }
	}
	for name, open := range opens {
		tb, err := open()
		if err == nil {
			tb.Close()
			t.Fatalf("%s accepted %s", name, path)
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
		names := []string{filepath.Dir(path)} // the table or its directory
		if name == "OpenMaster" {
			names = append(names, mention...)
		}
		for _, m := range names {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("%s: error %q does not mention %q", name, err, m)
			}
		}
	}
	if after := stateOf(t, path); !after.same(before) {
		t.Errorf("the refused file was changed: %d bytes uid %d %v -> %d bytes uid %d %v",
			len(before.data), before.uid, before.mode, len(after.data), after.uid, after.mode)
	}
}

func TestOpenMasterCreatesTableOwnerOnlyWithNothingElseLeft(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "table")
	validTable(t, path)
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode() != 0o600 || int(st.Uid) != os.Geteuid() || st.Nlink != 1 {
		t.Errorf("new table: mode %v uid %d links %d, want 0600, uid %d, 1", fi.Mode(), st.Uid, st.Nlink, os.Geteuid())
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the directory holds %d entries after a create, want the table alone: %v", len(ents), ents)
	}
}

func TestOpenMasterCreatesItsMissingDirectory0700(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hcproxy")
	validTable(t, filepath.Join(dir, "table"))
	if fi, err := os.Lstat(dir); err != nil || fi.Mode() != fs.ModeDir|0o700 {
		t.Fatalf("created directory: %v %v, want drwx------", fi.Mode(), err)
	}
	// Only the last directory: a missing one above it is an error, not a mkdir -p.
	deep := filepath.Join(t.TempDir(), "a", "b", "table")
	if _, err := OpenMaster(deep, 1); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing grandparent: %v, want not exist", err)
	}
}

func TestOpenMasterReopensOwnTableKeepingState(t *testing.T) {
	path := filepath.Join(t.TempDir(), "table")
	i := validTable(t, path)
	tb, err := OpenMaster(path, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	if j, ok := tb.Find(9, "127.0.0.1:1"); !ok || j != i || tb.Slot(j).State().Health() != Down {
		t.Fatalf("state lost on reopen: slot %d found %v", j, ok)
	}
	rw, err := Open(path, false)
	if err != nil {
		t.Fatalf("read-write Open of the master's own table: %v", err)
	}
	rw.Close()
}

// Pins issue 12: a table named through a symlink (to a valid table) was followed by hcctl set.
func TestTableThroughSymlinkIsRefused(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	validTable(t, real)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	refused(t, link, ErrUntrusted, true, "symlink")
}

// Pins issue 12: a symlinked parent directory was followed.
func TestSymlinkedParentDirectoryIsRefused(t *testing.T) {
	root := t.TempDir()
	real := filepath.Join(root, "real")
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	validTable(t, filepath.Join(real, "table"))
	if err := os.Symlink(real, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(real, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	linkDir := filepath.Join(root, "link")
	for _, path := range []string{
		filepath.Join(root, "link", "table"),        // the table's own directory
		filepath.Join(root, "link", "sub", "table"), // one further up (would be created)
	} {
		for name, open := range map[string]func() (*Table, error){
			"OpenMaster":      func() (*Table, error) { return OpenMaster(path, 4) },
			"Open read-write": func() (*Table, error) { return Open(path, false) },
		} {
			tb, err := open()
			if err == nil {
				tb.Close()
				t.Fatalf("%s followed the symlinked directory in %s", name, path)
			}
			if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), linkDir+" is a symlink") {
				t.Errorf("%s %s: %v, want ErrUntrusted naming %s", name, path, err, linkDir)
			}
		}
	}
	if _, err := os.Lstat(filepath.Join(real, "sub", "table")); err == nil {
		t.Error("a table was created through the symlinked directory")
	}
}

// Pins issue 12: a master accepted a world-writable table (0666), and hcctl set wrote it.
func TestGroupOrOtherWritableTableIsRefused(t *testing.T) {
	for _, mode := range []os.FileMode{0o666, 0o620, 0o602} {
		path := filepath.Join(t.TempDir(), "table")
		validTable(t, path)
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		refused(t, path, ErrUntrusted, true, "writable by group or others", "mode 0"+strconv.FormatUint(uint64(mode), 8))
	}
}

// Pins issue 12: a master running as root accepted a table owned by another user (mode 0644).
func TestTableOwnedByAnotherUserIsRefusedByTheMaster(t *testing.T) {
	uid := otherUID(t)
	path := filepath.Join(t.TempDir(), "table")
	validTable(t, path)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, -1); err != nil {
		t.Fatal(err)
	}
	refused(t, path, ErrUntrusted, false, "owned by uid "+strconv.Itoa(uid), "mode 0644", "remove it")
}

// Pins issue 12: a master initialised an empty file another user created, and left it theirs.
func TestEmptyFileOfAnotherUserIsNotInitialised(t *testing.T) {
	uid := otherUID(t)
	path := filepath.Join(t.TempDir(), "table")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, -1); err != nil {
		t.Fatal(err)
	}
	refused(t, path, ErrUntrusted, false, "owned by uid "+strconv.Itoa(uid))
}

// Pins issue 12: a file whose first 8 bytes are zero (once taken for our own half-initialised
// table) was re-initialised, overwriting what it held.
func TestZeroMagicFileIsRefusedNotReinitialised(t *testing.T) {
	path := filepath.Join(t.TempDir(), "table")
	validTable(t, path)
	b, _ := os.ReadFile(path)
	binary.LittleEndian.PutUint64(b[hMagic:], 0)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	refused(t, path, ErrNotTable, true, "remove it")

	other := filepath.Join(t.TempDir(), "table")
	if err := os.WriteFile(other, append(make([]byte, 8), "someone's data"...), 0o600); err != nil {
		t.Fatal(err)
	}
	refused(t, other, ErrNotTable, true, "remove it")
}

// Pins issue 12: a 7-byte file (too short to hold the magic) was silently re-initialised; an
// empty file of our own is not a table either.
func TestShortFileIsRefusedNotReinitialised(t *testing.T) {
	for _, data := range [][]byte{[]byte("7 bytes"), nil} {
		path := filepath.Join(t.TempDir(), "table")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		refused(t, path, ErrTruncated, true, "remove it")
	}
}

func TestHardLinkedTableIsRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "table")
	validTable(t, path)
	if err := os.Link(path, filepath.Join(dir, "second-name")); err != nil {
		t.Fatal(err)
	}
	refused(t, path, ErrUntrusted, true, "hard links")
}

// A FIFO or a directory at the path is refused at once; nothing blocks on opening it.
func TestSpecialFileIsRefusedWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "sub")
	os.Mkdir(sub, 0o700)
	done := make(chan error, 3)
	go func() {
		_, err := OpenMaster(fifo, 1)
		done <- err
	}()
	go func() {
		_, err := Open(fifo, true)
		done <- err
	}()
	go func() {
		_, err := OpenMaster(sub, 1)
		done <- err
	}()
	for range 3 {
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("a special file was accepted as a table")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("opening a FIFO as the table blocked")
		}
	}
}

func TestWritableDirectoryIsRefusedUnlessSticky(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "table")
	_, err := OpenMaster(path, 1)
	if !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "directory "+dir+" is writable by group or others") || !strings.Contains(err.Error(), "0777") {
		t.Fatalf("world-writable directory: %v", err)
	}
	if _, err := os.Lstat(path); err == nil {
		t.Fatal("a table was created in a world-writable directory")
	}
	// Sticky (like /tmp and /dev/shm): only a file's owner may remove or rename it, so a table
	// this process creates there with O_EXCL is safe.
	if err := os.Chmod(dir, 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	i := validTable(t, path)
	tb, err := OpenMaster(path, 4)
	if err != nil {
		t.Fatalf("own table in a sticky directory: %v", err)
	}
	if j, ok := tb.Find(9, "127.0.0.1:1"); !ok || j != i {
		t.Error("state lost on reopen in a sticky directory")
	}
	tb.Close()
}

// In a sticky directory anyone may create the table's name first; the master refuses that file.
func TestStickyDirectoryFileOfAnotherUserIsRefused(t *testing.T) {
	uid := otherUID(t)
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o777|fs.ModeSticky); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "table")
	validTable(t, path) // a valid table, even: the owner decides
	if err := os.Chown(path, uid, -1); err != nil {
		t.Fatal(err)
	}
	refused(t, path, ErrUntrusted, false, "owned by uid "+strconv.Itoa(uid))
}

func TestDirectoryOfAnotherUserIsRefused(t *testing.T) {
	uid := otherUID(t)
	dir := filepath.Join(t.TempDir(), "theirs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "table")
	validTable(t, path)
	if err := os.Chown(dir, uid, -1); err != nil {
		t.Fatal(err)
	}
	refused(t, path, ErrUntrusted, true, "directory "+dir+" is owned by uid "+strconv.Itoa(uid))
}

// A read-write Open (hcctl set) applies the checks for the table's owner: root may write a
// table another user's master made, in a directory the master would accept, and nothing else.
func TestOpenReadWriteChecksForTheTablesOwner(t *testing.T) {
	uid := otherUID(t)
	dir := t.TempDir() // root's, 0700: fine for any table user
	path := filepath.Join(dir, "table")
	validTable(t, path)
	if err := os.Chown(path, uid, -1); err != nil {
		t.Fatal(err)
	}
	tb, err := Open(path, false)
	if err != nil {
		t.Fatalf("root writing a uid %d table the master would accept: %v", uid, err)
	}
	tb.Close()
	ro, err := Open(path, true)
	if err != nil {
		t.Fatalf("reading stays allowed: %v", err)
	}
	ro.Close()
	if err := os.Chmod(path, 0o644); err != nil { // readable, still only the owner writes
		t.Fatal(err)
	}
	if tb, err := Open(path, false); err != nil {
		t.Fatalf("mode 0644: %v", err)
	} else {
		tb.Close()
	}
}

// Two masters creating the same new table at once get the same file: the loser of the rename
// opens the winner's table, and no temporary file is left behind.
func TestConcurrentCreatesShareOneTable(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "table")
	var wg sync.WaitGroup
	inodes := make([]uint64, 8)
	errs := make([]error, 8)
	for i := range inodes {
		wg.Go(func() {
			tb, err := OpenMaster(path, 2)
			if err != nil {
				errs[i] = err
				return
			}
			defer tb.Close()
			var st syscall.Stat_t
			errs[i] = syscall.Fstat(int(tb.File().Fd()), &st)
			inodes[i] = st.Ino
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if inodes[i] != inodes[0] {
			t.Fatalf("open %d got inode %d, open 0 got %d", i, inodes[i], inodes[0])
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d entries left in the directory, want the table alone: %v", len(ents), ents)
	}
}
