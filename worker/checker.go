package worker

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
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

	// Touched only by the checker's run goroutine, except conn (by the probe in flight).
	cp   probe.ConnProber // prober as a ConnProber, nil if it is not one
	conn probe.Conn       // the check's connection between probes (keepalive) and its buffers
	own  *ownership       // this worker owns the slot; nil if not
	busy bool             // a probe of it is in flight (perhaps under a lost fence)
	seq  uint64           // probes of it started, to tell them apart in c.expiries
}

// ownership is what the checker knows about a slot it owns.
type ownership struct {
	t       *target
	fence   uint32
	running bool  // a probe is in flight
	due     int64 // when its next check is due (monotonic ns), as in the slot
	idx     int   // position in the checker's due heap; -1 when not queued
	parked  bool  // out of the heap until the probe of an older fence ends (target.busy)
}

type outcome struct {
	t       *target
	fence   uint32
	due     int64 // the due time the probe was made for (monotonic ns)
	started int64 // monotonic ns when the probe started
	res     probe.Result
}

// checker schedules and runs this worker's checks; see the package comment and sweep.go. One
// goroutine (run) owns all of its state; a bounded pool of probe goroutines (pool.go) runs the
// probes and sends their outcomes back.
type checker struct {
	table   *shm.Table
	tok     shm.Token
	index   int
	gen     uint64
	targets []*target
	log     *slog.Logger

	wake         chan struct{}
	results      chan outcome
	jobs         chan job
	owned        map[*target]*ownership
	queue        dueHeap    // owned checks not in flight, by due time
	expiries     expiryHeap // deadlines of the ConnProber probes in flight
	inflight     int        // probes started and not yet finished
	gate         probe.Gate // holds the answers' reads until the next wake-up (openGate)
	gateSince    int64      // when the first probe behind the shut gate started or arrived; 0: none
	poolSize     int        // probe goroutines started
	sweep        sweeper
	last         view      // the worker table as the last sweep step saw it
	lastLocalLog time.Time // rate limit of the "out of resources" warning
	probes       sync.WaitGroup
	ctx          context.Context // cancelled by Stop; in-flight probes run under it
	cancel       context.CancelFunc
	done         chan struct{}
	stopped      sync.Once
	stats        checkerStats

	// The handover (handover.go).
	drainReq   chan struct{} // closed by Drain
	drainOnce  sync.Once
	draining   bool          // run saw drainReq: no more claims or probes, slots handed back
	superseded chan struct{} // closed by run once a newer generation holds every slot it had
	handedOver bool          // superseded is closed
}

// checkerStats counts the scheduler's work, for tests and diagnostics.
type checkerStats struct {
	visits atomic.Int64 // slots looked at by claim sweeps
	loops  atomic.Int64 // iterations of the run loop
	starts atomic.Int64 // probes started
	wokeBy atomic.Int64 // iterations of the run loop that a probe's result woke
}

const maxConcurrentProbes = 1024

// coalesce is how early a check may start so that checks due close together start in one
// wake-up of the run loop: 4 ms saved a quarter of the context switches per check with
// keepalive. (It was put back to 1 ms for a while, when TestNoCheckLostOrDoubledAcrossHandovers
// lost a check in its master-restart phase; the cause was the orphans' successor wait, 2 s then,
// shorter than a loaded machine's race-built master took to get its workers ready: see
// successorWait.)
const coalesce = 4 * time.Millisecond

func newChecker(t *shm.Table, tok shm.Token, index int, gen uint64, targets []*target, log *slog.Logger) *checker {
	c := &checker{
		table: t, tok: tok, index: index, gen: gen, targets: targets, log: log,
		wake:       make(chan struct{}, 1),
		results:    make(chan outcome, maxConcurrentProbes),
		jobs:       make(chan job, maxConcurrentProbes),
		owned:      map[*target]*ownership{},
		done:       make(chan struct{}),
		drainReq:   make(chan struct{}),
		superseded: make(chan struct{}),
	}
	for _, tg := range targets {
		if tg.cp, _ = tg.prober.(probe.ConnProber); tg.cp != nil {
			tg.conn.SetOwnerDeadline(true) // run ends each probe at its deadline (expire)
		}
	}
	c.sweep = newSweeper(targets)
	return c
}

// Start runs the checker until Stop.
func (c *checker) Start(ctx context.Context) {
	ctx, c.cancel = context.WithCancel(ctx)
	c.ctx = probe.WithGate(ctx, &c.gate)
	go c.run(c.ctx)
}

// Nudge makes the checker look at every slot now (a worker died; its slots are takeable).
func (c *checker) Nudge() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Stop is the fast stop: it cancels in-flight probes (their results are dropped and their due
// times stay in the table, so the next owner makes those checks at once), waits for every probe
// goroutine, closes every kept connection, and releases every slot this worker owns, so that
// the next owner takes over at once. It is idempotent; after Drain it cuts short what the drain
// still waits for.
func (c *checker) Stop() {
	c.stopped.Do(func() {
		if c.cancel != nil {
			c.cancel()
			<-c.done
		}
		for _, t := range c.targets {
			if t.busy {
				t.conn.Close() // cut its I/O short
			}
		}
		c.probes.Wait()
		for _, t := range c.targets {
			t.conn.Close()
		}
		for t := range c.owned {
			t.slot.Release(c.tok)
		}
		c.table.Heartbeat(c.index, 0)
		c.owned = nil
	})
}

func (c *checker) run(ctx context.Context) {
	defer close(c.done)
	defer close(c.jobs) // the probers end once they have taken what is left (pool.go)
	defer c.gate.Open()
	timer := time.NewTimer(0)
	defer timer.Stop()
	drain := c.drainReq
	arrived := c.gate.Arrived()
	c.sweep.start(shm.Now())
	for {
		c.stats.loops.Add(1)
		waiter := false
		select {
		case <-arrived:
			waiter = true
		case <-ctx.Done():
			return
		case <-drain:
			drain = nil
			c.draining = true
			c.handBack()
		case o := <-c.results:
			c.stats.wokeBy.Add(1)
			runtime.Gosched() // the other probes released with it send theirs first (finishReady)
			c.finish(o)
			c.finishReady()
		case <-timer.C:
		case <-c.wake:
			c.nudged()
		}
		now := shm.Now()
		if waiter && c.gateSince == 0 {
			c.gateSince = now // a probe came to the gate after its last opening
		}
		c.expire(now)
		c.openGate(now)
		if c.draining {
			if c.inflight == 0 {
				return // every probe recorded, every slot handed back
			}
			// The probes still in flight end by their deadlines; the gate opens meanwhile.
			at := now + int64(coalesce)
			if e, ok := c.expiries.next(); ok {
				at = min(at, e)
			}
			timer.Reset(time.Duration(max(at-now, 0)))
			continue
		}
		if now >= c.sweep.next {
			c.step(now)
		}
		c.startDue(now)
		timer.Reset(time.Duration(c.nextWake(now) - now))
	}
}

// finishReady finishes every result already sent, so that the answers read at one opening of
// the gate cost one pass of the run loop (its expiries, sweep step and timer), not one each.
// For that the run loop, woken by the first result, yields once (runtime.Gosched) before it
// finishes it: with one P the goroutine a channel send wakes runs next, so without the yield
// every released probe's result woke a pass of its own (1.1 passes per check at 10,000 checks;
// 0.16 with it, TestOneRunLoopPassFinishesAnOpening).
func (c *checker) finishReady() {
	for len(c.results) > 0 { // run is the only receiver: what len counts is there to take
		c.finish(<-c.results)
	}
}

// nextWake is when the run loop must wake up next: the next sweep step or the earliest owned
// check due, whichever is first (checks wait while the probe limit is reached: a result wakes
// the loop).
func (c *checker) nextWake(now int64) int64 {
	next := c.sweep.next
	if o := c.queue.peek(); o != nil && c.inflight < maxConcurrentProbes {
		next = min(next, o.due)
	}
	if at, ok := c.expiries.next(); ok {
		next = min(next, at)
	}
	if c.gateSince != 0 {
		next = min(next, c.gateSince+int64(coalesce))
	}
	return max(next, now)
}

// gateHold is the least time the gate stays shut after the first probe started behind it: the
// answers of loopback or LAN servers are in by then, and a wake-up sooner than that (a result,
// a nudge) leaves them for the next one.
const gateHold = time.Millisecond

// openGate opens the gate (probe.Gate) when the probes started behind it have waited gateHold,
// and at every wake-up while draining: the waiting probes read their answers, all in this
// wake-up. Probes started later wait for the next; nextWake comes at most coalesce after the
// first of them.
func (c *checker) openGate(now int64) {
	if c.draining || (c.gateSince != 0 && now-c.gateSince >= int64(gateHold)) {
		c.gate.Open()
		c.gateSince = 0
	}
}

// expire ends every ConnProber probe whose deadline has come (the probe then fails with a
// timeout and its result comes back as any other).
func (c *checker) expire(now int64) {
	for {
		at, ok := c.expiries.next()
		if !ok || at > now {
			return
		}
		e := c.expiries.pop()
		if e.t.busy && e.t.seq == e.seq {
			e.t.conn.Expire()
		}
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
// back to it. A worker beats on every step of its claim sweep (sweep.go), at least every 100ms.
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

// leaseUntil is the lease of t's slot when its next probe starts at from: the probe's timeout
// and 2s of slack after it. The owner renews it around every probe (at the start, and after the
// result with the next due time), so only a hung or dead owner lets it lapse.
func leaseUntil(t *target, from int64) int64 {
	return from + int64(t.timeout+2*time.Second)
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

// startDue starts every owned check that is due (within coalesce), up to the probe limit.
// The due time in the slot is authoritative (only its owner moves it); a newer generation
// published since the last sweep step gets the slot instead.
func (c *checker) startDue(now int64) {
	newer := c.table.Generation() > c.gen
	for c.inflight < maxConcurrentProbes {
		o := c.queue.peek()
		if o == nil || o.due > now+int64(coalesce) {
			return
		}
		c.queue.remove(o)
		t := o.t
		if t.busy { // a probe of an older fence is still running: wait for it
			o.parked = true
			continue
		}
		if newer || t.slot.Remote() { // a newer generation, or another host of the fleet, checks it
			c.release(t)
			continue
		}
		due := t.slot.NextDue()
		if due > now+int64(coalesce) {
			o.due = due
			c.queue.push(o)
			continue
		}
		if !t.slot.Renew(c.tok, leaseUntil(t, now)) {
			c.log.Debug("check taken over", "upstream", t.label, "server", t.server, "by_pid", t.slot.Owner().Pid())
			c.drop(t) // taken over since we last looked: never probe it now
			continue
		}
		c.start(o, due, now)
	}
}

// start runs a probe of o's target for the check due at due (the slot's due time stays as it
// is until the result is recorded), ending by probeDeadline.
func (c *checker) start(o *ownership, due, now int64) {
	t := o.t
	o.running, t.busy = true, true
	c.inflight++
	if c.gateSince == 0 {
		c.gateSince = now
	}
	c.stats.starts.Add(1)
	end := probeDeadline(due, now, t.interval, t.timeout)
	t.seq++
	if t.cp != nil {
		c.expiries.push(expiry{at: end, t: t, seq: t.seq})
	}
	c.submit(job{t: t, fence: o.fence, due: due, started: now, deadline: time.Now().Add(time.Duration(end - now))})
}

// probe runs one check; a panic in a probe is a failed check with reason internal, not a dead
// worker. A ConnProber runs over the target's Conn with no context or timer of its own: the
// run loop ends it at its deadline (expire); Stop cuts it short by cancelling c.ctx and closing
// the Conn.
func (c *checker) probe(t *target, deadline time.Time) (res probe.Result) {
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("probe panicked", "upstream", t.label, "server", t.server, "panic", fmt.Sprint(p))
			res = probe.Result{Reason: probe.Internal, Detail: "probe panicked"}
		}
	}()
	if t.cp != nil {
		return t.cp.ProbeConn(c.ctx, t.addr, deadline, &t.conn)
	}
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel()
	return t.prober.Probe(ctx, t.addr)
}

// finish records a probe's result under the fence it was started with, moves the slot's due
// time on by the schedule, and then either hands the slot back (to its preferred worker, to a
// newer generation, or because this checker drains) or, if the next check is already due (a probe
// that took its whole interval), starts it at once.
func (c *checker) finish(o outcome) {
	c.inflight--
	t := o.t
	t.busy = false
	own := t.own
	if own == nil || own.fence != o.fence {
		if own != nil && own.parked { // reclaimed meanwhile: its check may start now
			own.parked = false
			c.queue.push(own)
		}
		return // lost the slot while probing: the result is not ours to write
	}
	own.running = false
	if c.ctx.Err() != nil {
		return // cut short by Stop: the due time stays, the next owner makes the check
	}
	s := t.slot
	iv := t.interval
	if o.res.Reason == probe.LocalError {
		// This host could not run the check (out of descriptors): that says nothing about
		// the server, so nothing is recorded; the next check is on schedule.
		if now := time.Now(); now.Sub(c.lastLocalLog) > 10*time.Second {
			c.lastLocalLog = now
			c.log.Warn("check not run: this host is out of resources; server state left as it is", "upstream", t.label, "server", t.server, "detail", o.res.Detail)
		}
	} else {
		tr, ok := c.record(o, own.fence)
		if !ok {
			c.drop(t)
			c.checkSuperseded()
			return
		}
		iv = t.intervalAfter(o.res.OK(), tr.To)
	}
	own.due = nextDue(o.due, o.started, iv)
	s.SetNextDue(own.due)
	now := shm.Now()
	s.Renew(c.tok, leaseUntil(t, max(own.due, now)))
	if c.handOff(t) {
		c.release(t)
		c.checkSuperseded()
		return
	}
	c.queue.push(own) // started by the run loop if it is already due
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
