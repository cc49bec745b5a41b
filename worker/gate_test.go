package worker

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"hcproxy/probe"
)

// lateProber is an http prober whose probes reach the connection only after a delay: a probe
// goroutine scheduled late, after the run loop has woken and opened its gate once already.
type lateProber struct {
	probe.ConnProber
	delay time.Duration
}

func (l lateProber) ProbeConn(ctx context.Context, addr string, deadline time.Time, c *probe.Conn) probe.Result {
	time.Sleep(l.delay)
	return l.ConnProber.ProbeConn(ctx, addr, deadline, c)
}

// A probe that comes to the checker's gate after the gate's last opening, with no other check
// starting meanwhile, still has its answer read within a few milliseconds (Gate.Arrived).
// Before, it waited until another check started, past its own deadline: with one check, for
// ever.
func TestGateOpensForAProbeThatComesLate(t *testing.T) {
	const iv = 300 * time.Millisecond
	srv := startSlowHealth(t, 0)
	st := newSchedTable(t, 1, srv.addr, iv)
	i, tok := st.worker(t)
	ts := st.targets(0, 1, srv.addr, iv, iv)
	ts[0].prober = lateProber{ts[0].prober.(probe.ConnProber), 20 * time.Millisecond}
	c := newChecker(st.tb, tok, i, 1, ts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.Start(context.Background())
	defer c.Stop()
	waitFor(t, "four checks recorded", 3*time.Second, func() bool { return st.slots[0].Info().Checks >= 4 })
	if info := st.slots[0].Info(); info.Failures != 0 {
		t.Fatalf("%d of %d checks failed (last: %s)", info.Failures, info.Checks, info.Detail)
	}
}
