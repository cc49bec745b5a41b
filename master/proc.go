package master

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"hcproxy/config"
	"hcproxy/internal/handoff"
)

// proc is one worker process as the master sees it.
type proc struct {
	index    int // entry in the table's worker list
	gen      uint64
	proc     process
	pid      int
	control  net.Conn
	started  time.Time
	ready    bool
	expected bool // told to drain or stop: its exit is not a crash
	cfg      *config.Config
}

type eventKind int

const (
	evReady eventKind = iota
	evExit
)

type event struct {
	kind eventKind
	p    *proc
	err  error
}

func (p *proc) send(m handoff.Msg) {
	if p.control != nil {
		p.control.SetWriteDeadline(time.Now().Add(time.Second))
		handoff.Send(p.control, m)
	}
}

// spawn starts one worker of generation g by re-executing this binary (/proc/self/exe, so a
// worker always runs the master's code even if the file on disk was replaced), through the
// seam's start (sys.go). The worker inherits the table, its end of a new control socket, the
// read end of the lifeline (never the write end), the payload and its listeners.
func (m *Master) spawn(g *generation) (*proc, error) {
	idx, err := m.table.ReserveWorker(g.gen)
	if err != nil {
		return nil, err
	}
	p := &proc{index: idx, gen: g.gen, cfg: g.cfg}
	fail := func(err error) (*proc, error) {
		m.table.FreeWorker(idx)
		return nil, err
	}
	payload, err := json.Marshal(handoff.Payload{Config: g.cfgJSON, Generation: g.gen, Index: idx, Slots: g.slots})
	if err != nil {
		return fail(err)
	}
	if len(payload) > config.MaxHandoff { // config.Parse refuses such a config; never hand over part of one
		return fail(fmt.Errorf("payload: %d bytes, more than the limit of %d (config.MaxHandoff)", len(payload), config.MaxHandoff))
	}
	pf, err := memfile("hcproxy-payload", payload)
	if err != nil {
		return fail(fmt.Errorf("payload: %w", err))
	}
	defer pf.Close()
	mine, theirs, err := socketpair()
	if err != nil {
		return fail(fmt.Errorf("control socket: %w", err))
	}
	defer theirs.Close()
	names := []string{handoff.FdTable, handoff.FdControl, handoff.FdLifeline, handoff.FdPayload}
	files := []*os.File{m.table.File(), theirs, m.lifelineR, pf}
	for _, s := range g.cfg.Servers {
		f, err := m.listenerFor(s.Listen, idx)
		if err != nil {
			mine.Close()
			return fail(err)
		}
		names = append(names, handoff.FdListen(s.Listen))
		files = append(files, f)
	}
	if g.cfg.Status != nil {
		names = append(names, handoff.FdStatus)
		files = append(files, m.listeners[g.cfg.Status.Listen])
	}
	spec := procSpec{
		Path:   "/proc/self/exe",
		Args:   []string{"hcproxy: worker process"},
		Env:    workerEnv(os.Environ(), names),
		Files:  files,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
	}
	if spec.Attr, err = workerAttr(g.cfg); err != nil { // user = "..." (privileges.go)
		mine.Close()
		return fail(err)
	}
	proc, err := m.sys.start(spec)
	if err != nil {
		mine.Close()
		return fail(fmt.Errorf("start worker: %w", err))
	}
	p.proc, p.pid, p.started = proc, proc.Pid(), m.sys.now()
	conn, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		proc.Signal(os.Kill)
	} else {
		p.control = conn
	}
	go func() {
		if conn != nil {
			sc := bufio.NewScanner(conn)
			for sc.Scan() {
				if handoff.Msg(sc.Text()) == handoff.MsgReady {
					m.events <- event{kind: evReady, p: p}
				}
			}
		}
		err := proc.Wait()
		m.events <- event{kind: evExit, p: p, err: err}
	}()
	return p, nil
}

// workerEnv is a worker's environment: the master's (without NOTIFY_SOCKET), its role, its
// descriptors' names, and GOMAXPROCS=1 unless the master was started with GOMAXPROCS set, which
// the workers then keep. One P per worker is nginx's model (a worker is one thread; an operator
// who wants more cores adds workers, and workers = "auto" is one per CPU). A worker with more Ps
// serves more requests on a machine it has to itself, but on one it shares (the load, the
// backends) its goroutines move between threads that the kernel runs against the others, which
// widens the tail (docs/performance.md, issue 15: one worker on 2 cores, p99.9 5.7-6.3 ms with
// 2 Ps, 4.8-5.0 ms with one, at 10-15% less throughput).
func workerEnv(environ, fdNames []string) []string {
	env := append(withoutNotifySocket(environ), handoff.EnvRole+"=worker", handoff.EnvFds+"="+handoff.EncodeFds(fdNames))
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "GOMAXPROCS="); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return env // the master's GOMAXPROCS, kept
			}
		}
	}
	return append(env, "GOMAXPROCS=1")
}
