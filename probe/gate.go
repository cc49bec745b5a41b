package probe

import (
	"context"
	"sync"
)

// Gate holds back the reads of check answers until its owner opens it, so that the answers to
// the requests sent in one wake-up of the owner are read in its next one, together (see
// tcpConn). A probe dialled with a context from WithGate uses it; any other probe never waits.
// The owner must open the gate within a bounded time of every probe it starts (the checker:
// at its next wake-up, at most a few milliseconds later) and once more when it stops.
type Gate struct {
	mu      sync.Mutex
	ch      chan struct{}
	waiting int
}

type gateKey struct{}

// WithGate returns ctx carrying g for the probes dialled with it.
func WithGate(ctx context.Context, g *Gate) context.Context {
	return context.WithValue(ctx, gateKey{}, g)
}

func gateFrom(ctx context.Context) *Gate {
	g, _ := ctx.Value(gateKey{}).(*Gate)
	return g
}

// wait blocks until the gate opens or stop is closed.
func (g *Gate) wait(stop <-chan struct{}) {
	g.mu.Lock()
	if g.ch == nil {
		g.ch = make(chan struct{})
	}
	ch := g.ch
	g.waiting++
	g.mu.Unlock()
	select {
	case <-ch:
	case <-stop:
	}
}

// Open releases every probe waiting at the gate and returns how many there were.
func (g *Gate) Open() int {
	g.mu.Lock()
	ch, n := g.ch, g.waiting
	g.ch, g.waiting = nil, 0
	g.mu.Unlock()
	if ch != nil {
		close(ch)
	}
	return n
}
