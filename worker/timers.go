package worker

// dueHeap is the checker's timer structure: the checks it owns and is not probing, as a min-heap
// by due time, so the run loop sleeps until the earliest and finds it in O(1) (starting one
// costs O(log n)). Each ownership knows its index in the heap (-1 when not in it).
type dueHeap []*ownership

func (h dueHeap) less(i, j int) bool { return h[i].due < h[j].due }

func (h dueHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}

// push adds o, due at o.due.
func (h *dueHeap) push(o *ownership) {
	o.idx = len(*h)
	*h = append(*h, o)
	h.up(o.idx)
}

// peek returns the earliest check, or nil.
func (h dueHeap) peek() *ownership {
	if len(h) == 0 {
		return nil
	}
	return h[0]
}

// remove takes o out of the heap if it is in it.
func (h *dueHeap) remove(o *ownership) {
	i := o.idx
	if i < 0 || i >= len(*h) || (*h)[i] != o {
		return
	}
	n := len(*h) - 1
	if i != n {
		h.swap(i, n)
	}
	(*h)[n] = nil
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
