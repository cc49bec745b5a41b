package probe

import (
	"context"
	"net"
	"sync"
	"time"
)

// Conn is one check's connection between its probes, for the checks that can keep it alive
// (keepalive = true: http, https, grpc), and the buffers its probes reuse. It belongs to the
// check's owner (worker/), which runs at most one probe over a Conn at a time and closes it when
// it gives the check up (a handover). The zero value holds nothing; a Conn must not be copied
// after first use.
//
// A kept connection that the server closed meanwhile is re-dialled within the same probe, once,
// and only when the request cannot have been processed (nothing could be written, or the
// connection ended before any byte of the answer). A probe that fails or times out closes it.
type Conn struct {
	mu     sync.Mutex
	nc     net.Conn // the connection kept for the next probe, or the one in use
	busy   bool     // a probe is using nc
	epoch  uint64   // bumped by Close: a probe that began before gives its connection up
	cancel context.CancelFunc
	dials  int // connections dialled so far (for tests and stats)

	// ownerDeadline: the owner ends each probe at its deadline with Expire, so the http probe
	// sets no deadline of its own on the connection (SetOwnerDeadline). expired: Expire ran
	// during the probe in flight.
	ownerDeadline bool
	expired       bool

	// Reused by the http probe, touched only by the probe in flight.
	ks      keepState
	req     []byte // the built request for reqAddr
	reqAddr string
	tls     *tlsKeep // https and grpc: the kept transport
}

// Dials returns how many connections probes over c have dialled.
func (c *Conn) Dials() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dials
}

// Close closes the kept connection, and cuts short a probe in flight over c (its I/O fails at
// once and its connection is not kept). The next probe dials again. Close is idempotent.
func (c *Conn) Close() {
	c.mu.Lock()
	c.epoch++
	nc, busy, cancel, tk := c.nc, c.busy, c.cancel, c.tls
	if !busy {
		c.nc = nil
	}
	c.mu.Unlock()
	switch {
	case nc != nil && busy:
		nc.SetDeadline(aLongTimeAgo) // the probe sees a timeout and closes it
	case nc != nil:
		nc.Close()
	}
	if cancel != nil {
		cancel()
	}
	if tk != nil {
		tk.closeIdle()
	}
}

// SetOwnerDeadline says whether the owner of c ends every probe over it at its deadline by
// calling Expire. The http probe then moves no deadline on its connection: a runtime timer
// moved per check costs more than the check itself once thousands of connections are kept
// (the runtime walks every moved timer of the process), while the owner's one timer, already
// armed for the next check, costs nothing more. The connect's own wait, when a connect does
// not complete at once, is still bounded by the deadline. Set it before the first probe.
func (c *Conn) SetOwnerDeadline(on bool) {
	c.mu.Lock()
	c.ownerDeadline = on
	c.mu.Unlock()
}

// Expire ends the probe in flight over c, at its deadline: its I/O fails at once with a timeout
// (a connection still being dialled fails at its first I/O), and its connection is not kept.
// With no probe in flight it does nothing.
func (c *Conn) Expire() {
	c.mu.Lock()
	nc, busy := c.nc, c.busy
	if busy {
		c.expired = true
	}
	c.mu.Unlock()
	if busy && nc != nil {
		nc.SetDeadline(aLongTimeAgo)
	}
}

// owner reports whether the owner keeps the deadline (SetOwnerDeadline) and whether the probe
// in flight has expired.
func (c *Conn) owner() (ownerDeadline, expired bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ownerDeadline, c.expired
}

// take starts a probe over c: it returns the kept connection (nil if none) and the epoch the
// probe runs in.
func (c *Conn) take() (net.Conn, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy, c.expired = true, false
	return c.nc, c.epoch
}

// use registers nc, just dialled, as the probe's connection; false means c was closed since
// the probe began (nc is closed, the probe must stop).
func (c *Conn) use(nc net.Conn, epoch uint64) bool {
	c.mu.Lock()
	ok := c.epoch == epoch
	expired := c.expired
	if ok {
		c.nc = nc
		c.dials++
	}
	c.mu.Unlock()
	if !ok {
		nc.Close()
	} else if expired { // Expire ran while it was being dialled
		nc.SetDeadline(aLongTimeAgo)
	}
	return ok
}

// done ends a probe over c: its connection is kept for the next probe if keep and c was not
// closed meanwhile, else closed.
func (c *Conn) done(nc net.Conn, epoch uint64, keep bool) {
	c.mu.Lock()
	keep = keep && c.epoch == epoch && nc != nil && !c.expired // an expired one may hold a past deadline
	c.busy = false
	if keep {
		c.nc = nc
	} else {
		c.nc = nil
	}
	c.mu.Unlock()
	if !keep && nc != nil {
		nc.Close()
	}
}

// ConnProber is a Prober that probes over a Conn: by deadline (a time, sparing a context and a
// timer per check), cancelled by ctx (and by Conn.Close), keeping the connection in the Conn
// for the next probe when the check keeps connections alive.
type ConnProber interface {
	Prober
	ProbeConn(ctx context.Context, addr string, deadline time.Time, c *Conn) Result
}
