package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckPathsRefusesMissingDirectories pins that -t passed a config whose error_log,
// access_log or pid_file directory did not exist, and the start then failed: each is now
// refused with its key.
func TestCheckPathsRefusesMissingDirectories(t *testing.T) {
	dir := t.TempDir()
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o500)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	base := func() *Config {
		return &Config{Path: filepath.Join(dir, "hc.toml"), PidFile: filepath.Join(dir, "hc.pid"),
			ErrorLog: filepath.Join(dir, "error.log"), Servers: []Server{{AccessLog: filepath.Join(dir, "access.log")}, {}}}
	}
	if err := CheckPaths(base()); err != nil {
		t.Fatalf("good paths: %v", err)
	}
	cases := []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"error_log", func(c *Config) { c.ErrorLog = filepath.Join(dir, "nope", "e.log") }, "error_log: "},
		{"pid_file", func(c *Config) { c.PidFile = filepath.Join(dir, "nope", "hc.pid") }, "pid_file: "},
		{"access_log", func(c *Config) { c.Servers[0].AccessLog = filepath.Join(dir, "nope", "a.log") }, "server[0].access_log: "},
		{"not a directory", func(c *Config) { c.ErrorLog = filepath.Join(file, "e.log") }, "is not a directory"},
	}
	if os.Geteuid() != 0 { // root may write anywhere
		cases = append(cases, struct {
			name string
			set  func(*Config)
			want string
		}{"read-only", func(c *Config) { c.PidFile = filepath.Join(ro, "hc.pid") }, "not writable"})
	}
	for _, tc := range cases {
		c := base()
		tc.set(c)
		err := CheckPaths(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Count(err.Error(), "\n") != 0 {
			t.Errorf("%s: %v, want one error with %q", tc.name, err, tc.want)
		}
	}
}
