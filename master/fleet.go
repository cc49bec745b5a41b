package master

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"hcproxy/config"
	"hcproxy/fleet"
	"hcproxy/shm"
	"hcproxy/status"
)

// The fleet's seam (docs/fleet.md). With a [fleet], the master runs one fleet.Coordinator for
// the host and a fleetAgent that carries its decisions into the table, in a goroutine of its
// own so that a reload or a stop never delays them:
//
//   - Keys: after each (re)load the agent gets the slots of the current generation; their keys
//     (SlotKey: address and check hash) go to SetKeys.
//   - Slots this host does not check (not in Owned): the agent sets their remote bit, the
//     workers hand them back (worker/sweep.go), the agent claims each freed slot under a token
//     of its own and writes the fleet's vote into it with shm.WriteFleet (fenced like a probe's
//     result), with a fleet event naming the hosts that decided.
//   - Slots it checks: the agent clears the remote bit and releases its claim, the workers take
//     them (the master nudges them), and the agent publishes each change of the local verdict
//     (the health the workers recorded, after their rise/fall) once a local check was recorded.
//   - Fallback (etcd lost, not joined yet): every remote bit is cleared, every claim of the
//     agent released: the host checks everything itself, starting from the states it had.
//
// The agent never waits on etcd: the coordinator's reads are snapshots and its Publish and
// SetKeys return at once.

// fleetTick is how often the agent looks at the table and the coordinator besides the
// coordinator's change signals: the pace at which local verdicts are published and a lapsed
// lease (which the coordinator does not signal) is noticed.
const fleetTick = 100 * time.Millisecond

// SlotKey is the fleet's key of a checked server: its address and its check's hash, the same
// on every host whose config has the same server and check.
func SlotKey(addr string, check uint64) string { return fmt.Sprintf("%s#%016x", addr, check) }

// fleetAgent carries the coordinator's view into the table; see above.
type fleetAgent struct {
	c          *fleet.Coordinator
	cfg        fleet.Config
	table      *shm.Table
	log        *slog.Logger
	tok        shm.Token     // the master's token on remote slots
	nudge      chan struct{} // cap 1: the workers should look at every slot now
	statusPath string        // the fleet status file for hcctl fleet ("" for none)

	mu     sync.Mutex
	slots  map[string]int // key -> slot index, of the current generation
	bySlot map[int]bool   // the slot indices in slots
	wake   chan struct{}  // cap 1: slots changed

	// Owned by run's goroutine.
	held      map[int]uint32        // remote slots the agent owns: the fence of its claim
	localFrom map[int]uint64        // checks a slot had when it became local: publish only past them
	published map[string]shm.Health // the last verdict published per key
	mode      shm.FleetMode
	modeSince time.Time // when mode was entered
	lastFile  time.Time
	fileDirty bool
}

// newFleetAgent makes the coordinator of f; it does not connect yet.
func newFleetAgent(f *config.Fleet, table *shm.Table, tablePath string, log *slog.Logger) (*fleetAgent, error) {
	cfg, err := fleet.FromConfig(f)
	if err != nil {
		return nil, err
	}
	c, err := fleet.New(cfg, log)
	if err != nil {
		return nil, err
	}
	a := &fleetAgent{c: c, cfg: cfg, table: table, log: log, tok: table.NewToken(os.Getpid()),
		nudge: make(chan struct{}, 1), wake: make(chan struct{}, 1), slots: map[string]int{},
		held: map[int]uint32{}, localFrom: map[int]uint64{}, published: map[string]shm.Health{}}
	if tablePath != "" {
		a.statusPath = status.FleetStatusPath(tablePath)
	}
	return a, nil
}

// setSlots gives the agent the slots of the generation now current and the coordinator their
// keys.
func (a *fleetAgent) setSlots(used map[int]bool) {
	m := make(map[string]int, len(used))
	by := make(map[int]bool, len(used))
	keys := make([]string, 0, len(used))
	for i := range used {
		s := a.table.Slot(i)
		k := SlotKey(s.Address(), s.Key())
		m[k], by[i] = i, true
		keys = append(keys, k)
	}
	a.mu.Lock()
	a.slots, a.bySlot = m, by
	a.mu.Unlock()
	a.c.SetKeys(keys)
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// start runs the coordinator and the agent until stop.
func (a *fleetAgent) start() (stop func(leave bool)) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = a.c.Run(ctx) }()
	agentCtx, stopAgent := context.WithCancel(ctx)
	agentDone := make(chan struct{})
	go func() { defer wg.Done(); defer close(agentDone); a.run(agentCtx) }()
	var once sync.Once
	return func(leave bool) {
		once.Do(func() {
			stopAgent()
			<-agentDone
			if leave && !a.c.Fallback() {
				if err := a.c.Leave(context.Background()); err != nil {
					a.log.Warn("fleet: leave", "err", err)
				} else {
					a.log.Info("fleet: left the fleet", "host", a.cfg.Host)
				}
			}
			cancel()
			wg.Wait()
			a.c.Close()
			if a.statusPath != "" {
				os.Remove(a.statusPath)
			}
			a.table.SetFleetStats(shm.FleetStats{Mode: shm.FleetFallback, RoundTrips: a.c.Stats().RoundTrips})
		})
	}
}

func (a *fleetAgent) run(ctx context.Context) {
	tick := time.NewTicker(fleetTick)
	defer tick.Stop()
	for {
		a.apply()
		select {
		case <-ctx.Done():
			return
		case <-a.c.Changes():
			a.fileDirty = true // members, claims or votes moved: the status file shows them
		case <-a.wake:
		case <-tick.C:
		}
	}
}

// apply makes the table agree with the coordinator once.
func (a *fleetAgent) apply() {
	a.mu.Lock()
	slots, bySlot := a.slots, a.bySlot
	a.mu.Unlock()
	fallback := a.c.Fallback()
	var owned map[string]bool
	var view map[string]fleet.Vote
	if !fallback {
		owned, view = a.c.Owned(), a.c.View()
		if view == nil { // the lease lapsed between the two reads
			fallback = true
		}
	}
	mode := shm.FleetJoined
	if fallback {
		mode = shm.FleetFallback
	}
	if mode != a.mode {
		if mode == shm.FleetFallback && a.mode != 0 {
			a.log.Warn("fleet: fallback: checking every server on this host", "host", a.cfg.Host)
		} else if mode == shm.FleetJoined {
			a.log.Info("fleet: joined: checking the servers this host holds claims on", "host", a.cfg.Host, "members", len(a.c.Members()), "claims", len(owned))
		}
		a.mode, a.modeSince, a.fileDirty = mode, time.Now(), true
	}
	moved := false
	// Slots no longer in the generation: let go of them.
	for i := range a.held {
		if !bySlot[i] {
			a.table.Slot(i).SetRemote(false)
			a.table.Slot(i).Release(a.tok)
			delete(a.held, i)
		}
	}
	var live map[shm.Token]shm.WorkerInfo
	now := shm.Now()
	for key, i := range slots {
		s := a.table.Slot(i)
		if !s.Used() {
			continue
		}
		_, known := view[key] // SetKeys is taken by the coordinator's loop: a new key is local until then
		if fallback || owned[key] || !known {
			if a.makeLocal(i, s) {
				moved = true
			}
			a.publishLocal(key, i, s)
			continue
		}
		if !s.SetRemote(true) {
			moved, a.fileDirty = true, true
		}
		fence, ok := a.held[i]
		if !ok {
			if live == nil {
				live = a.workers()
			}
			if fence, ok = a.claim(s, live, now); !ok {
				continue // a worker still owns it: it hands it back at its next step
			}
			a.held[i] = fence
		}
		a.writeVote(i, s, fence, view[key])
	}
	if moved {
		select {
		case a.nudge <- struct{}{}:
		default:
		}
	}
	a.table.SetFleetStats(a.stats(mode))
	a.writeStatus(slots, view)
}

// makeLocal makes slot i checked here: remote bit cleared, the agent's claim released. It
// reports whether anything changed (the workers are then nudged).
func (a *fleetAgent) makeLocal(i int, s shm.Slot) bool {
	_, held := a.held[i]
	was := s.SetRemote(false)
	if held {
		s.Release(a.tok)
		delete(a.held, i)
	}
	if was || held {
		a.localFrom[i] = s.Checks()
		a.fileDirty = true
		return true
	}
	return false
}

// publishLocal publishes the local verdict of slot i (checked here) when it changed, once a
// local check was recorded since the slot became local (before that its health is the fleet's).
func (a *fleetAgent) publishLocal(key string, i int, s shm.Slot) {
	h := s.State().Health()
	if h != shm.Up && h != shm.Down {
		return
	}
	if from, ok := a.localFrom[i]; ok {
		if s.Checks() <= from {
			return
		}
		delete(a.localFrom, i)
	}
	if a.published[key] == h {
		return
	}
	a.published[key] = h
	a.c.Publish(key, h == shm.Up)
	a.fileDirty = true
}

// workers returns the live workers' entries, by token.
func (a *fleetAgent) workers() map[shm.Token]shm.WorkerInfo {
	m := map[shm.Token]shm.WorkerInfo{}
	for _, w := range a.table.Workers() {
		if w.Token != 0 {
			m[w.Token] = w
		}
	}
	return m
}

// claim takes a remote slot for the agent when a worker no longer holds it: free, its owner
// gone or dead, or its lease lapsed (a hung owner), the same rules as a worker's takeover.
func (a *fleetAgent) claim(s shm.Slot, live map[shm.Token]shm.WorkerInfo, now int64) (uint32, bool) {
	owner := s.Owner()
	if owner == a.tok {
		return s.Claim(owner, a.tok, now+int64(time.Hour)) // ours from before: a fresh fence
	}
	if owner != 0 {
		w, ok := live[owner]
		if ok && w.State != shm.WorkerDead && s.Lease() >= now {
			return 0, false
		}
	}
	// The lease is not a deadline for the agent (workers never take a remote slot); it is
	// renewed on every claim only so that the table shows a live owner.
	return s.Claim(owner, a.tok, now+int64(time.Hour))
}

// writeVote writes the fleet's vote on a remote slot the agent holds; Unknown (no checker has
// published yet) leaves the state as it is.
func (a *fleetAgent) writeVote(i int, s shm.Slot, fence uint32, v fleet.Vote) {
	var h shm.Health
	switch v.State {
	case fleet.Up:
		h = shm.Up
	case fleet.Down:
		h = shm.Down
	default:
		return
	}
	if s.State().Health() == h && s.State().Fence() == fence {
		return
	}
	summary := voteSummary(v)
	tr, err := s.WriteFleet(a.tok, fence, h, summary)
	if err != nil {
		delete(a.held, i) // taken from us (the slot was freed or reallocated): claim again
		return
	}
	if !tr.Changed() {
		return
	}
	a.fileDirty = true
	deciders := v.Up
	if h == shm.Down {
		deciders = v.Down
	}
	a.table.AppendEvent(shm.Event{Kind: shm.EventFleet, Slot: i, Address: s.Address(), Label: strings.Join(deciders, ","),
		Old: uint8(tr.From), New: uint8(tr.To), Pid: os.Getpid(),
		Extra: uint64(min(len(v.Checkers), 255)) | uint64(min(len(v.Up), 255))<<8 | uint64(min(len(v.Down), 255))<<16})
	attrs := []any{"upstream", s.Label(), "server", s.Address(), "from", tr.From.String(), "state", tr.To.String(), "source", summary}
	if h == shm.Down {
		a.log.Warn("server down", attrs...)
	} else {
		a.log.Info("server up", attrs...)
	}
}

// voteSummary says who decided: "fleet: h1, h2 down", "fleet: h1 up; h2 down".
func voteSummary(v fleet.Vote) string {
	var parts []string
	if len(v.Up) > 0 {
		parts = append(parts, strings.Join(v.Up, ", ")+" up")
	}
	if len(v.Down) > 0 {
		parts = append(parts, strings.Join(v.Down, ", ")+" down")
	}
	return "fleet: " + strings.Join(parts, "; ")
}

func (a *fleetAgent) stats(mode shm.FleetMode) shm.FleetStats {
	st := a.c.Stats()
	return shm.FleetStats{Mode: mode, Members: len(a.c.Members()), Claims: int(st.Claims), RoundTrips: st.RoundTrips,
		Writes: st.Writes, Fallbacks: st.Fallbacks, Sessions: st.Sessions, SinceMs: a.modeSince.UnixMilli()}
}

// writeStatus rewrites the status file after a change, at most every half second, and every 5s
// (so that hcctl can tell a live file from a stale one).
func (a *fleetAgent) writeStatus(slots map[string]int, view map[string]fleet.Vote) {
	if a.statusPath == "" {
		return
	}
	since := time.Since(a.lastFile)
	if since < 500*time.Millisecond || (!a.fileDirty && since < 5*time.Second) {
		return
	}
	a.lastFile, a.fileDirty = time.Now(), false
	fs := a.stats(a.mode)
	st := status.FleetStatus{Host: a.cfg.Host, MasterPid: os.Getpid(), UpdatedUnixMs: time.Now().UnixMilli(), Mode: a.mode.String(),
		Checkers: a.cfg.Checkers, LeaseTTLMs: a.cfg.TTL.Milliseconds(), Members: a.c.Members(), Endpoints: a.cfg.Endpoints,
		Stats: status.Fleet{Mode: fs.Mode.String(), Members: fs.Members, Claims: fs.Claims, RoundTrips: fs.RoundTrips,
			Writes: fs.Writes, Fallbacks: fs.Fallbacks, Sessions: fs.Sessions, SinceUnixMs: fs.SinceMs}}
	if st.Members == nil {
		st.Members = []string{}
	}
	for key, i := range slots {
		s := a.table.Slot(i)
		srv := status.FleetServer{Key: key, Address: s.Address(), Upstream: s.Label(), Slot: i,
			CheckedHere: a.mode != shm.FleetJoined || !s.Remote(), Local: s.State().Health().String()}
		if v, ok := view[key]; ok {
			srv.Fleet, srv.Checkers, srv.Up, srv.Down = v.State.String(), v.Checkers, v.Up, v.Down
		}
		st.Servers = append(st.Servers, srv)
	}
	sort.Slice(st.Servers, func(i, j int) bool { return st.Servers[i].Key < st.Servers[j].Key })
	b, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = writeFileAtomic(a.statusPath, append(b, '\n'))
	}
	if err != nil {
		a.log.Warn("fleet: write the status file for hcctl fleet", "path", a.statusPath, "err", err)
	}
}

// writeFileAtomic replaces path with b through a new file in its directory (mode 0600, as the
// table's) renamed over it.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
