package main

import (
	"fmt"
	"testing"
	"time"

	"hcproxy/internal/latency"
)

// No connection is starved (issue 15): one worker serves 64 keep-alive connections in a closed
// loop (each sends its next request when its last is answered) for a bounded 2 s, and every
// connection gets at least half the mean share of requests. A worker that served some
// connections late, again and again (a goroutine left behind in the scheduler's queue, a LIFO
// hand-out of upstream connections, a stall of the worker's only P), shows as a connection far
// below the mean; fair service keeps them all close to it. It asserts counts, not timings.
func TestConnectionsServedFairly(t *testing.T) {
	for _, engine := range []string{"fast", "std"} {
		t.Run(engine, func(t *testing.T) {
			b := startBackends(t, 3)
			p := startProxyRaw(t, 1, fmt.Sprintf(`workers = 1
engine = %q
pid_file = "hcproxy.pid"
table = "hcproxy.table"
[[server]]
listen = "{{listen}}"
upstream = "app"
[upstream.app]
servers = [%q, %q, %q]
`, engine, b[0].Addr, b[1].Addr, b[2].Addr))
			res, err := latency.Run(latency.Options{Addr: p.listen, Conns: 64, Duration: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if res.Errors != 0 {
				t.Fatalf("%d requests failed", res.Errors)
			}
			s := res.Spread()
			mean := res.Total() / len(res.Conns)
			t.Logf("%s", res)
			if mean < 20 {
				t.Skipf("only %d requests per connection: too few to judge the spread", mean)
			}
			if s.MinCount < mean/2 {
				t.Fatalf("a connection made %d requests, under half the mean %d (most: %d): it was starved", s.MinCount, mean, s.MaxCount)
			}
		})
	}
}
