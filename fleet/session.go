package fleet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// session is one lease's life in the fleet; its run goroutine owns it.
type session struct {
	c      *Coordinator
	me     string
	prev   clientv3.LeaseID // the previous session's lease, revoked first
	lease  clientv3.LeaseID
	joined bool

	members  map[string]bool
	claims   map[string]map[string]bool // key -> live claim holders
	verdicts map[string]map[string]bool // key -> host -> up
	keys     map[string]bool            // SetKeys as last taken
	mine     map[string]bool            // claims this host holds
	written  map[string]bool            // this host's verdicts in etcd
	local    map[string]bool            // this host's latest verdict per key (Publish); the Coordinator's, kept across sessions
	released map[string]int64           // revision of this host's last release per key
	waiting  map[string]int64           // keys left to better-ranked hosts: since when (Coordinator.now)
	wakeAt   int64                      // when a waiting key's grace ends, 0 for none
	seen     int64                      // the last revision the read or the watch delivered

	// Stepping in for a key better-ranked hosts left unclaimed waits until the watch is known
	// to have caught up since the grace ended: a host behind on its watch (a busy machine)
	// would otherwise step in for keys whose claims it has not seen yet.
	asked    int64 // when the oldest unanswered progress request was made (Coordinator.now), 0: none
	caughtUp int64 // when the last answered one was made: every event before then was delivered
	behind   bool  // a step wanted to step in and could not: ask etcd for the watch's progress

	dirty    map[string]bool // keys to reconcile
	viewKeys map[string]bool // keys whose vote to recompute
	all      bool            // reconcile every key
	ownedChg bool            // mine changed since the last snapshot
	retry    bool            // a write failed: step again soon
}

func newSession(c *Coordinator, prev clientv3.LeaseID) *session {
	return &session{
		c: c, me: c.cfg.Host, prev: prev,
		members: map[string]bool{}, claims: map[string]map[string]bool{}, verdicts: map[string]map[string]bool{},
		mine: map[string]bool{}, written: map[string]bool{}, local: c.local,
		released: map[string]int64{}, waiting: map[string]int64{}, dirty: map[string]bool{}, viewKeys: map[string]bool{},
	}
}

// rpc runs one etcd request under the per-request timeout and counts it.
func (s *session) rpc(ctx context.Context, f func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), opTimeout(s.c.cfg.TTL))
	defer cancel()
	s.c.stats.roundTrips.Add(1)
	return f(ctx)
}

// join takes a lease, becomes a member and reads the prefix; it returns the
// revision to watch from.
func (s *session) join(ctx context.Context) (int64, error) {
	c := s.c
	if s.prev != 0 { // our previous lease may survive an etcd restart: drop it
		_ = s.rpc(ctx, func(ctx context.Context) error { _, err := c.cli.Revoke(ctx, s.prev); return err })
	}
	t0 := c.now()
	var g *clientv3.LeaseGrantResponse
	err := s.rpc(ctx, func(ctx context.Context) (err error) {
		g, err = c.cli.Grant(ctx, int64(c.cfg.TTL/time.Second))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("fleet: lease grant: %w", err)
	}
	c.stats.writes.Add(1)
	s.lease = g.ID
	mk := c.keys.member(s.me)
	var tr *clientv3.TxnResponse
	err = s.rpc(ctx, func(ctx context.Context) (err error) {
		tr, err = c.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(mk), "=", 0)).
			Then(clientv3.OpPut(mk, strconv.FormatInt(int64(g.ID), 16), clientv3.WithLease(g.ID))).
			Else(clientv3.OpGet(mk)).Commit()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("fleet: member key: %w", err)
	}
	c.stats.writes.Add(1)
	if !tr.Succeeded {
		_ = s.rpc(ctx, func(ctx context.Context) error { _, err := c.cli.Revoke(ctx, g.ID); return err })
		s.lease = 0
		return 0, fmt.Errorf("%w: %s", ErrDuplicateHost, mk)
	}
	c.stats.writeOps.Add(1)
	c.deadline.Store(t0 + int64(time.Duration(g.TTL)*time.Second))
	c.lease.Store(int64(g.ID))
	var gr *clientv3.GetResponse
	err = s.rpc(ctx, func(ctx context.Context) (err error) {
		gr, err = c.cli.Get(ctx, c.cfg.Prefix, clientv3.WithPrefix())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("fleet: read %s: %w", c.cfg.Prefix, err)
	}
	for _, kv := range gr.Kvs {
		s.apply(mvccpb.PUT, kv)
	}
	s.all = true
	return gr.Header.Revision, nil
}

// run is the session's loop: it returns why the session ended.
func (s *session) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := s.c
	rev, err := s.join(ctx)
	if err != nil {
		return err
	}
	s.seen = rev
	c.stats.sessions.Add(1)
	lost := make(chan error, 1)
	go c.keepAlive(ctx, s.lease, lost)
	wch, stopWatch := s.watch(ctx)
	defer func() { stopWatch() }()
	var rewatch <-chan time.Time // a watch cut by an election: follow again from there
	timer := time.NewTimer(0)
	defer timer.Stop()
	// Hold for a grace before the first claim, still in fallback, following
	// the watch: hosts that start together then see each other and each
	// claims its own share, instead of the first claiming everything.
	hold := c.now() + int64(s.grace())
	for {
		if c.now() >= hold {
			if err := s.step(ctx); err != nil {
				return err
			}
			s.askProgress(ctx)
			if !s.joined {
				s.joined = true
				c.log.Info("fleet: joined", "members", len(s.members), "claims", len(s.mine))
			}
			s.publish()
		}
		wake := time.Duration(c.deadline.Load() - c.now())
		if wake <= 0 {
			return ErrLeaseLapsed
		}
		if s.retry {
			wake = min(wake, 250*time.Millisecond)
		}
		if s.wakeAt != 0 {
			wake = max(min(wake, time.Duration(s.wakeAt-c.now())), time.Millisecond)
		}
		if !s.joined {
			wake = max(min(wake, time.Duration(hold-c.now())), time.Millisecond)
		}
		timer.Reset(wake)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-lost:
			return err
		case wr, ok := <-wch:
			err := s.watched(wr, ok)
			for more := err == nil; more; { // take what else is ready, to step once
				select {
				case wr, ok = <-wch:
					err = s.watched(wr, ok)
					more = err == nil
				default:
					more = false
				}
			}
			if err != nil {
				if !s.resumable(wr, err) {
					return err
				}
				// etcd lost its leader (one member stopped, an election): the lease and
				// the cache stand, and the deadline still bounds the view. Watch again
				// from the last revision seen, a moment later.
				c.log.Debug("fleet: watch cut, following again", "from_revision", s.seen+1, "err", err)
				stopWatch()
				wch, rewatch = nil, time.After(100*time.Millisecond)
			}
		case <-rewatch:
			rewatch = nil
			wch, stopWatch = s.watch(ctx)
		case <-c.nudge:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// watch follows the prefix from the revision after the last one seen, under a context of its
// own (cancelled by the returned stop).
func (s *session) watch(ctx context.Context) (clientv3.WatchChan, func()) {
	wctx, cancel := context.WithCancel(ctx)
	c := s.c
	return c.cli.Watch(clientv3.WithRequireLeader(wctx), c.cfg.Prefix, clientv3.WithPrefix(), clientv3.WithRev(s.seen+1)), cancel
}

// watched applies one watch response.
func (s *session) watched(wr clientv3.WatchResponse, ok bool) error {
	if !ok {
		return ErrWatchClosed
	}
	if err := wr.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrWatchClosed, err)
	}
	if wr.IsProgressNotify() {
		// Every event up to the revision etcd had when it took the request was delivered
		// before this: the watch has caught up with everything written before it was asked.
		if s.asked != 0 {
			s.caughtUp, s.asked = s.asked, 0
			for k := range s.waiting {
				s.dirty[k] = true
			}
		}
		return nil
	}
	for _, ev := range wr.Events {
		s.apply(ev.Type, ev.Kv)
		s.seen = max(s.seen, ev.Kv.ModRevision)
	}
	return nil
}

// askProgress asks etcd, when a step could not step in for lack of it, to confirm the watch
// has caught up (a progress notification on the watch channel). An unanswered request (etcd
// answers only a watch that is in sync) is asked again a quarter grace later; the answer counts
// from the first ask.
func (s *session) askProgress(ctx context.Context) {
	if !s.behind {
		return
	}
	now := s.c.now()
	if s.asked != 0 && now-s.asked < int64(s.grace()/4) {
		s.wake(s.asked + int64(s.grace()/4))
		return
	}
	s.behind = false
	rctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), opTimeout(s.c.cfg.TTL))
	defer cancel()
	if err := s.c.cli.RequestProgress(rctx); err != nil {
		s.c.log.Debug("fleet: progress request failed", "err", err)
		s.retry = true
		return
	}
	if s.asked == 0 {
		s.asked = now
	}
	s.wake(now + int64(s.grace()/4))
}

// resumable reports whether a watch that ended with err can be followed again from the last
// revision seen: it was cut (no leader, the stream closed) rather than compacted past what
// this session saw. The session's context done is not resumable.
func (s *session) resumable(wr clientv3.WatchResponse, err error) bool {
	return wr.CompactRevision == 0 && errors.Is(err, ErrWatchClosed) && s.c.now() < s.c.deadline.Load()
}

// apply updates the cache with one key's put or delete.
func (s *session) apply(typ mvccpb.Event_EventType, kv *mvccpb.KeyValue) {
	kind, key, host, ok := s.c.keys.parse(string(kv.Key))
	if !ok {
		return
	}
	put := typ == mvccpb.PUT
	switch kind {
	case kindMember:
		if s.members[host] != put {
			s.all = true
		}
		if put {
			s.members[host] = true
		} else {
			delete(s.members, host)
		}
	case kindClaim:
		s.dirty[key], s.viewKeys[key] = true, true
		setIn(s.claims, key, host, put, true)
		if host != s.me {
			break
		}
		switch {
		case put && kv.Lease == int64(s.lease) && !s.mine[key] && kv.ModRevision > s.released[key]:
			s.mine[key], s.ownedChg = true, true // a claim whose answer we missed
		case !put && s.mine[key]:
			delete(s.mine, key)
			delete(s.written, key)
			s.ownedChg = true
		}
	case kindState:
		s.dirty[key], s.viewKeys[key] = true, true
		setIn(s.verdicts, key, host, put, string(kv.Value) == "up")
		if host == s.me && !put {
			delete(s.written, key)
		}
	}
}

func setIn(m map[string]map[string]bool, key, host string, put, v bool) {
	if !put {
		if h := m[key]; h != nil {
			delete(h, host)
			if len(h) == 0 {
				delete(m, key)
			}
		}
		return
	}
	h := m[key]
	if h == nil {
		h = map[string]bool{}
		m[key] = h
	}
	h[host] = v
}

// step takes the caller's requests, decides every dirty key and writes the
// claims, releases and verdicts that follow.
func (s *session) step(ctx context.Context) error {
	c := s.c
	c.mu.Lock()
	if c.keysDirty || s.keys == nil {
		for k := range s.keys {
			if !c.wantKeys[k] {
				s.dirty[k], s.viewKeys[k] = true, true
			}
		}
		for k := range c.wantKeys {
			if !s.keys[k] {
				s.dirty[k], s.viewKeys[k] = true, true
			}
		}
		s.keys, c.keysDirty = c.wantKeys, false
	}
	for k, v := range c.pending {
		s.local[k] = v
		s.dirty[k] = true
	}
	clear(c.pending)
	c.mu.Unlock()
	if s.wakeAt != 0 && c.now() >= s.wakeAt {
		for k := range s.waiting {
			s.dirty[k] = true
		}
		s.wakeAt = 0
	}
	if s.all {
		for k := range s.keys {
			s.dirty[k], s.viewKeys[k] = true, true
		}
		for k := range s.mine {
			s.dirty[k] = true
		}
		s.all = false
	}
	var claim, release, verdict []string
	for k := range s.dirty {
		cl, rel := s.decide(k)
		switch {
		case cl:
			claim = append(claim, k)
		case rel:
			release = append(release, k)
		case s.mine[k]:
			if v, ok := s.local[k]; ok {
				if w, ok := s.written[k]; !ok || w != v {
					verdict = append(verdict, k)
				}
			}
		}
	}
	clear(s.dirty)
	s.retry = false
	for _, err := range []error{s.claim(ctx, claim), s.release(ctx, release), s.writeVerdicts(ctx, verdict)} {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return fmt.Errorf("%w: %w", ErrLeaseLost, err)
		}
	}
	return nil
}

// decide is the assignment rule for one key. A host among the Checkers
// best-ranked live members claims it at once. A host ranked lower claims it
// only when fewer than Checkers hosts ranked above it hold a claim for a
// grace (TTL/2): the better-ranked ones are given time to claim, so a
// fleet starting together does not claim everything and hand it back; one
// that does not know the key is stepped in for. A host releases its claim
// once Checkers hosts ranked above it hold a claim and have published a
// verdict, or when it no longer knows the key.
func (s *session) decide(k string) (claim, release bool) {
	if !s.keys[k] {
		delete(s.waiting, k)
		return false, s.mine[k]
	}
	n := s.c.cfg.Checkers
	claimed, voted := 0, 0
	for h := range s.claims[k] {
		if h == s.me || !s.members[h] || !above(k, h, s.me) {
			continue
		}
		claimed++
		if _, ok := s.verdicts[k][h]; ok {
			voted++
		}
	}
	if s.mine[k] {
		return false, voted >= n
	}
	if claimed >= n {
		delete(s.waiting, k)
		return false, false
	}
	rank := 0
	for h := range s.members {
		if h != s.me && above(k, h, s.me) {
			rank++
		}
	}
	now := s.c.now()
	since, ok := s.waiting[k]
	switch {
	case rank < n:
	case !ok:
		s.waiting[k] = now
		s.wake(now + int64(s.grace()))
		return false, false
	case now-since < int64(s.grace()):
		s.wake(since + int64(s.grace()))
		return false, false
	case s.caughtUp < since+int64(s.grace()):
		s.behind = true // not known yet whether a better-ranked host claimed it meanwhile
		return false, false
	}
	delete(s.waiting, k)
	return true, false
}

// grace is how long a session waits before its first claims, and how long
// a host leaves a key to better-ranked hosts before it steps in.
func (s *session) grace() time.Duration { return s.c.cfg.TTL / 2 }

func (s *session) wake(at int64) {
	if s.wakeAt == 0 || at < s.wakeAt {
		s.wakeAt = at
	}
}

// maxOps is the most operations in one transaction (etcd's default limit is
// 128).
const maxOps = 64

// failed marks keys for another step.
func (s *session) failed(keys []string, err error) {
	for _, k := range keys {
		s.dirty[k] = true
	}
	s.retry = true
	s.c.log.Debug("fleet: write failed", "keys", len(keys), "err", err)
}

// claim creates this host's claims on keys, each only if absent, with the
// verdict already known for it.
func (s *session) claim(ctx context.Context, keys []string) error {
	sort.Strings(keys)
	var last error
	for len(keys) > 0 {
		n := min(len(keys), maxOps/2)
		batch := keys[:n]
		keys = keys[n:]
		var cmps []clientv3.Cmp
		var ops []clientv3.Op
		for _, k := range batch {
			ck := s.c.keys.claim(k, s.me)
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(ck), "=", 0))
			ops = append(ops, clientv3.OpPut(ck, "", clientv3.WithLease(s.lease)))
			if v, ok := s.local[k]; ok {
				ops = append(ops, clientv3.OpPut(s.c.keys.state(k, s.me), verdictValue(v), clientv3.WithLease(s.lease)))
			}
		}
		ok, err := s.txn(ctx, cmps, ops)
		if err != nil {
			s.failed(batch, err)
			last = err
			continue
		}
		if !ok { // one of them exists: take them one by one
			for _, k := range batch {
				if err := s.claim1(ctx, k); err != nil {
					last = err
				}
			}
			continue
		}
		for _, k := range batch {
			s.took(k)
		}
	}
	return last
}

func (s *session) claim1(ctx context.Context, k string) error {
	ck := s.c.keys.claim(k, s.me)
	ops := []clientv3.Op{clientv3.OpPut(ck, "", clientv3.WithLease(s.lease))}
	if v, ok := s.local[k]; ok {
		ops = append(ops, clientv3.OpPut(s.c.keys.state(k, s.me), verdictValue(v), clientv3.WithLease(s.lease)))
	}
	ok, err := s.txn(ctx, []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(ck), "=", 0)}, ops)
	switch {
	case err != nil:
		s.failed([]string{k}, err)
		return err
	case ok:
		s.took(k)
	}
	return nil // a claim of this host's name under another lease: it lapses with that lease
}

func (s *session) took(k string) {
	s.mine[k], s.ownedChg = true, true
	if v, ok := s.local[k]; ok {
		s.written[k] = v
	}
}

// release deletes this host's claims and verdicts on keys.
func (s *session) release(ctx context.Context, keys []string) error {
	var last error
	for len(keys) > 0 {
		n := min(len(keys), maxOps/2)
		batch := keys[:n]
		keys = keys[n:]
		var ops []clientv3.Op
		for _, k := range batch {
			ops = append(ops, clientv3.OpDelete(s.c.keys.claim(k, s.me)), clientv3.OpDelete(s.c.keys.state(k, s.me)))
		}
		rev, err := s.txnRev(ctx, nil, ops)
		if err != nil {
			s.failed(batch, err)
			last = err
			continue
		}
		for _, k := range batch {
			delete(s.mine, k)
			delete(s.written, k)
			s.released[k] = rev
			s.ownedChg = true
		}
	}
	return last
}

// writeVerdicts writes this host's changed verdicts.
func (s *session) writeVerdicts(ctx context.Context, keys []string) error {
	var last error
	for len(keys) > 0 {
		n := min(len(keys), maxOps)
		batch := keys[:n]
		keys = keys[n:]
		var ops []clientv3.Op
		for _, k := range batch {
			ops = append(ops, clientv3.OpPut(s.c.keys.state(k, s.me), verdictValue(s.local[k]), clientv3.WithLease(s.lease)))
		}
		if _, err := s.txn(ctx, nil, ops); err != nil {
			s.failed(batch, err)
			last = err
			continue
		}
		for _, k := range batch {
			s.written[k] = s.local[k]
		}
	}
	return last
}

func verdictValue(up bool) string {
	if up {
		return "up"
	}
	return "down"
}

func (s *session) txn(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op) (bool, error) {
	var ok bool
	err := s.rpc(ctx, func(ctx context.Context) error {
		r, err := s.c.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err == nil {
			ok = r.Succeeded
		}
		return err
	})
	s.count(ok, err, len(ops))
	return ok, err
}

func (s *session) txnRev(ctx context.Context, cmps []clientv3.Cmp, ops []clientv3.Op) (int64, error) {
	var rev int64
	err := s.rpc(ctx, func(ctx context.Context) error {
		r, err := s.c.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err == nil {
			rev = r.Header.Revision
		}
		return err
	})
	s.count(err == nil, err, len(ops))
	return rev, err
}

func (s *session) count(ok bool, err error, ops int) {
	if err != nil {
		return
	}
	s.c.stats.writes.Add(1)
	if ok {
		s.c.stats.writeOps.Add(uint64(ops))
	}
}

// publish stores a new snapshot when the view or the owned set changed.
func (s *session) publish() {
	c := s.c
	old := c.snap.Load()
	if old.fleet && len(s.viewKeys) == 0 && !s.ownedChg {
		return
	}
	n := &snapshot{fleet: true, owned: old.owned, view: old.view, members: old.members}
	if !old.fleet || s.ownedChg {
		n.owned = make(map[string]bool, len(s.mine))
		for k := range s.mine {
			n.owned[k] = true
		}
		s.ownedChg = false
	}
	if !old.fleet || len(s.viewKeys) > 0 {
		n.view = make(map[string]Vote, len(s.keys))
		if old.fleet {
			for k, v := range old.view {
				if s.keys[k] {
					n.view[k] = v
				}
			}
		}
		for k := range s.viewKeys {
			if !s.keys[k] {
				delete(n.view, k)
				continue
			}
			live := map[string]bool{}
			for h := range s.claims[k] {
				if s.members[h] {
					live[h] = true
				}
			}
			n.view[k] = makeVote(live, s.verdicts[k])
		}
		clear(s.viewKeys)
	}
	n.members = make([]string, 0, len(s.members))
	for h := range s.members {
		n.members = append(n.members, h)
	}
	sort.Strings(n.members)
	c.snap.Store(n)
	c.stats.claims.Store(int64(len(s.mine)))
	c.signal()
}
