package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Errors that end a session; Run logs them and starts another.
var (
	ErrDuplicateHost = errors.New("fleet: host name already a member under another lease")
	ErrLeaseLapsed   = errors.New("fleet: lease lapsed (etcd not renewing it)")
	ErrLeaseLost     = errors.New("fleet: lease gone from etcd")
	ErrWatchClosed   = errors.New("fleet: watch closed")
)

// Run joins the fleet and keeps this host in it until ctx is done: one
// session after another, each a lease, a read of the prefix and a watch.
// Between sessions the host is in fallback. It returns nil when ctx is done;
// it does not revoke the lease (see Leave).
func (c *Coordinator) Run(ctx context.Context) error {
	var prev clientv3.LeaseID
	wait := 200 * time.Millisecond
	inFleet := false
	for ctx.Err() == nil {
		start := time.Now()
		s := newSession(c, prev)
		err := s.run(ctx)
		prev = s.lease
		c.endSession()
		if s.joined {
			inFleet = true
		}
		if ctx.Err() != nil {
			return nil
		}
		if inFleet {
			c.stats.fallbacks.Add(1)
			c.log.Warn("fleet: left the fleet; checking every server locally", "err", err)
			inFleet = false
		} else {
			c.log.Debug("fleet: cannot join", "err", err)
		}
		if time.Since(start) > c.cfg.TTL {
			wait = 200 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, c.cfg.TTL/2)
	}
	return nil
}

// endSession puts the host in fallback.
func (c *Coordinator) endSession() {
	c.deadline.Store(0)
	c.lease.Store(0)
	c.snap.Store(&snapshot{})
	c.stats.claims.Store(0)
	c.signal()
}

// now is the time since base, the unit of deadline.
func (c *Coordinator) now() int64 { return int64(time.Since(c.base)) }

// extend moves the deadline to d unless the session ended (0), the deadline
// already passed (the host is in fallback: only a new session ends that, so
// a lapse is always counted and the claims always re-read), or it is already
// later.
func (c *Coordinator) extend(d int64) {
	for {
		old := c.deadline.Load()
		if old == 0 || old <= c.now() || d <= old || c.deadline.CompareAndSwap(old, d) {
			return
		}
	}
}

// keepAlive renews lease every TTL/3 (sooner after a failure) and moves the
// deadline to the send time of each acknowledged renewal plus its TTL. It
// reports a lease etcd no longer has on lost.
func (c *Coordinator) keepAlive(ctx context.Context, id clientv3.LeaseID, lost chan<- error) {
	period := c.cfg.TTL / 3
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
		t0 := c.now()
		rctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), opTimeout(c.cfg.TTL))
		resp, err := c.cli.KeepAliveOnce(rctx, id)
		cancel()
		c.stats.roundTrips.Add(1)
		switch {
		case err == nil && resp.TTL > 0:
			c.stats.keepAlives.Add(1)
			c.extend(t0 + int64(time.Duration(resp.TTL)*time.Second))
			period = c.cfg.TTL / 3
		case err == nil || errors.Is(err, rpctypes.ErrLeaseNotFound):
			select {
			case lost <- fmt.Errorf("%w: %x", ErrLeaseLost, int64(id)):
			default:
			}
			return
		default:
			period = max(c.cfg.TTL/10, 100*time.Millisecond)
		}
	}
}
