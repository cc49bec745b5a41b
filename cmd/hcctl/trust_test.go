package main

// hcctl set run as another user, in a process of its own: the test binary re-executes itself as
// hcctl (TestMain), with the credentials of a system user the test creates (useradd) and
// removes (userdel). These tests need root and useradd, and skip without them.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"hcproxy/shm"
)

// asHcctl, set in the environment, makes the test binary run as hcctl.
const asHcctl = "HCCTL_TEST_RUN_AS_HCCTL"

func TestMain(m *testing.M) {
	if os.Getenv(asHcctl) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// testUser is a system user created for the test.
type testUser struct {
	name     string
	uid, gid uint32
}

// newTestUser creates a system user with a name unique to this test process (or takes it if a
// crashed run left it) and deletes it when the test ends. It skips when not root or without
// useradd.
func newTestUser(t *testing.T) testUser {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root to create a test user and run hcctl as it (running as uid %d)", os.Geteuid())
	}
	useradd, err := exec.LookPath("useradd")
	if err != nil {
		t.Skipf("needs useradd to create a test user: %v", err)
	}
	userdel, err := exec.LookPath("userdel")
	if err != nil {
		t.Skipf("needs userdel to remove the test user: %v", err)
	}
	name := fmt.Sprintf("hcctl-test-%d", os.Getpid())
	if _, err := user.Lookup(name); err != nil {
		// useradd fails while another process holds the passwd lock: retry until a deadline.
		deadline := time.Now().Add(15 * time.Second)
		for {
			out, err := exec.Command(useradd, "--system", "--user-group", "--no-create-home",
				"--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("useradd %s: %v\n%s", name, err, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command(userdel, name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("the test user %s: %v", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil || uid == 0 {
		t.Fatalf("the test user %s: uid %q gid %q: %v", name, u.Uid, u.Gid, err)
	}
	return testUser{name: name, uid: uint32(uid), gid: uint32(gid)}
}

// sharedDir makes a directory of root's, mode 0755, that the test user can search (t.TempDir
// is 0700), removed when the test ends.
func sharedDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hcctl-trust")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// hcctlAs returns a function that runs hcctl (this test binary, copied where u can execute it)
// as u, bounded to 30 s, and returns its exit status and output.
func hcctlAs(t *testing.T, u testUser) func(args ...string) (int, string, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(sharedDir(t), "hcctl")
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(exe, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(dst, src)
	if err = errors.Join(err, dst.Close()); err != nil {
		t.Fatal(err)
	}
	return func(args ...string) (int, string, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, exe, args...)
		cmd.Dir = "/"
		cmd.Env = append(os.Environ(), asHcctl+"=1")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{u.gid}}}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, out.String(), errb.String()
		case errors.As(err, &ee) && ee.Exited():
			return ee.ExitCode(), out.String(), errb.String()
		}
		t.Fatalf("hcctl %v as %s: %v\n%s", args, u.name, err, errb.String())
		return -1, "", ""
	}
}

// tableIn makes newTable's table (root's, 0600) at dir/name.
func tableIn(t *testing.T, dir, name string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	b, err := os.ReadFile(newTable(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Pins issue 12: `runuser -u nobody hcctl --table T set UPSTREAM ADDR maint` on a table nobody
// could write through hcctl's own checks exited 0 and took the server out of rotation. Now set
// as another user is refused with exit 1 and one line saying whose table it is, and the table is
// unchanged, while reading it stays allowed wherever the file's mode allows.
func TestSetAsAnotherUserIsRefused(t *testing.T) {
	u := newTestUser(t)
	hcctl := hcctlAs(t, u)
	dir := sharedDir(t)
	for _, tc := range []struct {
		mode     os.FileMode
		want     string
		readable bool
	}{
		{0o600, "is owned by uid 0 (mode 0600); run as that user", false},
		{0o644, "is owned by uid 0 (mode 0644); run as that user", true},
		// The table of the finding: writable by anyone, so the kernel would let set write it.
		{0o666, "writable by group or others (uid 0, mode 0666)", true},
	} {
		path := tableIn(t, dir, fmt.Sprintf("table-%o", tc.mode))
		if err := os.Chmod(path, tc.mode); err != nil {
			t.Fatal(err)
		}
		before := readFile(t, path)
		code, out, errs := hcctl("--table", path, "set", "app", "10.0.0.1:80", "maint")
		if code != 1 || out != "" || strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "hcctl: set: ") ||
			!strings.Contains(errs, path) || !strings.Contains(errs, tc.want) {
			t.Errorf("set as %s on root's %04o table: exit %d, stdout %q, stderr %q; want exit 1 and one line with %q",
				u.name, tc.mode, code, out, errs, tc.want)
		}
		if !bytes.Equal(readFile(t, path), before) {
			t.Errorf("root's %04o table changed by a refused set", tc.mode)
		}
		code, out, errs = hcctl("--table", path, "dump")
		if got := code == 0 && strings.Contains(out, "10.0.0.1:80"); got != tc.readable {
			t.Errorf("dump as %s of root's %04o table: exit %d, stderr %q; want readable %v", u.name, tc.mode, code, errs, tc.readable)
		}
	}

	// A table inside root's 0700 directory: the user cannot even reach it.
	private := filepath.Join(dir, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	path := tableIn(t, private, "table")
	code, _, errs := hcctl("--table", path, "set", "app", "10.0.0.1:80", "maint")
	if code != 1 || !strings.Contains(errs, "hcctl: set: "+path+": permission denied; run as the user that owns the table") {
		t.Errorf("set as %s through root's 0700 directory: exit %d, stderr %q", u.name, code, errs)
	}
}

// The other side of the rule: a table the user's own master would accept is the user's to set,
// and root may set it too, as long as that master would accept it. A master running as root
// refuses the user's table (issue 12: it accepted it, mode 0644).
func TestSetOnAnotherUsersTable(t *testing.T) {
	u := newTestUser(t)
	hcctl := hcctlAs(t, u)
	dir := sharedDir(t)
	path := tableIn(t, dir, "table")
	if err := os.Chown(path, int(u.uid), int(u.gid)); err != nil {
		t.Fatal(err)
	}
	code, out, errs := hcctl("--table", path, "set", "app", "10.0.0.1:80", "drain")
	if code != 0 || out != "app 10.0.0.1:80: ready -> drain\n" {
		t.Fatalf("set as %s on its own table: exit %d, stdout %q, stderr %q", u.name, code, out, errs)
	}
	code, out, errs = runHcctl("--table", path, "set", "app", "10.0.0.1:80", "ready")
	if code != 0 || out != "app 10.0.0.1:80: drain -> ready\n" {
		t.Fatalf("set as root on %s's table: exit %d, stdout %q, stderr %q", u.name, code, out, errs)
	}

	// Its own table, read-only: the kernel refuses, and set says why.
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	code, _, errs = hcctl("--table", path, "set", "app", "10.0.0.1:80", "drain")
	if want := fmt.Sprintf("is read-only for its owner, uid %d (mode 0400)", u.uid); code != 1 || !strings.Contains(errs, want) {
		t.Errorf("set as %s on its own 0400 table: exit %d, stderr %q, want %q", u.name, code, errs, want)
	}

	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	before := readFile(t, path)
	if tab, err := shm.OpenMaster(path, 8); err == nil || !errors.Is(err, shm.ErrUntrusted) ||
		!strings.Contains(err.Error(), fmt.Sprintf("owned by uid %d (mode 0644)", u.uid)) {
		if tab != nil {
			tab.Close()
		}
		t.Errorf("a master as root opened %s's table: %v", u.name, err)
	}

	// Made writable by others, or moved into a directory the user owns: root's set refuses it,
	// as the master would.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runHcctl("--table", path, "set", "app", "10.0.0.1:80", "maint")
	if code != 1 || !strings.Contains(errs, "writable by group or others") {
		t.Errorf("set as root on %s's 0666 table: exit %d, stderr %q", u.name, code, errs)
	}
	if !bytes.Equal(readFile(t, path), before) {
		t.Error("a refused set or master changed the table")
	}
	theirs := filepath.Join(dir, "theirs")
	if err := os.Mkdir(theirs, 0o755); err != nil {
		t.Fatal(err)
	}
	rootTable := tableIn(t, theirs, "table")
	if err := os.Chown(theirs, int(u.uid), int(u.gid)); err != nil {
		t.Fatal(err)
	}
	code, _, errs = runHcctl("--table", rootTable, "set", "app", "10.0.0.1:80", "maint")
	if code != 1 || !strings.Contains(errs, fmt.Sprintf("directory %s is owned by uid %d", theirs, u.uid)) {
		t.Errorf("set as root on its table in %s's directory: exit %d, stderr %q", u.name, code, errs)
	}
}
