package worker

// dueHeap is the checker's timer structure: the checks it owns and is not probing, as a min-heap
// by due time, so the run loop sleeps until the earliest and finds it in O(1) (starting one
// costs O(log n)). Each entry keeps its due time beside the pointer, so a sift compares without
// reading the ownerships (at 10,000 checks the pointer chase was 2.4% of a worker's CPU); each
// ownership knows its index in the heap (-1 when not in it). An ownership's due time does not
// change while it is in the heap.
type dueHeap []dueEntry

type dueEntry struct {
	due int64
	o   *ownership
}

func (h dueHeap) less(i, j int) bool { return h[i].due < h[j].due }

func (h dueHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].o.idx, h[j].o.idx = i, j
}

// push adds o, due at o.due.
func (h *dueHeap) push(o *ownership) {
	o.idx = len(*h)
	*h = append(*h, dueEntry{due: o.due, o: o})
	h.up(o.idx)
}

// peek returns the earliest check, or nil.
func (h dueHeap) peek() *ownership {
	if len(h) == 0 {
		return nil
	}
	return h[0].o
}

// remove takes o out of the heap if it is in it.
func (h *dueHeap) remove(o *ownership) {
	i := o.idx
	if i < 0 || i >= len(*h) || (*h)[i].o != o {
		return
	}
	n := len(*h) - 1
	if i != n {
		h.swap(i, n)
	}
	(*h)[n] = dueEntry{}
	*h = (*h)[:n]
	o.idx = -1
	if i != n {
		h.down(i)
		h.up(i)
	}
}

func (h dueHeap) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		j = i
	}
}

func (h dueHeap) down(i int) {
	n := len(h)
	for {
		j := 2*i + 1
		if j >= n {
			break
		}
		if r := j + 1; r < n && h.less(r, j) {
			j = r
		}
		if !h.less(j, i) {
			break
		}
		h.swap(i, j)
		i = j
	}
}

// expiry is a probe in flight over a target's probe.Conn, ending at its deadline: the checker
// ends it then (probe.Conn.Expire), so that no probe moves a runtime timer of its own.
type expiry struct {
	at  int64 // the deadline, monotonic ns (shm.Now)
	t   *target
	seq uint64 // t.seq when the probe started: a later probe of t is not this one
}

// expiryHeap holds the deadlines of the probes in flight, earliest first. An entry whose probe
// has ended (its target's seq moved on or the target is not busy) stays until it reaches the
// top, and next drops it there: cheaper than removing it when the result comes, and it never
// wakes the run loop (it did, once per check, before next dropped it).
type expiryHeap []expiry

func (h *expiryHeap) push(e expiry) {
	*h = append(*h, e)
	s := *h
	for j := len(s) - 1; j > 0; {
		i := (j - 1) / 2
		if s[i].at <= s[j].at {
			break
		}
		s[i], s[j] = s[j], s[i]
		j = i
	}
}

// next returns the earliest deadline of a probe still in flight, or false, dropping the
// entries of ended probes before it.
func (h *expiryHeap) next() (int64, bool) {
	for len(*h) > 0 {
		if e := (*h)[0]; e.t.busy && e.t.seq == e.seq {
			return e.at, true
		}
		h.pop()
	}
	return 0, false
}

// pop removes and returns the earliest entry.
func (h *expiryHeap) pop() expiry {
	s := *h
	e := s[0]
	n := len(s) - 1
	s[0] = s[n]
	s[n] = expiry{}
	s = s[:n]
	for i := 0; ; {
		j := 2*i + 1
		if j >= n {
			break
		}
		if r := j + 1; r < n && s[r].at < s[j].at {
			j = r
		}
		if s[i].at <= s[j].at {
			break
		}
		s[i], s[j] = s[j], s[i]
		i = j
	}
	*h = s
	return e
}
