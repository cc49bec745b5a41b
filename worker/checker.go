package worker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"hcproxy/probe"
	"hcproxy/shm"
)

// target is one slot this worker may check: the same (address, check) shared by every upstream
// that lists it.
type target struct {
	slot     shm.Slot
	addr     string // where the probe connects (the server, or its check port)
	server   string // the server's address, for logs
	label    string // upstream names, for logs
	prober   probe.Prober
	interval time.Duration
	timeout  time.Duration
	// downInterval and fastInterval replace interval after some results (intervalAfter);
	// 0 means interval.
	downInterval time.Duration
	fastInterval time.Duration
	rise         int
	fall         int
	seed         uint64 // deterministic per slot: jitter and rendezvous hashing
}

// ownership is what the checker knows about a slot it owns.
type ownership struct {
	fence   uint32
	running bool
}

type outcome struct {
	t       *target
	fence   uint32
	started int64 // monotonic ns when the probe started
	res     probe.Result
}

// checker schedules and runs this worker's checks; see the package comment. One goroutine (run)
// owns all of its state; probe goroutines only send their outcome back.
type checker struct {
	table   *shm.Table
	tok     shm.Token
	index   int
	gen     uint64
	targets []*target
	log     *slog.Logger
	tick    time.Duration

	wake         chan struct{}
	results      chan outcome
	owned        map[*target]*ownership
	sem          chan struct{}
	last         view      // the worker table as the last scan saw it
	lastLocalLog time.Time // rate limit of the "out of resources" warning
	probes       sync.WaitGroup
	ctx          context.Context // cancelled by Stop; in-flight probes run under it
	cancel       context.CancelFunc
	done         chan struct{}
	stopped      sync.Once
}

const maxConcurrentProbes = 1024

// minScanGap bounds how often the checker walks its slots: a check starts at most this late.
const minScanGap = 5 * time.Millisecond

func newChecker(t *shm.Table, tok shm.Token, index int, gen uint64, targets []*target, log *slog.Logger) *checker {
	return &checker{
		table: t, tok: tok, index: index, gen: gen, targets: targets, log: log,
		tick:    50 * time.Millisecond,
		wake:    make(chan struct{}, 1),
		results: make(chan outcome, 64),
		owned:   map[*target]*ownership{},
		sem:     make(chan struct{}, maxConcurrentProbes),
		done:    make(chan struct{}),
	}
}

// Start runs the checker until Stop.
func (c *checker) Start(ctx context.Context) {
	c.ctx, c.cancel = context.WithCancel(ctx)
	go c.run(c.ctx)
}

// Nudge makes the checker look at the table now (a worker died; its slots are takeable).
func (c *checker) Nudge() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Stop cancels in-flight probes (their results are dropped), waits for every probe goroutine,
// and releases every slot this worker owns, so that the next owner takes over at once. It is
// idempotent.
func (c *checker) Stop() {
	c.stopped.Do(func() {
		if c.cancel != nil {
			c.cancel()
			<-c.done
		}
		c.probes.Wait()
		for t := range c.owned {
			t.slot.Release(c.tok)
		}
		c.table.Heartbeat(c.index, 0)
		c.owned = nil
	})
}

func (c *checker) run(ctx context.Context) {
	defer close(c.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-c.wake:
		case o := <-c.results:
			// Record it and go back to waiting: the armed timer brings the next scan. A scan
			// after every result would cost servers x results per interval (10,000 servers:
			// most of a core).
			c.finish(ctx, o)
			continue
		}
		// Sleep until the next owned check is due, or one tick to look for claims; scans are
		// at least minScanGap apart, so checks due close together start in one scan.
		wait := time.Duration(c.scan() - shm.Now())
		timer.Reset(max(minScanGap, min(wait, c.tick)))
	}
}

// view is the worker table as one scan sees it.
type view struct {
	gen     uint64
	workers map[shm.Token]shm.WorkerInfo
	live    []shm.Token // ready workers of the current generation with a fresh heartbeat
}

// staleBeat is how old a worker's heartbeat may be before the others stop counting it as live
// (a hung worker): well under a lease, so a slot taken from a hung owner by lease is not handed
// back to it. A worker beats on every scan, at least every tick.
const staleBeat = time.Second

func (c *checker) view() view {
	v := view{gen: c.table.Generation(), workers: map[shm.Token]shm.WorkerInfo{}}
	now := shm.Now()
	for _, w := range c.table.Workers() {
		if w.Token == 0 {
			continue
		}
		v.workers[w.Token] = w
		if w.State == shm.WorkerReady && w.Generation == v.gen && (w.Token == c.tok || now-w.BeatNs < int64(staleBeat)) {
			v.live = append(v.live, w.Token)
		}
	}
	return v
}

// takeable reports whether a slot owned by owner may be claimed.
func (v view) takeable(owner shm.Token, lease, now int64) bool {
	if owner == 0 {
		return true
	}
	w, ok := v.workers[owner]
	switch {
	case !ok: // its entry was freed: the process is gone
		return true
	case w.State == shm.WorkerDead || w.State == shm.WorkerDraining || w.State == shm.WorkerFree:
		return true
	case w.Generation < v.gen:
		return true
	}
	return lease < now // a hung owner, or no master to bury it
}

// preferred returns the live worker that should own a slot: rendezvous (highest random weight)
// hashing, so a change in the live set moves only the slots of the workers that came or went.
func (v view) preferred(seed uint64) shm.Token {
	var best shm.Token
	var bestScore uint64
	for _, tok := range v.live {
		if s := mix(seed ^ uint64(tok)); best == 0 || s > bestScore {
			best, bestScore = tok, s
		}
	}
	return best
}

func (v view) isLive(tok shm.Token) bool {
	for _, l := range v.live {
		if l == tok {
			return true
		}
	}
	return false
}

// mix is a 64-bit finaliser (SplitMix64's).
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func (c *checker) leaseFor(t *target, now int64) int64 {
	return now + int64(t.interval+t.timeout+2*time.Second)
}

// scan walks every target once (see the package comment) and returns the monotonic time of the
// earliest check due among the slots this worker owns and is not probing.
func (c *checker) scan() int64 {
	now := shm.Now()
	next := now + int64(c.tick)
	v := c.view()
	c.last = v
	c.table.Heartbeat(c.index, len(c.owned))
	for _, t := range c.targets {
		s := t.slot
		owner := s.Owner()
		o := c.owned[t]
		if owner == c.tok {
			if o == nil { // ours in the table but not in memory: take it again for a fresh fence
				fence, ok := s.Claim(c.tok, c.tok, c.leaseFor(t, now))
				if !ok {
					continue
				}
				o = &ownership{fence: fence}
				c.owned[t] = o
			}
			if !s.Renew(c.tok, c.leaseFor(t, now)) {
				delete(c.owned, t) // taken over since the owner was read: never probe it now
				continue
			}
			if !o.running {
				if now >= s.NextDue() {
					c.start(t, o, now)
				}
				if due := s.NextDue(); !o.running && due > now {
					next = min(next, due)
				}
			}
			continue
		}
		if o != nil {
			c.log.Debug("check taken over", "upstream", t.label, "server", t.server, "by_pid", owner.Pid())
			delete(c.owned, t)
		}
		if v.gen != c.gen || !v.takeable(owner, s.Lease(), now) {
			continue
		}
		due := s.NextDue()
		overdue := due != 0 && now > due+int64(t.interval/2+t.timeout)
		if v.preferred(t.seed) != c.tok && !overdue {
			continue
		}
		fence, ok := s.Claim(owner, c.tok, c.leaseFor(t, now))
		if !ok {
			continue
		}
		c.owned[t] = &ownership{fence: fence}
		c.table.AppendEvent(shm.Event{Kind: shm.EventOwner, Slot: s.Index(), Address: t.server, Label: t.label, Pid: c.tok.Pid(), Extra: uint64(owner.Pid())})
		if due == 0 || due > now+2*int64(t.longestInterval()) {
			// Never scheduled, or a schedule from another boot: start at a deterministic
			// offset within one interval, so checks do not march in step.
			s.SetNextDue(now + int64(t.seed%uint64(t.interval)))
		}
		if owner != 0 {
			c.log.Debug("check taken over", "upstream", t.label, "server", t.server, "from_pid", owner.Pid())
		}
		next = min(next, s.NextDue())
	}
	return next
}

// intervalAfter is the time from the start of a check to the start of the next, given the
// check's result and the health it left: fast_interval while a rise or fall streak is under way
// (the result disagrees with the health, like HAProxy's fastinter), else down_interval while
// down (HAProxy's downinter), else interval.
func (t *target) intervalAfter(ok bool, h shm.Health) time.Duration {
	switch {
	case t.fastInterval > 0 && ok != (h == shm.Up):
		return t.fastInterval
	case t.downInterval > 0 && h == shm.Down:
		return t.downInterval
	}
	return t.interval
}

// longestInterval is the longest time between two checks of t.
func (t *target) longestInterval() time.Duration {
	return max(t.interval, t.downInterval, t.fastInterval)
}

// nextDue continues the schedule from due: the first due time after now, in whole intervals.
func nextDue(due, now int64, interval time.Duration) int64 {
	iv := int64(interval)
	if due <= 0 || now-due > 10*iv {
		return now + iv
	}
	next := due + iv
	if next <= now {
		next += (now - next + iv) / iv * iv
	}
	return next
}

func (c *checker) start(t *target, o *ownership, now int64) {
	select {
	case c.sem <- struct{}{}:
	default:
		return // at the limit; try again next tick
	}
	t.slot.SetNextDue(nextDue(t.slot.NextDue(), now, t.interval))
	o.running = true
	fence := o.fence
	c.probes.Add(1)
	ctx := c.ctx
	go func() {
		defer c.probes.Done()
		defer func() { <-c.sem }()
		res := c.probe(ctx, t)
		select {
		case c.results <- outcome{t: t, fence: fence, started: now, res: res}:
		case <-c.done:
		}
	}()
}

// probe runs one check; a panic in a probe is a failed check with reason internal, not a dead
// worker.
func (c *checker) probe(ctx context.Context, t *target) (res probe.Result) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("probe panicked", "upstream", t.label, "server", t.server, "panic", fmt.Sprint(p))
			res = probe.Result{Reason: probe.Internal, Detail: "probe panicked"}
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	return t.prober.Probe(ctx, t.addr)
}

func (c *checker) finish(ctx context.Context, o outcome) {
	own := c.owned[o.t]
	if own == nil || own.fence != o.fence {
		return // lost the slot while probing: the result is not ours to write
	}
	own.running = false
	if ctx.Err() != nil {
		return
	}
	s := o.t.slot
	if o.res.Reason == probe.LocalError {
		// This host could not run the check (out of descriptors): that says nothing about
		// the server, so nothing is recorded; the next check is on schedule.
		if now := time.Now(); now.Sub(c.lastLocalLog) > 10*time.Second {
			c.lastLocalLog = now
			c.log.Warn("check not run: this host is out of resources; server state left as it is", "upstream", o.t.label, "server", o.t.server, "detail", o.res.Detail)
		}
		return
	}
	tr, err := s.Record(c.tok, own.fence, shm.Result{
		OK: o.res.OK(), Reason: uint8(o.res.Reason), Status: o.res.Status, RTT: o.res.RTT, Detail: o.res.Detail,
	}, o.t.rise, o.t.fall)
	if errors.Is(err, shm.ErrFenced) || errors.Is(err, shm.ErrNotOwner) {
		delete(c.owned, o.t)
		return
	}
	if ag := o.res.Agent; ag != nil {
		c.applyAgent(o.t, ag)
	}
	if tr.Restored {
		c.table.AppendEvent(shm.Event{Kind: shm.EventPassive, Slot: s.Index(), Address: o.t.server, Label: o.t.label,
			Old: uint8(shm.Down), New: uint8(shm.Up), Pid: c.tok.Pid()})
		c.log.Info("server restored after passive ejection", "upstream", o.t.label, "server", o.t.server)
	}
	if tr.Changed() {
		c.table.AppendEvent(shm.Event{Kind: shm.EventHealth, Slot: s.Index(), Address: o.t.server, Label: o.t.label,
			Old: uint8(tr.From), New: uint8(tr.To), Reason: uint8(o.res.Reason), Pid: c.tok.Pid(), Extra: uint64(tr.Streak)})
		c.logTransition(o.t, tr, o.res)
	}
	now := shm.Now()
	if iv := o.t.intervalAfter(o.res.OK(), tr.To); iv != o.t.interval {
		// start scheduled the next check one interval on; this result asks for another.
		s.SetNextDue(max(o.started+int64(iv), now))
	}
	s.Renew(c.tok, c.leaseFor(o.t, now))
	// Hand the slot back to its preferred worker right after a check, so the next one is
	// made there on schedule (by the view of the last scan: reading the worker table for
	// every result would cost as much as the check).
	v := c.last
	if pref := v.preferred(o.t.seed); pref != 0 && pref != c.tok && v.isLive(pref) && v.gen == c.gen {
		if s.Release(c.tok) {
			delete(c.owned, o.t)
		}
	}
}

func (c *checker) logTransition(t *target, tr shm.Transition, res probe.Result) {
	attrs := []any{"upstream", t.label, "server", t.server, "from", tr.From.String(), "state", tr.To.String()}
	if res.OK() {
		attrs = append(attrs, "after", tr.Streak, "rtt", res.RTT.Round(time.Microsecond))
		c.log.Info("server up", attrs...)
		return
	}
	attrs = append(attrs, "reason", res.Reason.String(), "detail", res.Detail, "after", tr.Streak)
	c.log.Warn("server down", attrs...)
}

// seedOf derives a slot's deterministic seed from its key.
func seedOf(key uint64, addr string) uint64 {
	h := fnv.New64a()
	var b [8]byte
	for i := range b {
		b[i] = byte(key >> (8 * i))
	}
	h.Write(b[:])
	h.Write([]byte(addr))
	return mix(h.Sum64())
}

// applyAgent writes what an agent check asked for into the table: a weight in percent of the
// configured one, and an admin state (drain, maint, ready) kept apart from the operator's. Every
// worker's balancer honours both at once; an admin change is an event and a log line.
func (c *checker) applyAgent(t *target, ag *probe.AgentReply) {
	s := t.slot
	admin := s.State().AgentAdmin()
	switch ag.Admin {
	case "ready":
		admin = shm.Ready
	case "drain":
		admin = shm.Drain
	case "maint":
		admin = shm.Maint
	}
	weight := ag.Weight
	if weight < 0 {
		weight = s.AgentWeight() // a line without a weight keeps the last one
	}
	if old := s.SetAgent(weight, admin); old != admin {
		c.table.AppendEvent(shm.Event{Kind: shm.EventAdmin, Slot: s.Index(), Address: t.server, Label: t.label,
			Old: uint8(old), New: uint8(admin), Pid: c.tok.Pid(), Extra: 1})
		c.log.Info("agent set admin state", "upstream", t.label, "server", t.server, "from", old.String(), "to", admin.String(), "weight_pct", weight)
	}
}
