package shm

import (
	"fmt"
	"runtime"
	"time"
)

// Slot is a handle on one slot of the table. It is a small value; copy it freely.
type Slot struct {
	m   mem
	off int
	i   int
}

// Slot returns the handle of slot i; i must be in [0, Capacity()).
func (t *Table) Slot(i int) Slot {
	if i < 0 || i >= t.slots {
		panic(fmt.Sprintf("shm: slot %d out of range [0,%d)", i, t.slots))
	}
	return Slot{m: t.m, off: slotOff(i), i: i}
}

// Index returns the slot's index in the table.
func (s Slot) Index() int { return s.i }

// Used reports whether the slot is allocated.
func (s Slot) Used() bool { return s.m.load(s.off+sUsed) == 1 }

// Key returns the check-definition hash of the slot's key.
func (s Slot) Key() uint64 { return s.m.load(s.off + sKey) }

// Address returns the server address of the slot's key.
func (s Slot) Address() string { return s.m.loadString(s.off+sAddr, addrLen) }

// Label returns the names of the upstreams that use the slot, comma separated.
func (s Slot) Label() string { return s.m.loadString(s.off+sLabel, labelLen) }

// Interval returns the configured check interval.
func (s Slot) Interval() time.Duration { return time.Duration(s.m.load(s.off + sInterval)) }

// State returns the routing word (one atomic load).
func (s Slot) State() State { return State(s.m.load(s.off + sState)) }

// Available reports whether new requests may go to the server (see State.Available).
func (s Slot) Available() bool { return s.State().Available() }

// Checks returns the number of check results recorded in the slot.
func (s Slot) Checks() uint64 { return s.m.load(s.off + sChecks) }

// Owner returns the owner's token, 0 when the slot is free to claim.
func (s Slot) Owner() Token { return Token(s.m.load(s.off + sOwner)) }

// Lease returns the monotonic time (ns) until which the owner's claim holds.
func (s Slot) Lease() int64 { return int64(s.m.load(s.off + sLease)) }

// NextDue returns the monotonic time (ns) the next check is due; 0 means never scheduled.
func (s Slot) NextDue() int64 { return int64(s.m.load(s.off + sNextDue)) }

// SetNextDue records when the next check is due. Only the owner calls it.
func (s Slot) SetNextDue(ns int64) { s.m.store(s.off+sNextDue, uint64(ns)) }

// Claim makes tok the owner if the owner word still holds old (the caller decided that old is
// takeable), bumps the fence, repairs a seqlock left odd by a writer that died, and sets the
// lease. It returns the new fence, which every state write of this ownership must carry.
func (s Slot) Claim(old, tok Token, leaseUntil int64) (uint32, bool) {
	if !s.m.cas(s.off+sOwner, uint64(old), uint64(tok)) {
		return 0, false
	}
	s.m.store(s.off+sLease, uint64(leaseUntil))
	var fence uint32
	for {
		st := s.State()
		fence = st.Fence() + 1
		nst := st&^(State(0xffffffff)<<32) | State(fence)<<32
		if s.m.cas(s.off+sState, uint64(st), uint64(nst)) {
			break
		}
	}
	if q := s.m.load(s.off + sSeq); q&1 == 1 {
		s.m.cas(s.off+sSeq, q, q+1)
	}
	return fence, true
}

// Release gives the slot up if tok owns it. It reports whether it did.
func (s Slot) Release(tok Token) bool {
	return s.m.cas(s.off+sOwner, uint64(tok), 0)
}

// Renew extends tok's lease; it reports false (and changes nothing) if tok no longer owns the slot.
func (s Slot) Renew(tok Token, until int64) bool {
	if s.Owner() != tok {
		return false
	}
	s.m.store(s.off+sLease, uint64(until))
	return s.Owner() == tok
}

// Result is one check's outcome as the table records it.
type Result struct {
	OK     bool
	Reason uint8 // probe reason code, 0 when OK
	Status int   // HTTP status, 0 if none
	RTT    time.Duration
	Detail string // failure detail, kept until the next failure
}

// Transition is what Record did to the health.
type Transition struct {
	From, To Health
	Streak   int
	Restored bool // a passing check ended a passive ejection whose time was up
}

// Changed reports whether the health changed.
func (t Transition) Changed() bool { return t.From != t.To }

// Record applies a check result made under (tok, fence): rise/fall hysteresis on the routing word
// (CAS'd against the fence, so a superseded owner writes nothing and gets ErrFenced), then the
// counters, the history bitmap and the diagnostic record.
func (s Slot) Record(tok Token, fence uint32, r Result, rise, fall int) (Transition, error) {
	if s.Owner() != tok {
		return Transition{}, ErrNotOwner
	}
	var st, nst State
	for {
		st = s.State()
		if st.Fence() != fence {
			return Transition{}, ErrFenced
		}
		nst = st.next(r.OK, rise, fall)
		if r.OK && st.Ejected() && Now() >= int64(s.m.load(s.off+sEjectUntil)) {
			nst &^= stateEjected
		}
		if s.m.cas(s.off+sState, uint64(st), uint64(nst)) {
			break
		}
	}
	tr := Transition{From: st.Health(), To: nst.Health(), Streak: nst.Streak(), Restored: st.Ejected() && !nst.Ejected()}
	if tr.Changed() && tr.To == Up {
		s.m.store(s.off+sUpSinceNs, uint64(Now()))
	}
	s.m.add(s.off+sChecks, 1)
	bit := uint64(0)
	if r.OK {
		bit = 1
	} else {
		s.m.add(s.off+sFailures, 1)
	}
	s.m.store(s.off+sHistory, s.m.load(s.off+sHistory)<<1|bit)
	if !r.OK {
		s.m.add(s.off+sFailReasons+8*int(min(r.Reason, MaxReasons-1)), 1)
	}
	s.m.add(s.off+sRTTSum, uint64(r.RTT/time.Microsecond))
	b := len(RTTBounds)
	for i, bound := range RTTBounds {
		if r.RTT <= bound {
			b = i
			break
		}
	}
	s.m.add(s.off+sRTTBuckets+8*b, 1)
	if tr.Changed() {
		s.m.add(s.off+sTransitions, 1)
	}
	if s.State().Fence() != fence {
		// Taken over between the CAS and here (this owner was stopped): leave the record to
		// the new owner. The counters above may include this one result; that is all.
		return tr, ErrFenced
	}
	now := NowMs()
	if q, ok := s.beginWrite(); ok {
		s.m.store(s.off+sLastCheckMs, uint64(now))
		s.m.store(s.off+sLastRTT, uint64(r.RTT/time.Microsecond))
		s.m.store(s.off+sLastResult, uint64(r.Reason)|uint64(uint16(r.Status))<<8)
		if !r.OK {
			s.m.storeString(s.off+sDetail, detailLen, r.Detail)
		}
		if tr.Changed() {
			s.m.store(s.off+sSinceMs, uint64(now))
			s.m.store(s.off+sSinceReason, uint64(r.Reason))
		}
		s.endWrite(q)
	}
	return tr, nil
}

// SetAdmin sets the operator's admin state, keeping everything else in the routing word. It
// returns the previous value.
func (s Slot) SetAdmin(a Admin) Admin {
	for {
		st := s.State()
		nst := st&^(3<<2) | State(a&3)<<2
		if s.m.cas(s.off+sState, uint64(st), uint64(nst)) {
			return st.Admin()
		}
	}
}

// AddActive adjusts the count of requests in flight to the server (all workers); AddRequest counts
// one proxied request.
func (s Slot) AddActive(d int64) { s.m.add(s.off+sActive, uint64(d)) }

// AddRequest counts one proxied request.
func (s Slot) AddRequest() { s.m.add(s.off+sRequests, 1) }

// AddError counts one proxied request that failed upstream (connect error, timeout, reset).
func (s Slot) AddError() { s.m.add(s.off+sErrors, 1) }

// Weight returns the configured weight the master recorded.
func (s Slot) Weight() int { return int(s.m.load(s.off + sWeight)) }

// SlowStart returns the slow-start ramp the master recorded (that of the first upstream listing
// the server, as for Weight), 0 for none. It is for display: each worker's balancer ramps by its
// own configuration (upstream.Server.SlowStart).
func (s Slot) SlowStart() time.Duration { return time.Duration(s.m.load(s.off + sSlowStart)) }

// beginWrite enters the seqlock: it returns the even value it moved from, and false when a writer
// holds it (or died inside; the next claim repairs that).
func (s Slot) beginWrite() (uint64, bool) {
	for i := 0; i < 1000; i++ {
		q := s.m.load(s.off + sSeq)
		if q&1 == 0 && s.m.cas(s.off+sSeq, q, q+1) {
			return q, true
		}
		runtime.Gosched()
	}
	return 0, false
}

// endWrite leaves the seqlock entered at q. If a claim repaired the lock meanwhile (this writer
// was taken for dead), it changes nothing, so the lock cannot be left odd.
func (s Slot) endWrite(q uint64) { s.m.cas(s.off+sSeq, q+1, q+2) }

// Active returns the number of requests in flight to the server, across all workers.
func (s Slot) Active() int64 { return int64(s.m.load(s.off + sActive)) }
