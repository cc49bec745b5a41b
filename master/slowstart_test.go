package master

import (
	"testing"
	"time"

	"hcproxy/config"
)

// The table records the slow start the balancers apply: the server's own over the upstream's,
// none under hash (which does not ramp), so the status page shows no ramp that does not happen.
func TestSlowStartRecordedForServer(t *testing.T) {
	for _, tc := range []struct {
		balancer      string
		upstream, own time.Duration
		want          time.Duration
	}{
		{"round_robin", 0, 0, 0},
		{"round_robin", 30 * time.Second, 0, 30 * time.Second},
		{"least_conn", 30 * time.Second, 5 * time.Second, 5 * time.Second},
		{"random_two", 0, 5 * time.Second, 5 * time.Second},
		{"hash", 30 * time.Second, 5 * time.Second, 0},
	} {
		u := &config.Upstream{Balancer: tc.balancer, SlowStart: tc.upstream}
		if got := slowStart(u, config.UpstreamServer{Address: "127.0.0.1:1", SlowStart: tc.own}); got != tc.want {
			t.Errorf("%s, upstream %v, server %v: %v, want %v", tc.balancer, tc.upstream, tc.own, got, tc.want)
		}
	}
}
