package shm

import "hash/fnv"

// Listener counters: per [[server]] listener, named by its listen address, connections accepted
// (a counter, all workers) and open (a gauge). A record is claimed by the first worker that
// counts on its address (a CAS of the address's hash into the first free record, so workers
// racing for one address meet on the same record) and is never freed: a listener removed by a
// reload keeps its series, as a server's slot keeps its counters while it is in use. Open
// connections are counted per worker entry (a 32-bit lane per listener), zeroed when the master
// reserves or frees the entry, so the connections of a worker that was killed leave the gauge
// with it; readers add up the entries of workers that are not dead. ListenerCap listeners are
// counted; more are not (Listener returns a handle that counts nothing).

// Listener is one worker's handle on the counters of one listener. The zero value counts nothing.
type Listener struct {
	t           *Table
	rec, worker int
	ok          bool
}

// Listener returns the handle of the worker at entry worker on the listener at addr, claiming a
// record for addr if it has none. It counts nothing when all ListenerCap records hold other
// addresses, or worker is out of range.
func (t *Table) Listener(addr string, worker int) Listener {
	if worker < 0 || worker >= WorkerCap || addr == "" {
		return Listener{}
	}
	h := fnv.New64a()
	h.Write([]byte(addr))
	key := h.Sum64() | 1 // never 0, "free"
	for i := 0; i < ListenerCap; i++ {
		off := hListeners + i*listenerSize
		k := t.m.load(off + lKey)
		if k == 0 && t.m.cas(off+lKey, 0, key) {
			t.m.storeString(off+lAddr, addrLen, addr)
			return Listener{t: t, rec: i, worker: worker, ok: true}
		}
		if k == 0 {
			k = t.m.load(off + lKey) // another worker claimed it meanwhile: perhaps for addr
		}
		if k == key {
			if a := t.m.loadString(off+lAddr, addrLen); a == "" || a == addr {
				return Listener{t: t, rec: i, worker: worker, ok: true}
			}
		}
	}
	return Listener{}
}

// lane returns the offset of the open-connections word of l's worker and listener, and the shift
// of l's lane in it.
func (l Listener) lane() (int, uint) {
	return hListenOpen + l.worker*listenOpenSize + (l.rec/2)*8, uint(32 * (l.rec % 2))
}

// Accepted counts a connection accepted (and now open).
func (l Listener) Accepted() {
	if !l.ok {
		return
	}
	l.t.m.add(hListeners+l.rec*listenerSize+lAccepted, 1)
	off, sh := l.lane()
	l.t.m.add(off, 1<<sh)
}

// Closed counts a connection that Accepted counted closed. It must follow its Accepted in the
// same worker: the lane never goes below zero.
func (l Listener) Closed() {
	if !l.ok {
		return
	}
	off, sh := l.lane()
	l.t.m.add(off, ^uint64(0)<<sh) // minus 1<<sh
}

// clearListenOpen zeroes the open connections of worker entry i (the master, when it reserves or
// frees the entry).
func (t *Table) clearListenOpen(i int) {
	for w := 0; w < listenOpenSize; w += 8 {
		t.m.store(hListenOpen+i*listenOpenSize+w, 0)
	}
}

// ListenerInfo is one listener's counters as read.
type ListenerInfo struct {
	Address  string
	Accepted uint64
	Open     uint64 // connections open, summed over the workers that are not dead
}

// Listeners reads the counters of every claimed listener record, in record order.
func (t *Table) Listeners() []ListenerInfo {
	var out []ListenerInfo
	for i := 0; i < ListenerCap; i++ {
		off := hListeners + i*listenerSize
		if t.m.load(off+lKey) == 0 {
			continue
		}
		in := ListenerInfo{Address: t.m.loadString(off+lAddr, addrLen), Accepted: t.m.load(off + lAccepted)}
		if in.Address == "" {
			continue // being claimed
		}
		l := Listener{t: t, rec: i}
		for w := 0; w < WorkerCap; w++ {
			switch WorkerState(t.m.load(workerOff(w) + wState)) {
			case WorkerStarting, WorkerReady, WorkerDraining:
				l.worker = w
				o, sh := l.lane()
				in.Open += (t.m.load(o) >> sh) & 0xffff_ffff
			}
		}
		out = append(out, in)
	}
	return out
}
