package master

import (
	"slices"
	"strings"
	"testing"
)

// A worker gets GOMAXPROCS as the cores shared out among the workers, unless the master was
// started with a valid GOMAXPROCS, which the workers then keep.
func TestWorkerEnvGOMAXPROCS(t *testing.T) {
	procs := func(env []string) []string {
		var out []string
		for _, kv := range env {
			if strings.HasPrefix(kv, "GOMAXPROCS=") {
				out = append(out, kv)
			}
		}
		return out
	}
	for _, c := range []struct {
		environ       []string
		cpus, workers int
		want          []string
	}{
		{[]string{"PATH=/bin"}, 8, 2, []string{"GOMAXPROCS=4"}},
		{[]string{"PATH=/bin"}, 2, 1, []string{"GOMAXPROCS=2"}},
		{[]string{"PATH=/bin"}, 2, 4, []string{"GOMAXPROCS=1"}},
		{[]string{"GOMAXPROCS=1", "PATH=/bin"}, 2, 1, []string{"GOMAXPROCS=1"}},
		// Not a number: replaced (the last of two entries is the one a process gets).
		{[]string{"GOMAXPROCS=lots"}, 8, 2, []string{"GOMAXPROCS=lots", "GOMAXPROCS=4"}},
	} {
		env := workerEnv(c.environ, []string{"table"}, c.cpus, c.workers)
		if got := procs(env); !slices.Equal(got, c.want) {
			t.Errorf("environ %q, %d cpus, %d workers: %q, want %q", c.environ, c.cpus, c.workers, got, c.want)
		}
		if !slices.Contains(env, "PATH=/bin") && slices.Contains(c.environ, "PATH=/bin") {
			t.Errorf("environ %q: the master's environment was not passed on: %q", c.environ, env)
		}
	}
}
