package shm

import (
	"fmt"
	"time"
)

// Alloc takes a free slot for the key (address, check hash) in the initial health, and returns
// its index. Only the master calls it (it holds the pid-file lock, so there is one). The fence
// keeps counting from the slot's previous life, so a worker that still holds a fence from it can
// write nothing into the new one.
func (t *Table) Alloc(key uint64, addr, label string, interval time.Duration, weight int, initial Health) (int, error) {
	if t.readOnly {
		return 0, ErrReadOnly
	}
	if len(addr) >= addrLen {
		return 0, fmt.Errorf("shm: address %q longer than %d bytes", addr, addrLen-1)
	}
	for j := 0; j < t.slots; j++ {
		i := (t.allocFrom + j) % t.slots
		s := t.Slot(i)
		if s.Used() {
			continue
		}
		t.allocFrom = i + 1
		fence := s.State().Fence() + 1
		for _, off := range []int{sOwner, sLease, sNextDue, sHistory, sLastCheckMs, sLastRTT, sLastResult,
			sChecks, sFailures, sTransitions, sSinceReason, sPassive, sActive, sRequests, sErrors, sRTTSum, sPassWindow, sPassCount, sEjectUntil, sConsec5xx, sUpSinceNs, sAgentWeight} {
			s.m.store(s.off+off, 0)
		}
		for off := sRTTBuckets; off < slotEnd; off += 8 {
			s.m.store(s.off+off, 0)
		}
		s.m.store(s.off+sWeight, uint64(weight))
		if q := s.m.load(s.off + sSeq); q&1 == 1 {
			s.m.store(s.off+sSeq, q+1)
		}
		s.m.store(s.off+sKey, key)
		s.m.store(s.off+sInterval, uint64(interval))
		s.m.store(s.off+sSinceMs, uint64(NowMs()))
		s.m.storeString(s.off+sAddr, addrLen, addr)
		s.m.storeString(s.off+sLabel, labelLen, label)
		s.m.storeString(s.off+sDetail, detailLen, "")
		s.m.store(s.off+sState, uint64(makeState(initial, Ready, false, 0, fence)))
		s.m.store(s.off+sUsed, 1)
		return i, nil
	}
	return 0, fmt.Errorf("%w: all %d slots in use (raise max_servers)", ErrFull, t.slots)
}

// Find returns the index of the allocated slot with the key (address, check hash). It walks
// the table: to look up many, use Index.
func (t *Table) Find(key uint64, addr string) (int, bool) {
	for i := 0; i < t.slots; i++ {
		s := t.Slot(i)
		if s.Used() && s.Key() == key && s.Address() == addr {
			return i, true
		}
	}
	return 0, false
}

// UpdateSlot rewrites the master-owned descriptive fields of an allocated slot on reload.
func (t *Table) UpdateSlot(i int, label string, interval time.Duration, weight int) {
	s := t.Slot(i)
	s.m.store(s.off+sWeight, uint64(weight))
	s.m.storeString(s.off+sLabel, labelLen, label)
	s.m.store(s.off+sInterval, uint64(interval))
}

// SetSlowStart records the slow-start ramp of allocated slot i (0 for none) for the status view.
// The master calls it with the weight it passes to Alloc or UpdateSlot, from the same upstream:
// no worker reads it to balance, so the moment between the two writes shows nothing wrong (a
// fresh slot has not come up yet, so it does not ramp).
func (t *Table) SetSlowStart(i int, d time.Duration) {
	s := t.Slot(i)
	s.m.store(s.off+sSlowStart, uint64(max(d, 0)))
}

// Free returns slot i to the free list: ownership dropped, fence bumped so no former owner can
// write into it again.
func (t *Table) Free(i int) {
	t.allocFrom = min(t.allocFrom, i)
	s := t.Slot(i)
	s.m.store(s.off+sUsed, 0)
	s.m.store(s.off+sOwner, 0)
	for {
		st := s.State()
		nst := st&^(State(0xffffffff)<<32) | State(st.Fence()+1)<<32
		if s.m.cas(s.off+sState, uint64(st), uint64(nst)) {
			return
		}
	}
}

// ReleaseAll drops tok's ownership of every slot it owns (the master, after reaping the worker
// whose token it is), and returns how many it released.
func (t *Table) ReleaseAll(tok Token) int {
	n := 0
	for i := 0; i < t.slots; i++ {
		if t.Slot(i).Release(tok) {
			n++
		}
	}
	return n
}

// ResetActive zeroes every slot's count of requests in flight. The master calls it at start when
// no worker of a previous master is left: counts that crashed or killed workers never took back
// would otherwise skew least_conn and random_two for good.
func (t *Table) ResetActive() {
	for i := 0; i < t.slots; i++ {
		s := t.Slot(i)
		s.m.store(s.off+sActive, 0)
	}
}

// SlotKey is what identifies an allocated slot: its check's key and its server's address.
type SlotKey struct {
	Check uint64
	Addr  string
}

// Index returns the index of every allocated slot by its key, from one walk of the table (the
// master's lookups at a start or reload: Find for each of 10,000 servers walked the table 10,000
// times, 6-7 s).
func (t *Table) Index() map[SlotKey]int {
	idx := map[SlotKey]int{}
	for i := 0; i < t.slots; i++ {
		if s := t.Slot(i); s.Used() {
			idx[SlotKey{s.Key(), s.Address()}] = i
		}
	}
	return idx
}
