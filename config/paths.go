package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// CheckPaths checks, for -t, what a start would need of the file system beyond the config
// itself: the directory of error_log, of every access_log and of pid_file exists, is a
// directory, and this user may create files in it. Load does not check it (the master that
// loads a config may run elsewhere than where it is tested, and opens these files itself), so a
// config that passes Load can still fail to start; one that passes CheckPaths too cannot fail
// for these reasons. Errors are Errors, each starting with the key.
func CheckPaths(c *Config) error {
	var es Errors
	check := func(key, path string) {
		if path == "" {
			return
		}
		if msg := dirProblem(filepath.Dir(path)); msg != "" {
			es = append(es, &Error{File: c.Path, Key: key, Msg: fmt.Sprintf("%q: %s", path, msg)})
		}
	}
	check("error_log", c.ErrorLog)
	check("pid_file", c.PidFile)
	for i, s := range c.Servers {
		check(fmt.Sprintf("server[%d].access_log", i), s.AccessLog)
	}
	if len(es) == 0 {
		return nil
	}
	return es
}

// dirProblem says what keeps a file from being created in dir, "" when nothing does.
func dirProblem(dir string) string {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("directory %s does not exist", dir)
	case err != nil:
		return fmt.Sprintf("directory %s: %v", dir, err)
	case !fi.IsDir():
		return fmt.Sprintf("%s is not a directory", dir)
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Sprintf("directory %s is not writable by this user: %v", dir, err)
	}
	return ""
}
