package master

// Privilege dropping (user = "name", group = "name"), nginx's model: a master started as root
// keeps root (it binds privileged ports, also at reload, and owns the BPF objects and the table)
// and starts its workers as the configured user and group. The workers need no privilege: they
// inherit every descriptor they use (the table, the listeners, the control socket), and the
// log files they open by path are created by the master and handed to the user.

import (
	"errors"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"hcproxy/config"
)

// credential is the user and groups of cfg's workers, or nil when cfg names no user.
func credential(cfg *config.Config) (*syscall.Credential, error) {
	if cfg.User == "" {
		return nil, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("user = %q needs the master to run as root", cfg.User)
	}
	u, err := user.Lookup(cfg.User)
	if err != nil {
		return nil, fmt.Errorf("user = %q: %w", cfg.User, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user = %q: uid %q: %w", cfg.User, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user = %q: gid %q: %w", cfg.User, u.Gid, err)
	}
	if cfg.Group != "" {
		g, err := user.LookupGroup(cfg.Group)
		if err != nil {
			return nil, fmt.Errorf("group = %q: %w", cfg.Group, err)
		}
		if gid, err = strconv.ParseUint(g.Gid, 10, 32); err != nil {
			return nil, fmt.Errorf("group = %q: gid %q: %w", cfg.Group, g.Gid, err)
		}
	}
	// The worker's groups are its group alone (root's supplementary groups are dropped), as
	// nginx's initgroups does for a user with no supplementary groups.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}, nil
}

// workerAttr is the SysProcAttr of cfg's workers: nil, or the credential of cfg's user.
func workerAttr(cfg *config.Config) (*syscall.SysProcAttr, error) {
	cred, err := credential(cfg)
	if err != nil || cred == nil {
		return nil, err
	}
	return &syscall.SysProcAttr{Credential: cred}, nil
}

// prepareUser checks at start-up that cfg's user can be used, and creates the log files the
// workers open by path (error_log, each access_log) that do not exist yet, owned by that user,
// so workers that are not root can write them. A log file that already exists keeps its owner.
func prepareUser(cfg *config.Config) error {
	cred, err := credential(cfg)
	if err != nil || cred == nil {
		return err
	}
	paths := []string{cfg.ErrorLog}
	for _, s := range cfg.Servers {
		paths = append(paths, s.AccessLog)
	}
	for _, p := range paths {
		if p == "" {
			continue
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o640)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		err = f.Chown(int(cred.Uid), int(cred.Gid))
		f.Close()
		if err != nil {
			return fmt.Errorf("chown %s to %s: %w", p, cfg.User, err)
		}
	}
	return nil
}
