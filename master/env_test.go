package master

import (
	"slices"
	"strings"
	"testing"
)

// A worker gets one P (GOMAXPROCS=1), unless the master was started with a valid GOMAXPROCS,
// which the workers then keep.
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
		environ []string
		want    []string
	}{
		{[]string{"PATH=/bin"}, []string{"GOMAXPROCS=1"}},
		{[]string{"GOMAXPROCS=3", "PATH=/bin"}, []string{"GOMAXPROCS=3"}},
		// Not a number, or not above 0: replaced (the last of two entries is the one a process gets).
		{[]string{"GOMAXPROCS=lots"}, []string{"GOMAXPROCS=lots", "GOMAXPROCS=1"}},
		{[]string{"GOMAXPROCS=0"}, []string{"GOMAXPROCS=0", "GOMAXPROCS=1"}},
	} {
		env := workerEnv(c.environ, []string{"table"})
		if got := procs(env); !slices.Equal(got, c.want) {
			t.Errorf("environ %q: %q, want %q", c.environ, got, c.want)
		}
		if !slices.Contains(env, "PATH=/bin") && slices.Contains(c.environ, "PATH=/bin") {
			t.Errorf("environ %q: the master's environment was not passed on: %q", c.environ, env)
		}
	}
}
