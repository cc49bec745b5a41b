package probe

import (
	"context"
	"time"
)

// tcpProber is the Prober NewTCP returns.
type tcpProber struct{}

var _ Prober = tcpProber{}

// NewTCP returns a Prober that only connects: the check passes once the TCP
// handshake completes, and the connection is closed at once.
func NewTCP() Prober { return tcpProber{} }

// Probe implements Prober.
func (tcpProber) Probe(ctx context.Context, addr string) (res Result) {
	start := time.Now()
	defer recoverInto(&res, start)
	conn, res := dial(ctx, addr)
	if conn == nil {
		return finish(res, start)
	}
	res = finish(Result{}, start)
	conn.Close()
	return res
}
