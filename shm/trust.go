package shm

// Trust of the table file. The table decides where traffic goes, so only the master's user may
// write it:
//
//   - The path is walked from "/" one directory at a time with O_NOFOLLOW, and the file is opened
//     relative to its directory's descriptor with O_NOFOLLOW: no symlink anywhere on the path is
//     followed, and a directory renamed mid-way cannot redirect the open.
//   - The table's own directory is owned by root or by the table's user, and is writable by
//     nobody else unless it is sticky (like /tmp or /dev/shm, where only a file's owner can
//     remove or rename it).
//   - The table file is a regular file with one link, owned by the table's user, and writable by
//     neither group nor others.
//   - The master never re-initialises an existing file: it builds a new table in a file of its
//     own, created with O_EXCL next to the final name, and renames it into place without
//     replacing anything, so a half-initialised table never sits at the path. A file at the path
//     that is not a valid table was not made by a master, and is refused, never overwritten.
//
// For the master the table's user is its effective uid; for hcctl set it is the file's owner (the
// master that made it), so set refuses what that master would refuse and otherwise leaves the
// permission check to the kernel.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrUntrusted is a table file or directory that someone other than the table's user could
// have written or replaced: a symlink on the path, a foreign owner, a group- or
// other-writable mode, a hard link. It wraps with the path, owner, mode and what to do.
var ErrUntrusted = errors.New("shm: table not trusted")

// tableDir is the open directory that holds a table file, reached from "/" without following a
// symlink. Files in it are opened relative to fd.
type tableDir struct {
	fd   int
	path string      // the table's absolute, cleaned path
	base string      // the table's name in its directory
	st   unix.Stat_t // the directory's
}

// openTableDir walks to the directory of the table at path, refusing a symlink on the way. With
// create it makes that directory (mode 0700) when it is missing; its parent must exist.
func openTableDir(path string, create bool) (*tableDir, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("shm: %s: %w", path, err)
	}
	dir, base := filepath.Split(abs)
	if base == "" || base == "." || base == ".." {
		return nil, fmt.Errorf("shm: %s: not a file name", path)
	}
	fd, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("shm: open /: %w", err)
	}
	names := strings.Split(strings.Trim(dir, "/"), "/")
	if dir == "/" {
		names = nil
	}
	for i, name := range names {
		prefix := "/" + strings.Join(names[:i+1], "/")
		next, err := openDirAt(fd, name, prefix, create && i == len(names)-1)
		unix.Close(fd)
		if err != nil {
			return nil, err
		}
		fd = next
	}
	d := &tableDir{fd: fd, path: abs, base: base}
	if err := unix.Fstat(fd, &d.st); err != nil {
		d.Close()
		return nil, fmt.Errorf("shm: stat %s: %w", dir, err)
	}
	return d, nil
}

// openDirAt opens directory name in parent (prefix is its full path, for errors) without
// following a symlink; with create it makes the directory, mode 0700, when it is missing.
func openDirAt(parent int, name, prefix string, create bool) (int, error) {
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(parent, name, flags, 0)
	if errors.Is(err, unix.ENOENT) && create {
		if err = unix.Mkdirat(parent, name, 0o700); err == nil || errors.Is(err, unix.EEXIST) {
			fd, err = unix.Openat(parent, name, flags, 0)
		}
	}
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		var st unix.Stat_t
		if unix.Fstatat(parent, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			target, _ := os.Readlink(prefix)
			return -1, fmt.Errorf("%w: %s is a symlink (to %s); no directory on the table's path may be one: name the real directory", ErrUntrusted, prefix, target)
		}
	}
	if err != nil {
		return -1, fmt.Errorf("shm: open directory %s: %w", prefix, err)
	}
	return fd, nil
}

// Close closes the directory.
func (d *tableDir) Close() { unix.Close(d.fd) }

// check refuses the directory unless it is owned by root or uid and writable by nobody else,
// or sticky. who names uid for the error ("this process", "the table's owner").
func (d *tableDir) check(uid int, who string) error {
	dir := filepath.Dir(d.path)
	mode := d.st.Mode & 0o7777
	if d.st.Uid != 0 && int(d.st.Uid) != uid {
		return fmt.Errorf("%w: directory %s is owned by uid %d (mode %04o), not by root or uid %d (%s), so its owner could replace the table: use a directory of root's or uid %d's own, such as /dev/shm/hcproxy",
			ErrUntrusted, dir, d.st.Uid, mode, uid, who, uid)
	}
	if mode&0o022 != 0 && mode&unix.S_ISVTX == 0 {
		return fmt.Errorf("%w: directory %s is writable by group or others (uid %d, mode %04o) and not sticky, so anyone could replace the table: chmod go-w %s, or use a directory of its own",
			ErrUntrusted, dir, d.st.Uid, mode, dir)
	}
	return nil
}

// lstat returns the status of the table's name in the directory, without following a symlink.
func (d *tableDir) lstat() (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(d.fd, d.base, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// checkFile refuses a table file that is not a regular file with one link, owned by uid (who
// names it) and writable by nobody else.
func checkFile(path string, st *unix.Stat_t, uid int, who string) error {
	mode := st.Mode & 0o7777
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return fmt.Errorf("%w: %s is a symlink; the table is never opened through one: remove it, or name the real file", ErrUntrusted, path)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return fmt.Errorf("%w: %s is not a regular file (mode %#o)", ErrUntrusted, path, st.Mode)
	case int(st.Uid) != uid:
		return fmt.Errorf("%w: %s is owned by uid %d (mode %04o), not by uid %d (%s); only the table's user may write it: remove it to start fresh",
			ErrUntrusted, path, st.Uid, mode, uid, who)
	case mode&0o022 != 0:
		return fmt.Errorf("%w: %s is writable by group or others (uid %d, mode %04o), so anyone may have changed it: remove it to start fresh",
			ErrUntrusted, path, st.Uid, mode)
	case st.Nlink != 1:
		return fmt.Errorf("%w: %s has %d hard links, a table has one: remove it to start fresh", ErrUntrusted, path, st.Nlink)
	}
	return nil
}

// openChecked opens the existing table file in d with flags after checking that it belongs to
// uid (who names it) by the rules of checkFile, before and after the open (the same file).
func (d *tableDir) openChecked(flags, uid int, who string) (*os.File, error) {
	pre, err := d.lstat()
	if err != nil {
		return nil, fmt.Errorf("shm: open %s: %w", d.path, err)
	}
	if err := checkFile(d.path, &pre, uid, who); err != nil {
		return nil, err
	}
	f, st, err := d.open(flags)
	if err != nil {
		return nil, err
	}
	if st.Dev != pre.Dev || st.Ino != pre.Ino {
		f.Close()
		return nil, fmt.Errorf("%w: %s was replaced while it was opened", ErrUntrusted, d.path)
	}
	if err := checkFile(d.path, &st, uid, who); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// open opens the table file in the directory (flags are O_RDONLY or O_RDWR) without following a
// symlink or blocking on a FIFO, and returns it with its status. The caller checks the status.
func (d *tableDir) open(flags int) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	fd, err := unix.Openat(d.fd, d.base, flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, st, fmt.Errorf("shm: open %s: %w", d.path, err)
	}
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, st, fmt.Errorf("shm: stat %s: %w", d.path, err)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, st, fmt.Errorf("shm: %s: %w", d.path, err)
	}
	return os.NewFile(uintptr(fd), d.path), st, nil
}

// create builds a fresh table of capacity slots in a new file of its own, created with O_EXCL
// in the directory, and renames it to the table's name unless something is there by then (an
// error wrapping fs.ErrExist). A half-initialised table never sits at the table's name: a
// failure or a crash leaves, at most, the temporary file. With replace, the rename replaces
// what is at the table's name (a table OpenMaster checked and may replace).
func (d *tableDir) create(capacity int, replace bool) (*os.File, error) {
	var fd int
	var tmp string
	for try := 0; ; try++ {
		tmp = fmt.Sprintf(".%s.init-%d-%08x", d.base, os.Getpid(), rand.Uint32())
		var err error
		fd, err = unix.Openat(d.fd, tmp, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EEXIST) || try == 9 {
			return nil, fmt.Errorf("shm: create a table next to %s: %w", d.path, err)
		}
	}
	fail := func(err error) (*os.File, error) {
		unix.Unlinkat(d.fd, tmp, 0)
		unix.Close(fd)
		return nil, err
	}
	if err := unix.Fchmod(fd, 0o600); err != nil { // the umask may have taken the owner's bits
		return fail(fmt.Errorf("shm: chmod %s: %w", tmp, err))
	}
	if err := initialise(fd, capacity); err != nil {
		return fail(fmt.Errorf("shm: initialise a new table next to %s: %w", d.path, err))
	}
	var err error
	if replace {
		err = unix.Renameat(d.fd, tmp, d.fd, d.base)
	} else {
		err = unix.Renameat2(d.fd, tmp, d.fd, d.base, unix.RENAME_NOREPLACE)
	}
	if !replace && (errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS)) { // no RENAME_NOREPLACE here
		if err = unix.Linkat(d.fd, tmp, d.fd, d.base, 0); err == nil {
			unix.Unlinkat(d.fd, tmp, 0)
		}
	}
	if err != nil {
		return fail(fmt.Errorf("shm: rename the new table to %s: %w", d.path, err))
	}
	return os.NewFile(uintptr(fd), d.path), nil
}
