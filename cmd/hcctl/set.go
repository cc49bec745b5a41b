package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"hcproxy/shm"
)

// set changes a server's admin state in the table, which every worker's balancer reads on each
// pick, and records the change in the event ring. It opens the table read-write.
type set struct {
	env *env
	fs  *flag.FlagSet
}

func newSet(e *env) command {
	s := &set{env: e, fs: flag.NewFlagSet("set", flag.ContinueOnError)}
	e.tableFlags(s.fs)
	return s
}

func (s *set) Usage() string {
	return `Usage: hcctl [-c FILE | --table PATH] set UPSTREAM ADDRESS drain|maint|ready

Set sets the admin state of server ADDRESS (host:port, as in the config) of upstream UPSTREAM
in the health table:

  drain   no new requests; requests in flight finish
  maint   out of rotation entirely (maintenance)
  ready   back in rotation (when its health is up)

Health checks go on in every state. The state is kept in the table, so every worker honours it
at once, and it survives reloads (not a restart with a new table). Each change is appended to
the event ring (see hcctl tail) and printed:

  app 127.0.0.1:9102: ready -> drain

Set writes the table only where its user could anyway: it refuses a table the master would
refuse (a symlink on its path; a directory owned by someone other than root or the table's
owner, or writable by others and not sticky; a table writable by group or others), and then
opens it read-write, which only the table's owner (the master's user) and root may do. Run it
as that user; others get "TABLE is owned by uid N (mode 0600); run as that user".
It fails (exit 1) when the upstream has no such server in the table.

Flags:
  -c FILE, --table PATH
            as before the command
`
}

// parseAdmin maps "drain", "maint" and "ready" to their admin states.
func parseAdmin(s string) (shm.Admin, bool) {
	for _, a := range []shm.Admin{shm.Ready, shm.Drain, shm.Maint} {
		if s == a.String() {
			return a, true
		}
	}
	return 0, false
}

func (s *set) Run(_ context.Context, args []string) error {
	pos, err := parseArgs(s.fs, s, s.env.stdout, args, "UPSTREAM", "ADDRESS", "STATE")
	if err != nil {
		return err
	}
	upstream, addr := pos[0], pos[1]
	a, ok := parseAdmin(pos[2])
	if !ok {
		return usageError(fmt.Sprintf("set: unknown state %q (want drain, maint or ready)", pos[2]))
	}
	path, err := s.env.resolveTable()
	if err != nil {
		return err
	}
	t, err := shm.Open(path, false)
	if err != nil {
		return setOpenError(path, err)
	}
	defer t.Close()
	found := false
	for _, in := range t.Snapshot().Slots {
		if in.Address != addr || !slices.Contains(strings.Split(in.Label, ","), upstream) {
			continue
		}
		sl := t.Slot(in.Index)
		if !sl.Used() || sl.Address() != addr || sl.Label() != in.Label {
			continue // freed or reused since the snapshot
		}
		found = true
		old := sl.SetAdmin(a)
		if old != a {
			t.AppendEvent(shm.Event{Kind: shm.EventAdmin, Slot: in.Index, Address: addr, Label: in.Label,
				Old: uint8(old), New: uint8(a), Pid: os.Getpid()})
		}
		fmt.Fprintf(s.env.stdout, "%s %s: %s -> %s\n", clean(upstream), clean(addr), old, a)
	}
	if !found {
		return fmt.Errorf("no server %s in upstream %s", clean(addr), clean(upstream))
	}
	return nil
}

// setOpenError explains why set could not open the table at path: the caller may not write it
// (says whose it is) or it is not a table set may write (the check that refused it).
func setOpenError(path string, err error) error {
	if !errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("set: %w", err)
	}
	fi, lerr := os.Lstat(path)
	if lerr != nil {
		return fmt.Errorf("set: %s: permission denied; run as the user that owns the table (the master's): %w", path, err)
	}
	uid := "?"
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if int(st.Uid) == os.Geteuid() {
			return fmt.Errorf("set: %s is read-only for its owner, uid %d (mode %04o): %w", path, st.Uid, fi.Mode().Perm(), err)
		}
		uid = strconv.FormatUint(uint64(st.Uid), 10)
	}
	return fmt.Errorf("set: %s is owned by uid %s (mode %04o); run as that user: %w", path, uid, fi.Mode().Perm(), err)
}
