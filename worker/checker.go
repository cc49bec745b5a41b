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
	running bool // a probe is in flight
}

type outcome struct {
	t       *target
	fence   uint32
	due     int64 // the due time the probe was made for (monotonic ns)
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
	inflight     int // probes started and not yet finished
	sem          chan struct{}
	last         view      // the worker table as the last scan saw it
	lastLocalLog time.Time // rate limit of the "out of resources" warning
	probes       sync.WaitGroup
	ctx          context.Context // cancelled by Stop; in-flight probes run under it
	cancel       context.CancelFunc
	done         chan struct{}
	stopped      sync.Once

	// The handover (handover.go).
	drainReq   chan struct{} // closed by Drain
	drainOnce  sync.Once
	draining   bool          // run saw drainReq: no more claims or probes, slots handed back
	superseded chan struct{} // closed by run once a newer generation holds every slot it had
	handedOver bool          // superseded is closed
}

const maxConcurrentProbes = 1024

// minScanGap bounds how often the checker walks its slots: a check starts at most this late.
const minScanGap = 5 * time.Millisecond

func newChecker(t *shm.Table, tok shm.Token, index int, gen uint64, targets []*target, log *slog.Logger) *checker {
	return &checker{
		table: t, tok: tok, index: index, gen: gen, targets: targets, log: log,
		tick:       50 * time.Millisecond,
		wake:       make(chan struct{}, 1),
		results:    make(chan outcome, 64),
		owned:      map[*target]*ownership{},
		sem:        make(chan struct{}, maxConcurrentProbes),
		done:       make(chan struct{}),
		drainReq:   make(chan struct{}),
		superseded: make(chan struct{}),
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

// Stop is the fast stop: it cancels in-flight probes (their results are dropped and their due
// times stay in the table, so the next owner makes those checks at once), waits for every probe
// goroutine, and releases every slot this worker owns, so that the next owner takes over at
// once. It is idempotent; after Drain it cuts short what the drain still waits for.
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
	drain := c.drainReq
	for {
		select {
		case <-ctx.Done():
			return
		case <-drain:
			drain = nil
			c.draining = true
			c.handBack()
		case o := <-c.results:
			// Record it and go back to waiting: the armed timer brings the next scan. A scan
			// after every result would cost servers x results per interval (10,000 servers:
			// most of a core).
			c.finish(o)
		case <-timer.C:
			c.rescan(timer)
		case <-c.wake:
			c.rescan(timer)
		}
		if c.draining && c.inflight == 0 {
			return // every probe recorded, every slot handed back
		}
	}
}

// rescan scans and arms timer for the next one: when the next owned check is due, or one tick
// on to look for claims; scans are at least minScanGap apart, so checks due close together start
// in one scan. A draining checker does not scan.
func (c *checker) rescan(timer *time.Timer) {
	if c.draining {
		return
	}
	wait := time.Duration(c.scan() - shm.Now())
	timer.Reset(max(minScanGap, min(wait, c.tick)))
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

// takeable reports whether a slot owned by owner may be claimed: it is free, its owner is gone
// (reaped by the master), or its owner's lease has lapsed (a hung owner, or no master to bury
// it). An owner that drains or belongs to an older generation is alive: it hands its slots back
// itself, each once its probe in flight is recorded (handover.go), so its slots are not taken
// from under that probe.
func (v view) takeable(owner shm.Token, lease, now int64) bool {
	if owner == 0 {
		return true
	}
	w, ok := v.workers[owner]
	switch {
	case !ok: // its entry was freed: the process is gone
		return true
	case w.State == shm.WorkerDead || w.State == shm.WorkerFree:
		return true
	}
	return lease < now
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
			if o.running {
				continue
			}
			if v.gen > c.gen {
				c.release(t) // a newer generation is published: hand the slot to it
				continue
			}
			due := s.NextDue()
			if now >= due {
				c.start(t, o, due, now)
			}
			if !o.running {
				next = min(next, max(due, now))
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
	c.checkSuperseded()
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

// start runs a probe of t for the check due at due (the slot's due time stays as it is until the
// result is recorded), ending by probeDeadline.
func (c *checker) start(t *target, o *ownership, due, now int64) {
	select {
	case c.sem <- struct{}{}:
	default:
		return // at the limit; try again next tick
	}
	o.running = true
	c.inflight++
	fence := o.fence
	limit := time.Duration(probeDeadline(due, now, t.interval, t.timeout) - now)
	c.probes.Add(1)
	ctx := c.ctx
	go func() {
		defer c.probes.Done()
		defer func() { <-c.sem }()
		res := c.probe(ctx, t, limit)
		select {
		case c.results <- outcome{t: t, fence: fence, due: due, started: now, res: res}:
		case <-c.done:
		}
	}()
}

// probe runs one check; a panic in a probe is a failed check with reason internal, not a dead
// worker.
func (c *checker) probe(ctx context.Context, t *target, limit time.Duration) (res probe.Result) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("probe panicked", "upstream", t.label, "server", t.server, "panic", fmt.Sprint(p))
			res = probe.Result{Reason: probe.Internal, Detail: "probe panicked"}
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return t.prober.Probe(ctx, t.addr)
}

// finish records a probe's result under the fence it was started with, moves the slot's due
// time on by the schedule, and then either hands the slot back (to its preferred worker, to a
// newer generation, or because this checker drains) or, if the next check is already due (a probe
// that took its whole interval), starts it at once.
func (c *checker) finish(o outcome) {
	c.inflight--
	own := c.owned[o.t]
	if own == nil || own.fence != o.fence {
		return // lost the slot while probing: the result is not ours to write
	}
	own.running = false
	if c.ctx.Err() != nil {
		return // cut short by Stop: the due time stays, the next owner makes the check
	}
	s := o.t.slot
	iv := o.t.interval
	if o.res.Reason == probe.LocalError {
		// This host could not run the check (out of descriptors): that says nothing about
		// the server, so nothing is recorded; the next check is on schedule.
		if now := time.Now(); now.Sub(c.lastLocalLog) > 10*time.Second {
			c.lastLocalLog = now
			c.log.Warn("check not run: this host is out of resources; server state left as it is", "upstream", o.t.label, "server", o.t.server, "detail", o.res.Detail)
		}
	} else {
		tr, ok := c.record(o, own.fence)
		if !ok {
			delete(c.owned, o.t)
			c.checkSuperseded()
			return
		}
		iv = o.t.intervalAfter(o.res.OK(), tr.To)
	}
	s.SetNextDue(nextDue(o.due, o.started, iv))
	now := shm.Now()
	s.Renew(c.tok, c.leaseFor(o.t, now))
	if c.handOff(o.t) {
		c.release(o.t)
		c.checkSuperseded()
		return
	}
	if due := s.NextDue(); now >= due {
		c.start(o.t, own, due, now)
	}
}

// record writes o's result into the table; false means the slot was taken over meanwhile.
func (c *checker) record(o outcome, fence uint32) (shm.Transition, bool) {
	s := o.t.slot
	tr, err := s.Record(c.tok, fence, shm.Result{
		OK: o.res.OK(), Reason: uint8(o.res.Reason), Status: o.res.Status, RTT: o.res.RTT, Detail: o.res.Detail,
	}, o.t.rise, o.t.fall)
	if errors.Is(err, shm.ErrFenced) || errors.Is(err, shm.ErrNotOwner) {
		return tr, false
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
	return tr, true
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
