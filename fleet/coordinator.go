package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Coordinator is one host's member of the fleet. New makes it, Run runs it;
// every other method is safe from any goroutine and never waits on etcd.
type Coordinator struct {
	cfg  Config
	log  *slog.Logger
	cli  *clientv3.Client
	keys layout
	base time.Time // origin of deadline

	// deadline is the lease's end as nanoseconds since base, 0 outside a
	// session: Fallback is true from then on.
	deadline atomic.Int64
	snap     atomic.Pointer[snapshot]
	known    atomic.Pointer[map[string]bool] // the last SetKeys, immutable
	changes  chan struct{}                   // cap 1: a change of snap or of Fallback
	lease    atomic.Int64                    // the current session's lease, 0 outside one

	mu        sync.Mutex
	wantKeys  map[string]bool // last SetKeys
	keysDirty bool
	pending   map[string]bool // Publish calls not yet seen by the loop
	nudge     chan struct{}   // cap 1: SetKeys or Publish happened

	local map[string]bool // latest Publish per key; owned by Run's goroutine

	stats counters
}

// snapshot is the loop's last decided view; immutable once stored.
type snapshot struct {
	fleet   bool            // a session is up and reconciled
	owned   map[string]bool // keys whose claim this host holds
	view    map[string]Vote // every known key's vote
	members []string        // live members, sorted
}

// New makes a Coordinator for cfg; it connects lazily, so New succeeds
// while etcd is down. log may be nil (slog.Default()).
func New(cfg Config, log *slog.Logger) (*Coordinator, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		TLS:                  cfg.TLS,
		Username:             cfg.Username,
		Password:             cfg.Password,
		DialTimeout:          opTimeout(cfg.TTL),
		DialKeepAliveTime:    cfg.TTL / 3,
		DialKeepAliveTimeout: opTimeout(cfg.TTL),
		Logger:               zap.NewNop(),
		PermitWithoutStream:  true,
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: etcd client: %w", err)
	}
	c := &Coordinator{
		cfg:      cfg,
		log:      log.With("fleet_host", cfg.Host),
		cli:      cli,
		keys:     layout{cfg.Prefix},
		base:     time.Now(),
		changes:  make(chan struct{}, 1),
		pending:  map[string]bool{},
		nudge:    make(chan struct{}, 1),
		wantKeys: map[string]bool{},
		local:    map[string]bool{},
	}
	c.snap.Store(&snapshot{})
	c.known.Store(&map[string]bool{})
	return c, nil
}

// opTimeout bounds one etcd request: a quarter of the lease, at least 500ms,
// so a few tries fit in one lease.
func opTimeout(ttl time.Duration) time.Duration { return max(ttl/4, 500*time.Millisecond) }

// Host is this host's name in the fleet.
func (c *Coordinator) Host() string { return c.cfg.Host }

// Fallback reports whether this host must check every key itself: before
// the first session is up, and from the instant its lease may have lapsed
// until a new session is up. It reads the clock, so it turns true on time
// even while the loop waits on etcd.
func (c *Coordinator) Fallback() bool {
	d := c.deadline.Load()
	return d == 0 || !c.snap.Load().fleet || time.Since(c.base) >= time.Duration(d)
}

// Owned returns the keys this host must probe: those it holds a claim on,
// or, in fallback, every key of SetKeys. The map must not be modified.
func (c *Coordinator) Owned() map[string]bool {
	if c.Fallback() {
		return *c.known.Load()
	}
	return c.snap.Load().owned
}

// View returns the fleet's vote on each key of SetKeys, or nil in fallback:
// a view is never served past the lease. The map must not be modified.
func (c *Coordinator) View() map[string]Vote {
	if c.Fallback() {
		return nil
	}
	return c.snap.Load().view
}

// Members returns the live members as last seen, nil in fallback.
func (c *Coordinator) Members() []string {
	if c.Fallback() {
		return nil
	}
	return c.snap.Load().members
}

// Changes is signalled (coalesced) when Owned, View or Fallback may have
// changed; the caller then reads them again.
func (c *Coordinator) Changes() <-chan struct{} { return c.changes }

func (c *Coordinator) signal() {
	select {
	case c.changes <- struct{}{}:
	default:
	}
}

// SetKeys replaces the set of keys (checked servers) this host knows; keys
// not in it are neither claimed nor shown. The empty key is ignored.
func (c *Coordinator) SetKeys(keys []string) {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		if k != "" {
			m[k] = true
		}
	}
	c.mu.Lock()
	c.wantKeys, c.keysDirty = m, true
	c.known.Store(&m)
	c.mu.Unlock()
	c.signal()
	c.poke()
}

// Publish records this host's verdict on key (up or not). The loop writes it
// to etcd when this host holds key's claim and the verdict differs from the
// one it last wrote, so calling it after every probe costs no write; a
// verdict on a key claimed later is written when the claim is taken.
func (c *Coordinator) Publish(key string, up bool) {
	c.mu.Lock()
	c.pending[key] = up
	c.mu.Unlock()
	c.poke()
}

func (c *Coordinator) poke() {
	select {
	case c.nudge <- struct{}{}:
	default:
	}
}

// Leave ends this host's membership at once: it revokes the current lease,
// which deletes its member key, claims and verdicts in one step, so the
// next hosts take its keys without waiting for the lease. Call it before
// cancelling Run on a graceful stop; a stop without it (or a crash) lets the
// lease lapse.
func (c *Coordinator) Leave(ctx context.Context) error {
	id := clientv3.LeaseID(c.lease.Swap(0))
	c.deadline.Store(0)
	c.signal()
	if id == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout(c.cfg.TTL))
	defer cancel()
	c.stats.roundTrips.Add(1)
	if _, err := c.cli.Revoke(ctx, id); err != nil {
		return fmt.Errorf("fleet: revoke lease: %w", err)
	}
	return nil
}

// Close releases the etcd client; call it after Run returned.
func (c *Coordinator) Close() error { return c.cli.Close() }
