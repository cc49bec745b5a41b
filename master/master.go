package master

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"

	"hcproxy/config"
	"hcproxy/internal/handoff"
	"hcproxy/internal/logs"
	"hcproxy/internal/pidfile"
	"hcproxy/shm"
	"hcproxy/version"
)

// readyTimeout bounds how long a new generation may take to report ready.
const readyTimeout = 30 * time.Second

// generation is one config's set of workers.
type generation struct {
	gen     uint64
	cfg     *config.Config
	cfgJSON []byte
	slots   []handoff.SlotRef
	used    map[int]bool // slot indices this generation uses
	fresh   []int        // slots allocated for it (freed again if it fails to start)
}

// Master is the master process.
type Master struct {
	sys       sys // processes, clock and signals (sys.go)
	path      string
	cfg       *config.Config
	log       *slog.Logger
	logFile   *logs.File
	logPath   string
	logFormat string
	lock      *flock.Flock
	table     *shm.Table
	listeners map[string]*os.File
	steer     *steering // listener steering (steering.go)
	lifelineR *os.File
	lifelineW *os.File
	events    chan event
	sigs      chan os.Signal

	cur      *generation
	procs    map[*proc]bool
	pending  []int // slots to free once no worker of an older generation is left
	backoff  time.Duration
	respawn  <-chan time.Time
	missing  int // workers of the current generation to respawn
	stopping bool

	// The fleet (fleet.go), with a [fleet] only: the agent, its stop (leave: revoke the lease
	// first), and its requests to nudge the workers (nil without a [fleet]).
	fleet      *fleetAgent
	stopFleet  func(leave bool)
	fleetNudge <-chan struct{}
}

// Run loads the config at path and runs the master in the foreground until it is stopped. It
// returns nil after a clean stop.
func Run(path string) error { return newMaster(path, osSys()).run() }

// newMaster returns a master for the config at path that starts its workers, reads the clock
// and receives its signals through s.
func newMaster(path string, s sys) *Master {
	return &Master{sys: s, path: path, listeners: map[string]*os.File{}, events: make(chan event, 64),
		procs: map[*proc]bool{}, sigs: make(chan os.Signal, 8)}
}

// run is Run's body: start-up, the first generation, then the run loop until a stop.
func (m *Master) run() error {
	cfg, err := config.Load(m.path)
	if err != nil {
		return err
	}
	m.cfg = cfg
	if err := prepareUser(cfg); err != nil {
		return err
	}
	if err := m.openLog(cfg); err != nil {
		return err
	}
	if m.lock, err = pidfile.Lock(cfg.PidFile); err != nil {
		return err
	}
	defer pidfile.Unlock(m.lock)
	// Signals first, so none that arrives during start-up is lost or kills us.
	defer m.sys.signals(m.sigs)()
	if m.table, err = shm.OpenMaster(cfg.Table, tableCapacity(cfg)); err != nil {
		return err
	}
	defer m.table.Close()
	if v := m.table.Replaced; v != 0 {
		m.log.Warn("the table had an older build's layout: replaced by a fresh table; health states, admin states (drain, maint) and counters start over",
			"table", cfg.Table, "old_layout", v, "layout", shm.Version)
	}
	m.table.SetMaster(os.Getpid())
	if m.retireStrangers() == 0 {
		m.table.ResetActive()
	}
	// A previous master's fleet marks: every server is checked here until this master's
	// coordinator, if any, joins the fleet.
	m.table.ClearRemote()
	m.table.SetFleetStats(shm.FleetStats{})
	if m.lifelineR, m.lifelineW, err = pipe(); err != nil {
		return err
	}
	defer m.lifelineW.Close()
	if m.steer, err = newSteering(cfg, m.log); err != nil {
		return err
	}
	if err := m.openListeners(cfg); err != nil {
		m.closeListeners(nil)
		return err
	}
	defer m.closeListeners(nil)
	g, err := m.prepare(cfg, m.table.Generation()+1)
	if err != nil {
		return err
	}
	m.freeUnused(g) // at start no worker of ours uses any other slot
	if cfg.Fleet != nil {
		if m.fleet, err = newFleetAgent(cfg.Fleet, m.table, cfg.Table, m.log); err != nil {
			return err
		}
		m.fleet.setSlots(g.used)
		m.stopFleet, m.fleetNudge = m.fleet.start(), m.fleet.nudge
		defer m.stopFleet(false)
	}
	if err := m.startGeneration(g); err != nil {
		return fmt.Errorf("start workers: %w", err)
	}
	m.log.Info("hcproxy started", "version", version.Version, "config", cfg.Path, "workers", cfg.Workers, "generation", g.gen, "table", cfg.Table)
	m.notifyReady(g)
	return m.loop()
}

// openLog opens cfg's error_log (stderr when unset) and makes it the master's log; on error the
// log in use stays.
func (m *Master) openLog(cfg *config.Config) error {
	lf, err := logs.Open(cfg.ErrorLog)
	if err != nil {
		if m.log != nil {
			m.log.Error("open error_log, keeping the current log", "path", cfg.ErrorLog, "err", err)
		}
		return fmt.Errorf("error_log: %w", err)
	}
	old := m.logFile
	m.logFile, m.logPath, m.logFormat = lf, cfg.ErrorLog, cfg.LogFormat
	m.log = logs.NewLogger(cfg.LogFormat, lf, logs.LevelOf(cfg.LogLevel)).With("pid", os.Getpid(), "role", "master")
	if old != nil {
		old.Close()
	}
	return nil
}

// tableCapacity leaves room for a reload that replaces every server at once.
func tableCapacity(cfg *config.Config) int { return 2 * cfg.MaxServers }

// retireStrangers marks the worker entries left by a previous master as draining, so the new
// generation takes their checks over; entries whose process is gone are freed. It returns how
// many are still alive.
func (m *Master) retireStrangers() int {
	n := 0
	for _, w := range m.table.Workers() {
		if w.Token == 0 || !alive(w.Token.Pid()) {
			m.table.FreeWorker(w.Index)
			continue
		}
		m.table.SetWorkerState(w.Index, shm.WorkerDraining)
		n++
	}
	return n
}

func alive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

func (m *Master) openListeners(cfg *config.Config) error {
	addrs := []string{}
	for _, s := range cfg.Servers {
		if m.steer.bpf() {
			if err := m.steer.open(s.Listen); err != nil {
				return err
			}
			continue
		}
		addrs = append(addrs, s.Listen)
	}
	if cfg.Status != nil {
		addrs = append(addrs, cfg.Status.Listen)
	}
	for _, a := range addrs {
		if m.listeners[a] != nil {
			continue
		}
		f, err := listen(a)
		if err != nil {
			return fmt.Errorf("listen %s: %w", a, err)
		}
		m.listeners[a] = f
	}
	return nil
}

// closeListeners closes the sockets that keep does not configure (all, when keep is nil).
func (m *Master) closeListeners(keep *config.Config) {
	want := map[string]bool{}
	if keep != nil {
		for _, s := range keep.Servers {
			want[s.Listen] = true
		}
		if keep.Status != nil {
			want[keep.Status.Listen] = true
		}
	}
	for a, f := range m.listeners {
		if !want[a] {
			f.Close()
			delete(m.listeners, a)
		}
	}
	m.steer.closeExcept(keep)
}

// prepare maps every server of cfg to its slot, allocating slots for new (address, check) keys
// in the configured initial state; existing keys keep their slot and state.
func (m *Master) prepare(cfg *config.Config, gen uint64) (*generation, error) {
	type key struct {
		check uint64
		addr  string
	}
	labels := map[key][]string{}
	checks := map[key]*config.Check{}
	weights := map[key]int{}
	slows := map[key]time.Duration{}
	var order []key
	for _, name := range cfg.UpstreamNames() {
		u := cfg.Upstreams[name]
		for _, s := range u.Servers {
			k := key{u.Check.Key(), s.Address}
			if _, seen := labels[k]; !seen {
				order = append(order, k)
				checks[k] = &u.Check
				weights[k] = s.Weight
				slows[k] = slowStart(u, s)
			}
			labels[k] = append(labels[k], name)
		}
	}
	idx := map[key]int{}
	g := &generation{gen: gen, cfg: cfg, used: map[int]bool{}}
	have := m.table.Index()
	for _, k := range order {
		label := strings.Join(labels[k], ",")
		c := checks[k]
		i, ok := have[shm.SlotKey{Check: k.check, Addr: k.addr}]
		if ok {
			m.table.UpdateSlot(i, label, c.Interval, weights[k])
		} else {
			h, _ := shm.ParseHealth(c.Initial)
			var err error
			if i, err = m.table.Alloc(k.check, k.addr, label, c.Interval, weights[k], h); err != nil {
				return g, err
			}
			g.fresh = append(g.fresh, i)
		}
		m.table.SetSlowStart(i, slows[k])
		idx[k] = i
		g.used[i] = true
	}
	for _, name := range cfg.UpstreamNames() {
		u := cfg.Upstreams[name]
		for _, s := range u.Servers {
			g.slots = append(g.slots, handoff.SlotRef{Upstream: name, Address: s.Address, Slot: idx[key{u.Check.Key(), s.Address}]})
		}
	}
	var err error
	g.cfgJSON, err = cfg.Marshal()
	return g, err
}

// slowStart is the slow-start ramp the balancers of upstream u give its server s: the server's
// own slow_start, else the upstream's (as worker's buildTargets sets upstream.Server.SlowStart);
// none under hash, which does not ramp. The table records it for the status page, like the
// weight, from the first upstream that lists the server.
func slowStart(u *config.Upstream, s config.UpstreamServer) time.Duration {
	if u.Balancer == "hash" {
		return 0
	}
	if s.SlowStart > 0 {
		return s.SlowStart
	}
	return u.SlowStart
}

// freeUnused frees every allocated slot that g does not use.
func (m *Master) freeUnused(g *generation) {
	for i := 0; i < m.table.Capacity(); i++ {
		if s := m.table.Slot(i); s.Used() && !g.used[i] {
			m.table.Free(i)
		}
	}
}

// startGeneration starts g's workers and waits until all are ready; on failure it kills them.
// On success g becomes current and is published in the table.
func (m *Master) startGeneration(g *generation) error {
	fresh := map[*proc]bool{}
	for i := 0; i < g.cfg.Workers; i++ {
		p, err := m.spawn(g)
		if err != nil {
			m.abort(fresh)
			return err
		}
		fresh[p] = true
		m.procs[p] = true
	}
	deadline := m.sys.after(readyTimeout)
	for n := 0; n < len(fresh); {
		select {
		case ev := <-m.events:
			if fresh[ev.p] && ev.kind == evExit {
				m.handle(ev)
				m.abort(fresh)
				return fmt.Errorf("worker %d exited before it was ready: %v", ev.p.pid, ev.err)
			}
			if fresh[ev.p] && ev.kind == evReady {
				ev.p.ready = true
				m.steer.ready(ev.p.index)
				n++
				continue
			}
			m.handle(ev)
		case <-deadline:
			m.abort(fresh)
			return fmt.Errorf("workers not ready after %v", readyTimeout)
		}
	}
	old := m.cur
	m.cur = g
	m.cfg = g.cfg
	m.table.SetGeneration(g.gen)
	m.backoff, m.missing = 0, 0
	if old != nil {
		for p := range m.procs {
			if p.gen < g.gen && !p.expected {
				m.drain(p)
			}
		}
	}
	return nil
}

// abort kills the processes of a generation that failed to start and waits for their exits.
func (m *Master) abort(ps map[*proc]bool) {
	for p := range ps {
		p.expected = true
		m.steer.drop(p.index)
		if p.proc != nil {
			p.proc.Signal(os.Kill)
		}
	}
	for m.count(ps) > 0 {
		m.handle(<-m.events)
	}
}

func (m *Master) count(ps map[*proc]bool) int {
	n := 0
	for p := range ps {
		if m.procs[p] {
			n++
		}
	}
	return n
}

// drain tells p to drain: the table marks it draining first, so the other workers may take its
// checks even before it releases them.
func (m *Master) drain(p *proc) {
	p.expected = true
	m.steer.drop(p.index) // no new connection for it from now on
	m.table.SetWorkerState(p.index, shm.WorkerDraining)
	p.send(handoff.MsgDrain)
}

// handle processes an event outside a generation start.
func (m *Master) handle(ev event) {
	p := ev.p
	switch ev.kind {
	case evReady:
		p.ready = true
		if !p.expected {
			m.steer.ready(p.index)
		}
		if m.cur != nil && p.gen == m.cur.gen {
			m.log.Info("worker respawned", "worker_pid", p.pid)
		}
	case evExit:
		m.steer.drop(p.index)
		delete(m.procs, p)
		if p.control != nil {
			p.control.Close()
		}
		// Its checks are free from now on: released explicitly, and its token leaves the table.
		if w := m.table.Worker(p.index); w.Token != 0 {
			m.table.ReleaseAll(w.Token)
		}
		m.table.FreeWorker(p.index)
		if p.expected || m.stopping {
			m.log.Info("worker exited", "worker_pid", p.pid, "generation", p.gen, "status", exitStatus(ev.err))
			m.freePending()
			return
		}
		for q := range m.procs {
			q.send(handoff.MsgNudge)
		}
		lived := m.sys.now().Sub(p.started)
		attrs := []any{"worker_pid", p.pid, "generation", p.gen, "status", exitStatus(ev.err), "lived", lived.Round(time.Millisecond)}
		if m.cur != nil && p.gen == m.cur.gen {
			attrs = append(attrs, "respawn_in", m.scheduleRespawn(lived, killed(ev.err)))
		}
		m.table.CountRestart(killed(ev.err))
		m.log.Error("worker exited unexpectedly", attrs...)
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit 0"
	}
	var ee interface{ ExitCode() int }
	if errors.As(err, &ee) && ee.ExitCode() >= 0 {
		return fmt.Sprintf("exit %d", ee.ExitCode())
	}
	return err.Error()
}

// scheduleRespawn replaces a crashed worker, at once the first time and with a doubling delay
// (up to 10s) while workers keep dying young, so a crash loop cannot spin the CPU. A worker
// killed by a signal (kill -9, the OOM killer) did not crash by itself: it is replaced at once,
// so kills from outside cannot shrink the pool. It returns the delay.
func (m *Master) scheduleRespawn(lived time.Duration, killed bool) time.Duration {
	m.missing++
	if killed {
		m.respawn = m.sys.after(0)
		return 0
	}
	switch {
	case lived > 10*time.Second:
		m.backoff = 0
	case m.backoff == 0:
		m.backoff = 100 * time.Millisecond
	default:
		m.backoff = min(2*m.backoff, 10*time.Second)
	}
	if m.respawn == nil {
		m.respawn = m.sys.after(m.backoff)
	}
	return m.backoff
}

func (m *Master) doRespawn() {
	m.respawn = nil
	for ; m.missing > 0; m.missing-- {
		p, err := m.spawn(m.cur)
		if err != nil {
			m.log.Error("respawn worker", "err", err)
			m.respawn = m.sys.after(max(m.backoff, time.Second))
			return
		}
		m.procs[p] = true
	}
}

// freePending frees the slots of removed servers, and closes the listeners the current
// generation does not use, once no worker older than the current generation is left.
func (m *Master) freePending() {
	if m.cur == nil {
		return
	}
	for p := range m.procs {
		if p.gen < m.cur.gen {
			return
		}
	}
	for _, i := range m.pending {
		if !m.cur.used[i] {
			m.table.Free(i)
		}
	}
	m.pending = nil
	m.closeListeners(m.cur.cfg)
}

func (m *Master) loop() error {
	housekeeping := time.NewTicker(time.Second)
	defer housekeeping.Stop()
	for {
		select {
		case sig := <-m.sigs:
			switch sig {
			case syscall.SIGHUP:
				m.reload()
			case syscall.SIGUSR1:
				if err := m.logFile.Reopen(); err != nil {
					m.log.Error("reopen error_log", "err", err)
				}
				for p := range m.procs {
					p.send(handoff.MsgReopen)
				}
				// One line per USR1 (the workers reopen theirs silently, logging only errors).
				m.log.Info("reopening logs", "error_log", m.logPath, "workers", len(m.procs))
			case syscall.SIGQUIT:
				return m.shutdown(true)
			case syscall.SIGTERM, syscall.SIGINT:
				return m.shutdown(false)
			}
		case ev := <-m.events:
			m.handle(ev)
		case <-m.respawn:
			m.doRespawn()
		case <-m.fleetNudge: // the fleet moved checks to or from this host
			for p := range m.procs {
				p.send(handoff.MsgNudge)
			}
		case <-housekeeping.C:
			m.retireGone()
			m.table.SetRuntime(-1, shm.ReadRuntime()) // the master's Go figures, for /metrics
		}
	}
}

// retireGone frees the entries of a previous master's workers once their processes are gone.
func (m *Master) retireGone() {
	mine := map[int]bool{}
	for p := range m.procs {
		mine[p.index] = true
	}
	for _, w := range m.table.Workers() {
		if !mine[w.Index] && !alive(w.Token.Pid()) {
			m.table.FreeWorker(w.Index)
		}
	}
}

// reload re-reads the config and replaces the workers with a new generation; on any error the
// running generation is left as it is.
func (m *Master) reload() {
	m.notifyReloading()
	defer m.notifyReloaded(m.cur.gen) // READY=1 again, whether the reload worked or failed
	ok := false
	defer func() { m.table.CountReload(ok) }() // for /metrics: reloads by outcome
	start := m.sys.now()
	cfg, err := config.Load(m.path)
	if err != nil {
		m.log.Error("reload failed: config rejected, keeping the running configuration", "err", err)
		return
	}
	if cfg.Table != m.cfg.Table || cfg.PidFile != m.cfg.PidFile || tableCapacity(cfg) > m.table.Capacity() {
		m.log.Error("reload failed: table, pid_file and a larger max_servers need a restart, keeping the running configuration")
		return
	}
	if !reflect.DeepEqual(cfg.Fleet, m.cfg.Fleet) {
		m.log.Error("reload failed: a change of [fleet] needs a restart, keeping the running configuration")
		return
	}
	if err := m.openListeners(cfg); err != nil {
		m.log.Error("reload failed, keeping the running configuration", "err", err)
		m.closeListeners(m.cfg)
		return
	}
	g, err := m.prepare(cfg, m.cur.gen+1)
	if err != nil {
		m.log.Error("reload failed, keeping the running configuration", "err", err)
		m.undoPrepare(g)
		return
	}
	if err := m.startGeneration(g); err != nil {
		m.log.Error("reload failed: new workers did not start, keeping the running configuration", "err", err)
		m.undoPrepare(g)
		return
	}
	for i := 0; i < m.table.Capacity(); i++ {
		if s := m.table.Slot(i); s.Used() && !g.used[i] {
			m.pending = append(m.pending, i)
		}
	}
	if cfg.ErrorLog != m.logPath || cfg.LogFormat != m.logFormat {
		m.openLog(cfg)
	}
	if m.fleet != nil {
		m.fleet.setSlots(g.used)
	}
	ok = true
	m.log.Info("reloaded", "generation", g.gen, "workers", cfg.Workers, "took", m.sys.now().Sub(start).Round(time.Millisecond))
	m.freePending()
}

// undoPrepare takes back what a reload that failed after prepare did: it frees the slots it
// allocated, restores the running config's labels, intervals and weights, and closes the
// listeners only the failed config wanted.
func (m *Master) undoPrepare(g *generation) {
	if g != nil {
		for _, i := range g.fresh {
			m.table.Free(i)
		}
	}
	if _, err := m.prepare(m.cfg, m.cur.gen); err != nil {
		m.log.Error("restore the running configuration's slots", "err", err)
	}
	m.closeListeners(mergeConfigs(m.cfg, m.olderConfigs()...))
}

// olderConfigs returns the configs of generations still draining (their listeners stay open
// until they are gone).
func (m *Master) olderConfigs() []*config.Config {
	var out []*config.Config
	for p := range m.procs {
		if p.gen < m.cur.gen && p.cfg != nil {
			out = append(out, p.cfg)
		}
	}
	return out
}

// mergeConfigs returns a config whose listeners are those of all of cs (for closeListeners).
func mergeConfigs(c *config.Config, cs ...*config.Config) *config.Config {
	if len(cs) == 0 {
		return c
	}
	merged := *c
	merged.Servers = append([]config.Server(nil), c.Servers...)
	for _, o := range cs {
		merged.Servers = append(merged.Servers, o.Servers...)
	}
	return &merged
}

// shutdown drains (graceful) or stops (fast) every worker and waits for them: up to
// shutdown_timeout plus a margin for a graceful stop, then SIGKILL.
func (m *Master) shutdown(graceful bool) error {
	m.notifyStopping()
	m.stopping = true
	if m.stopFleet != nil {
		// Leave first: the other hosts take this host's checks over at once, not after its lease.
		m.stopFleet(true)
	}
	wait := 5 * time.Second
	cmd := handoff.MsgStop
	if graceful {
		cmd = handoff.MsgDrain
		wait += m.cfg.ShutdownTimeout
	}
	m.log.Info("shutting down", "graceful", graceful, "workers", len(m.procs))
	for p := range m.procs {
		p.expected = true
		m.steer.drop(p.index)
		m.table.SetWorkerState(p.index, shm.WorkerDraining)
		p.send(cmd)
	}
	// Close the master's copies of the listening sockets now, as nginx closes its listeners when
	// a graceful stop begins: each socket closes when the last worker closes its own (the first
	// thing a drain does), so a new client is refused at once instead of being queued on a
	// socket that nobody accepts from and reset when the master exits. Requests in flight go on.
	m.closeListeners(nil)
	deadline := m.sys.after(wait)
	for len(m.procs) > 0 {
		select {
		case ev := <-m.events:
			m.handle(ev)
		case sig := <-m.sigs:
			// As nginx: TERM or INT during a graceful stop makes it a fast one.
			if graceful && (sig == syscall.SIGTERM || sig == syscall.SIGINT) {
				graceful = false
				m.log.Info("fast stop requested during graceful stop", "workers", len(m.procs))
				for p := range m.procs {
					p.send(handoff.MsgStop)
				}
				deadline = m.sys.after(5 * time.Second)
			}
		case <-deadline:
			for p := range m.procs {
				m.log.Warn("worker did not exit in time, killing it", "worker_pid", p.pid)
				p.proc.Signal(os.Kill)
			}
			deadline = m.sys.after(5 * time.Second)
		}
	}
	m.log.Info("hcproxy stopped")
	return nil
}
