//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"testing"
	"time"

	"hcproxy/internal/harness"
	"hcproxy/internal/load"
)

// Resource limits: hcproxy under prlimit --nofile=64:64 with 200 keep-alive clients, far more
// than it has descriptors. Promise: the master and its workers keep running (same pids), the
// descriptor exhaustion is logged at most about once a second per worker (never once per
// connection), and hcproxy answers normally again once the load is gone.
func TestLowFileLimit(t *testing.T) {
	prl, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("no prlimit (util-linux)")
	}
	const (
		workers = 2
		clients = 200
		loadFor = 8 * time.Second
	)
	bs := harness.StartBackends(t, "b", 2)
	listen := harness.FreeAddr(t)
	p := newProxy(t, config{workers: workers, status: harness.FreeAddr(t), upstreams: []upstreamConf{{
		name: "app", listen: listen, servers: addrs(bs), interval: "500ms", timeout: "250ms",
	}}})
	p.Wrapper = []string{prl, "--nofile=64:64", "--"}
	p.startReady()
	p.waitChecked(2, 10*time.Second)
	master := p.Pid() // prlimit execs hcproxy: same pid
	before := harness.Children(master)

	res := load.Run(context.Background(), load.Options{Addr: listen, Conns: clients, Duration: loadFor, MaxRequests: 5_000_000})
	loadEnd := time.Now()

	// Recovery: a small load must succeed completely within 15s of the big one ending.
	var after load.Result
	for {
		after = load.Run(context.Background(), load.Options{Addr: listen, Conns: 2, Duration: 2 * time.Second, MaxRequests: 200})
		if (after.Failed() == 0 && after.Non2xx == 0 && after.Requests > 0) || time.Since(loadEnd) > 15*time.Second {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	recovered := time.Since(loadEnd)
	now := harness.Children(master)
	exhaustion := regexp.MustCompile(`(?i)too many open files|EMFILE`)
	lines := 0
	for _, l := range regexpLines(p.Log.String()) {
		if exhaustion.MatchString(l) {
			if lines < 3 {
				t.Logf("log: %s", l)
			}
			lines++
		}
	}
	bound := workers * (int(loadFor/time.Second) + 12) // a backoff ramp to 1s, then once a second, per worker
	result("fd-limit-64", res, fmt.Sprintf("workers:%d/%d", len(now), workers),
		fmt.Sprintf("clients=%d emfile_log_lines=%d (bound %d) recovered_in=%v after={%v} master_alive=%v same_workers=%v",
			clients, lines, bound, recovered.Round(100*time.Millisecond), after, harness.Running(master), slices.Equal(before, now)))

	if !harness.Running(master) {
		t.Fatalf("the master died")
	}
	if !slices.Equal(before, now) {
		t.Errorf("workers before %v, after %v: a worker died", before, now)
	}
	if after.Failed() != 0 || after.Non2xx != 0 || after.Requests == 0 {
		t.Errorf("not answering normally %v after the load: %v", recovered, after)
	}
	if lines > bound {
		t.Errorf("descriptor exhaustion logged %d times in %v (limit %d): once per connection?", lines, loadFor, bound)
	}
}

func regexpLines(s string) []string { return regexp.MustCompile("\r?\n").Split(s, -1) }
