package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"hcproxy/checks"
	"hcproxy/config"
	"hcproxy/fastpath"
	"hcproxy/internal/handoff"
	"hcproxy/internal/logs"
	"hcproxy/shm"
	"hcproxy/status"
	"hcproxy/upstream"
)

// idleGrace is how long a draining worker leaves a connection that waits for a request open: long
// enough for a client that is about to send one to do so, short enough to finish the drain.
const idleGrace = time.Second

// stdMaxHeaderBytes is the http.Server.MaxHeaderBytes of the engine = "std" listeners: net/http
// reads 4 KiB beyond it before it answers 431, so a request head is bounded as the fast engine
// bounds it (fastpath.DefaultMaxHeadBytes).
const stdMaxHeaderBytes = fastpath.DefaultMaxHeadBytes - 4<<10

// Main runs a worker process and returns its exit code.
func Main() int {
	w, err := start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "hcproxy worker %d: %v\n", os.Getpid(), err)
		return 1
	}
	return w.serve()
}

type worker struct {
	cfg       *config.Config
	payload   handoff.Payload
	table     *shm.Table
	tok       shm.Token
	log       *slog.Logger
	logFile   *logs.File
	control   net.Conn
	lifeline  *os.File
	checker   *checker
	servers   []*http.Server
	lns       []net.Listener
	fast      []*fastpath.Server // engine = "fast": the [[server]] listeners' servers
	fastLns   []net.Listener
	conns     *conns
	draining  atomic.Bool
	access    map[string]*logs.File         // access logs by path
	upstreams map[string][]*upstream.Server // each upstream's servers, shared by its listeners
}

func start() (*worker, error) {
	signal.Ignore(syscall.SIGHUP, syscall.SIGINT, syscall.SIGPIPE)
	files, err := handoff.Inherited()
	if err != nil {
		return nil, err
	}
	w := &worker{conns: newConns(), lifeline: files[handoff.FdLifeline]}
	w.payload, err = handoff.ReadPayload(files[handoff.FdPayload])
	files[handoff.FdPayload].Close()
	if err != nil {
		return nil, err
	}
	if w.cfg, err = config.Unmarshal(w.payload.Config); err != nil {
		return nil, fmt.Errorf("config from master: %w", err)
	}
	if w.logFile, err = logs.Open(w.cfg.ErrorLog); err != nil {
		return nil, fmt.Errorf("error_log: %w", err)
	}
	w.log = logs.NewLogger(w.cfg.LogFormat, w.logFile, logs.LevelOf(w.cfg.LogLevel)).With("pid", os.Getpid(), "gen", w.payload.Generation)
	if w.table, err = shm.AttachFile(files[handoff.FdTable], false); err != nil {
		return nil, fmt.Errorf("health table: %w", err)
	}
	if w.control, err = net.FileConn(files[handoff.FdControl]); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	files[handoff.FdControl].Close()
	if w.payload.Index < 0 || w.payload.Index >= shm.WorkerCap {
		return nil, fmt.Errorf("worker index %d out of range", w.payload.Index)
	}
	w.tok = w.table.Register(w.payload.Index, os.Getpid())

	targets, err := w.buildTargets()
	if err != nil {
		return nil, err
	}
	w.access = map[string]*logs.File{}
	for _, s := range w.cfg.Servers {
		if s.AccessLog != "" && w.access[s.AccessLog] == nil {
			lf, err := logs.Open(s.AccessLog)
			if err != nil {
				return nil, fmt.Errorf("server %s: access_log: %w", s.Listen, err)
			}
			w.access[s.AccessLog] = lf
		}
	}
	pools := fastpath.NewPools() // one idle-connection pool per upstream server for all listeners
	for _, s := range w.cfg.Servers {
		f := files[handoff.FdListen(s.Listen)]
		if f == nil {
			return nil, fmt.Errorf("listener for %s not passed", s.Listen)
		}
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", s.Listen, err)
		}
		lc := w.table.Listener(s.Listen, w.payload.Index) // connections accepted and open, for /metrics
		if w.cfg.Engine != "std" {
			w.fast = append(w.fast, fastpath.New(s.Upstream, w.upstreams[s.Upstream], fastpath.Options{
				Options: w.optionsFor(s), ClientHeaderTimeout: s.ClientHeaderTimeout, ClientIdleTimeout: s.ClientIdleTimeout, Pools: pools,
				OnConnClosed: lc.Closed,
			}))
			w.fastLns = append(w.fastLns, &countingListener{Listener: ln, lc: lc})
			continue
		}
		proxy := w.proxyFor(s)
		srv := &http.Server{
			Handler: drainHandler{next: proxy, draining: &w.draining},
			ConnState: func(c net.Conn, st http.ConnState) {
				upstream.ConnState(c, st) // an idle connection keeps no send deadline
				w.conns.track(c, st)
				switch st {
				case http.StateNew:
					lc.Accepted()
				case http.StateClosed, http.StateHijacked:
					lc.Closed()
				}
			},
			ConnContext:       upstream.ConnContext, // with upstream.Listener: the chunk size limit
			ReadHeaderTimeout: s.ClientHeaderTimeout,
			IdleTimeout:       s.ClientIdleTimeout,
			MaxHeaderBytes:    stdMaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(w.log.Handler(), slog.LevelDebug),
		}
		w.servers = append(w.servers, srv)
		w.lns = append(w.lns, upstream.Listener(ln))
	}
	if w.cfg.Status != nil {
		f := files[handoff.FdStatus]
		if f == nil {
			return nil, errors.New("status listener not passed")
		}
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("status listener: %w", err)
		}
		h := status.Handler(w.table, status.Options{Allowed: w.cfg.Status.Allowed, Admin: w.cfg.Status.Admin, Log: w.log})
		srv := status.NewServer(h, status.ServerOptions{HeaderTimeout: w.cfg.Status.ClientHeaderTimeout})
		srv.ConnState = w.conns.track
		srv.ErrorLog = slog.NewLogLogger(w.log.Handler(), slog.LevelDebug)
		w.servers = append(w.servers, srv)
		w.lns = append(w.lns, ln)
	}
	w.checker = newChecker(w.table, w.tok, w.payload.Index, w.payload.Generation, targets, w.log)
	return w, nil
}

// buildTargets makes the servers of every upstream and the check targets from the config and
// the slot map, checking that every slot the master named holds the server it claims to.
func (w *worker) buildTargets() ([]*target, error) {
	slots := map[[2]string]int{}
	for _, r := range w.payload.Slots {
		if r.Slot < 0 || r.Slot >= w.table.Capacity() {
			return nil, fmt.Errorf("slot %d for %s/%s out of range", r.Slot, r.Upstream, r.Address)
		}
		slots[[2]string{r.Upstream, r.Address}] = r.Slot
	}
	w.upstreams = map[string][]*upstream.Server{}
	bySlot := map[int]*target{}
	var targets []*target
	for _, name := range w.cfg.UpstreamNames() {
		u := w.cfg.Upstreams[name]
		for _, us := range u.Servers {
			i, ok := slots[[2]string{name, us.Address}]
			if !ok {
				return nil, fmt.Errorf("no slot for server %s of upstream %s", us.Address, name)
			}
			slot := w.table.Slot(i)
			if !slot.Used() || slot.Address() != us.Address || slot.Key() != u.Check.Key() {
				return nil, fmt.Errorf("slot %d does not hold server %s of upstream %s", i, us.Address, name)
			}
			slow := u.SlowStart
			if us.SlowStart > 0 {
				slow = us.SlowStart
			}
			w.upstreams[name] = append(w.upstreams[name], &upstream.Server{Address: us.Address, Weight: us.Weight, Backup: us.Backup, SlowStart: slow, Slot: slot})
			if bySlot[i] == nil {
				t, err := newTarget(slot, us.Address, &u.Check)
				if err != nil {
					return nil, fmt.Errorf("upstream %s server %s: %w", name, us.Address, err)
				}
				bySlot[i] = t
				targets = append(targets, t)
			}
		}
	}
	return targets, nil
}

// proxyFor makes the proxy of one [[server]] listener. Each listener has its own (its own
// balancer state and access log settings) over the upstream's shared servers.
func (w *worker) proxyFor(s config.Server) http.Handler {
	o := w.optionsFor(s)
	o.ClientBodyTimeout = s.ClientIdleTimeout // each body read, as the fast engine bounds it
	return upstream.NewProxy(s.Upstream, w.upstreams[s.Upstream], o)
}

// optionsFor makes the proxy options of one [[server]] listener, for either engine.
func (w *worker) optionsFor(s config.Server) upstream.Options {
	u := w.cfg.Upstreams[s.Upstream]
	var al *upstream.AccessLog
	if s.AccessLog != "" {
		al = upstream.NewAccessLog(s.AccessLogFormat, w.access[s.AccessLog])
	}
	return upstream.Options{
		ConnectTimeout: u.ConnectTimeout, ReadTimeout: u.ReadTimeout, SendTimeout: u.SendTimeout, Log: w.log,
		OnRequest: func() { w.table.CountRequest(w.payload.Index) },
		Balancer:  u.Balancer, Hash: u.Hash(), AllDown: u.AllDown,
		Retry: upstream.RetryPolicy{
			Tries: u.Retries, Timeout: u.RetryTimeout, On: upstream.ParseFailures(u.RetryOn), NonIdempotent: u.RetryNonIdempotent,
		},
		MaxFails: u.MaxFails, FailTimeout: u.FailTimeout, Eject5xx: u.EjectConsecutive5xx,
		OnEject: func(sv *upstream.Server, why string) {
			w.table.AppendEvent(shm.Event{Kind: shm.EventPassive, Slot: sv.Slot.Index(), Address: sv.Address, Label: sv.Slot.Label(),
				Old: uint8(shm.Up), New: uint8(shm.Down), Pid: os.Getpid()})
		},
		AccessLog: al, RequestIDHeader: s.RequestIDHeader, Forwarded: s.Forwarded, Via: s.Via, Keepalive: u.Keepalive,
		ClientSendTimeout: s.ClientSendTimeout,
	}
}

func newTarget(slot shm.Slot, server string, c *config.Check) (*target, error) {
	addr, err := checks.Addr(server, c)
	if err != nil {
		return nil, err
	}
	p, err := checks.NewProber(c)
	if err != nil {
		return nil, err
	}
	return &target{
		slot: slot, addr: addr, server: server, label: slot.Label(), prober: p,
		interval: c.Interval, timeout: c.Timeout, rise: c.Rise, fall: c.Fall,
		downInterval: c.DownInterval, fastInterval: c.FastInterval,
		seed: seedOf(slot.Key(), server),
	}, nil
}

// serve runs the worker until it is told to stop or drain, or its master dies.
func (w *worker) serve() int {
	var wg sync.WaitGroup
	for i, srv := range w.servers {
		wg.Add(1)
		go func(srv *http.Server, ln net.Listener) {
			defer wg.Done()
			srv.Serve(ln) // returns when the listener is closed
		}(srv, w.lns[i])
	}
	for i, fs := range w.fast {
		wg.Add(1)
		go func(fs *fastpath.Server, ln net.Listener) {
			defer wg.Done()
			fs.Serve(ln) // returns when the listener is closed (Drain, Close)
		}(fs, w.fastLns[i])
	}
	w.checker.Start(context.Background())
	stopRuntime := make(chan struct{})
	defer close(stopRuntime)
	go w.publishRuntime(stopRuntime)
	w.table.SetWorkerState(w.payload.Index, shm.WorkerReady)
	if err := handoff.Send(w.control, handoff.MsgReady); err != nil {
		w.log.Error("cannot report ready to the master", "err", err)
		return 1
	}
	w.log.Info("worker ready", "checks", len(w.checker.targets), "listeners", len(w.lns))

	cmds := make(chan handoff.Msg, 8)
	go w.readControl(cmds)
	go w.watchLifeline(cmds)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGQUIT, syscall.SIGUSR1)
	for {
		var cmd handoff.Msg
		select {
		case cmd = <-cmds:
		case sig := <-sigs:
			cmd = map[os.Signal]handoff.Msg{syscall.SIGTERM: handoff.MsgStop, syscall.SIGQUIT: handoff.MsgDrain, syscall.SIGUSR1: handoff.MsgReopen}[sig]
		}
		switch cmd {
		case handoff.MsgNudge:
			w.checker.Nudge()
		case handoff.MsgReopen:
			if err := w.logFile.Reopen(); err != nil {
				w.log.Error("reopen error_log", "err", err)
			}
			for path, lf := range w.access {
				if err := lf.Reopen(); err != nil {
					w.log.Error("reopen access_log", "path", path, "err", err)
				}
			}
		case handoff.MsgDrain, msgMasterGone:
			w.drain(cmd, cmds, sigs)
			wg.Wait()
			return 0
		case handoff.MsgStop:
			w.checker.Stop()
			for _, ln := range w.lns {
				ln.Close()
			}
			w.conns.closeAll()
			for _, fs := range w.fast {
				fs.Close()
			}
			w.log.Info("worker stopped")
			return 0
		}
	}
}

// drain stops checks and accepting, lets requests in flight finish (each answered with
// Connection: close), closes idle connections after a grace, and returns when none is left or
// shutdown_timeout has passed.
func (w *worker) drain(why handoff.Msg, cmds <-chan handoff.Msg, sigs <-chan os.Signal) {
	w.draining.Store(true)
	w.table.SetWorkerState(w.payload.Index, shm.WorkerDraining) // the others stop counting on it at once
	deadline := time.Now().Add(w.cfg.ShutdownTimeout)
	checks := make(chan struct{})
	go func() { w.checker.Retire(why == msgMasterGone, deadline); close(checks) }() // hands every check over, none lost (handover.go)
	for _, ln := range w.lns {
		ln.Close()
	}
	for _, fs := range w.fast {
		fs.Drain() // closes its listeners; Connection: close from now on; idle ones closed after idleGrace
	}
	w.log.Info("worker draining", "why", why, "timeout", w.cfg.ShutdownTimeout)
	for w.conns.closeIdle(idleGrace)+w.fastConns() > 0 {
		if time.Now().After(deadline) {
			w.log.Warn("shutdown_timeout reached, closing connections with requests in flight")
			w.conns.closeAll()
			for _, fs := range w.fast {
				fs.Close()
			}
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	<-checks
	w.log.Info("worker drained")
}

// fastConns returns how many client connections the fast path's servers still have.
func (w *worker) fastConns() int {
	n := 0
	for _, fs := range w.fast {
		n += fs.Conns()
	}
	return n
}

// runtimeEvery is how often a worker writes its Go runtime figures into the table.
const runtimeEvery = 5 * time.Second

// publishRuntime writes the worker's Go runtime figures into its entry of the table (for
// /metrics, whichever worker serves it) now and every runtimeEvery until stop is closed.
func (w *worker) publishRuntime(stop <-chan struct{}) {
	t := time.NewTicker(runtimeEvery)
	defer t.Stop()
	for {
		w.table.SetRuntime(w.payload.Index, shm.ReadRuntime())
		select {
		case <-t.C:
		case <-stop:
			return
		}
	}
}

// countingListener counts the connections it accepts on the listener's counters in the table
// (the fast engine counts their closes through fastpath.Options.OnConnClosed); the connection
// itself is passed on as it is.
type countingListener struct {
	net.Listener
	lc shm.Listener
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.lc.Accepted()
	}
	return c, err
}

// msgMasterGone is the worker's own event when the master is gone (the control socket or the
// lifeline closed): it drains as for handoff.MsgDrain.
const msgMasterGone handoff.Msg = "master-gone"

func (w *worker) readControl(cmds chan<- handoff.Msg) {
	sc := bufio.NewScanner(w.control)
	for sc.Scan() {
		cmds <- handoff.Msg(sc.Text())
	}
	cmds <- msgMasterGone
}

func (w *worker) watchLifeline(cmds chan<- handoff.Msg) {
	var b [1]byte
	w.lifeline.Read(b[:]) // blocks until the master's end closes
	cmds <- msgMasterGone
}
