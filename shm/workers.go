package shm

import "fmt"

// Token identifies a worker process for ownership: a never-reused serial (high 32 bits) and the
// pid (low 32 bits).
type Token uint64

// Pid returns the pid part.
func (k Token) Pid() int { return int(uint32(k)) }

// Serial returns the serial part.
func (k Token) Serial() uint32 { return uint32(k >> 32) }

// WorkerState is a worker's life-cycle state in the worker table.
type WorkerState uint8

// Worker states. The master moves a worker Starting -> Draining -> Dead and frees the entry once
// it has reaped the process; the worker itself moves Starting -> Ready.
const (
	WorkerFree     WorkerState = 0
	WorkerStarting WorkerState = 1
	WorkerReady    WorkerState = 2
	WorkerDraining WorkerState = 3
	WorkerDead     WorkerState = 4
)

func (s WorkerState) String() string {
	switch s {
	case WorkerFree:
		return "free"
	case WorkerStarting:
		return "starting"
	case WorkerReady:
		return "ready"
	case WorkerDraining:
		return "draining"
	case WorkerDead:
		return "dead"
	}
	return fmt.Sprintf("state_%d", uint8(s))
}

// WorkerInfo is one entry of the worker table.
type WorkerInfo struct {
	Index       int
	Token       Token
	Generation  uint64
	State       WorkerState
	HeartbeatMs int64 // Unix ms, for display
	BeatNs      int64 // monotonic ns, for liveness
	StartedMs   int64
	Owned       int
	Requests    uint64
}

// CountRequest counts one request proxied by the worker at index i.
func (t *Table) CountRequest(i int) { t.m.add(workerOff(i)+wRequests, 1) }

// ReserveWorker takes a free entry of the worker table for a worker of generation gen about to be
// started, and returns its index. The worker fills in its token when it starts (Register).
func (t *Table) ReserveWorker(gen uint64) (int, error) {
	for i := 0; i < WorkerCap; i++ {
		off := workerOff(i)
		if WorkerState(t.m.load(off+wState)) != WorkerFree {
			continue
		}
		t.m.store(off+wToken, 0)
		t.m.store(off+wGen, gen)
		t.m.store(off+wHeartbeat, 0)
		t.m.store(off+wBeatNs, 0)
		t.m.store(off+wOwned, 0)
		t.m.store(off+wRequests, 0)
		t.clearListenOpen(i)
		t.clearRuntime(i)
		t.m.store(off+wStarted, uint64(NowMs()))
		t.m.store(off+wState, uint64(WorkerStarting))
		return i, nil
	}
	return 0, fmt.Errorf("%w: all %d worker entries in use", ErrFull, WorkerCap)
}

// Register is called by the worker process at index i: it takes a fresh token for its pid and
// records it. It returns the token.
func (t *Table) Register(i, pid int) Token {
	tok := t.NewToken(pid)
	t.m.store(workerOff(i)+wToken, uint64(tok))
	t.m.store(workerOff(i)+wHeartbeat, uint64(NowMs()))
	t.m.store(workerOff(i)+wBeatNs, uint64(Now()))
	return tok
}

// SetWorkerState sets the state of entry i.
func (t *Table) SetWorkerState(i int, s WorkerState) {
	t.m.store(workerOff(i)+wState, uint64(s))
}

// Heartbeat records that the worker at i is alive and how many slots it owns.
func (t *Table) Heartbeat(i, owned int) {
	t.m.store(workerOff(i)+wHeartbeat, uint64(NowMs()))
	t.m.store(workerOff(i)+wBeatNs, uint64(Now()))
	t.m.store(workerOff(i)+wOwned, uint64(owned))
}

// FreeWorker returns entry i to the free list (after the master reaped the process). Slots still
// owned by its token become takeable, since the token is no longer in the table.
func (t *Table) FreeWorker(i int) {
	off := workerOff(i)
	t.m.store(off+wState, uint64(WorkerDead))
	t.m.store(off+wToken, 0)
	t.clearListenOpen(i)
	t.clearRuntime(i)
	t.m.store(off+wState, uint64(WorkerFree))
}

// Worker returns entry i.
func (t *Table) Worker(i int) WorkerInfo {
	off := workerOff(i)
	return WorkerInfo{
		Index:       i,
		Token:       Token(t.m.load(off + wToken)),
		Generation:  t.m.load(off + wGen),
		State:       WorkerState(t.m.load(off + wState)),
		HeartbeatMs: int64(t.m.load(off + wHeartbeat)),
		BeatNs:      int64(t.m.load(off + wBeatNs)),
		StartedMs:   int64(t.m.load(off + wStarted)),
		Owned:       int(t.m.load(off + wOwned)),
		Requests:    t.m.load(off + wRequests),
	}
}

// Workers returns every entry that is not free.
func (t *Table) Workers() []WorkerInfo {
	var out []WorkerInfo
	for i := 0; i < WorkerCap; i++ {
		if w := t.Worker(i); w.State != WorkerFree {
			out = append(out, w)
		}
	}
	return out
}
