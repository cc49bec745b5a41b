package shm

import "time"

// The fleet's marks in the table (docs/fleet.md). With a [fleet], the master's coordinator
// decides which servers this host checks and which another host checks; the table carries that
// decision to the workers and the fleet's verdicts to the data plane:
//
//   - The remote bit of the routing word: "another host checks this server". Only the master
//     sets and clears it. A worker's claim sweep skips a slot with it set, and an owner that sees
//     it hands the slot back as on a handover (worker/sweep.go). In fallback (etcd lost) the
//     master clears every remote bit, and the workers check everything again.
//   - The master then owns a remote slot under a token of its own (claimed like a worker's, so
//     the claim bumps the fence) and writes the fleet's verdict into it with WriteFleet, a
//     fenced write like a probe's Record: a worker that was stopped inside a probe and resumes
//     writes nothing over it.
//   - The header's fleet words: the coordinator's figures for /metrics and hcctl.

const stateRemote State = 1 << 24

// Remote reports whether another host of the fleet checks the server (the master's mark).
func (s State) Remote() bool { return s&stateRemote != 0 }

// Remote reports whether the master marked the slot as checked by another host.
func (s Slot) Remote() bool { return s.State().Remote() }

// SetRemote sets (on) or clears the slot's remote bit, keeping everything else in the routing
// word, and returns its previous value. Only the master calls it.
func (s Slot) SetRemote(on bool) bool {
	for {
		st := s.State()
		nst := st &^ stateRemote
		if on {
			nst |= stateRemote
		}
		if nst == st || s.m.cas(s.off+sState, uint64(st), uint64(nst)) {
			return st.Remote()
		}
	}
}

// ClearRemote clears the remote bit of every slot (the master: no [fleet], or fallback) and
// returns how many it cleared.
func (t *Table) ClearRemote() int {
	n := 0
	for i := 0; i < t.slots; i++ {
		if t.Slot(i).SetRemote(false) {
			n++
		}
	}
	return n
}

// WriteFleet writes the fleet's verdict h (Up or Down) on a remote slot that tok owns under
// fence, as Record writes a probe's result: the routing word's health is CAS'd against the fence
// (a superseded owner writes nothing and gets ErrFenced), its streak restarts, so the local
// checks that may follow start their rise or fall afresh; on a change the transition is counted
// and timed, and detail (who decided, "fleet: h1, h2 down") becomes the slot's last detail. The
// last check time is the time of this write.
func (s Slot) WriteFleet(tok Token, fence uint32, h Health, detail string) (Transition, error) {
	if s.Owner() != tok {
		return Transition{}, ErrNotOwner
	}
	var st, nst State
	for {
		st = s.State()
		if st.Fence() != fence {
			return Transition{}, ErrFenced
		}
		nst = makeState(h, st.Admin(), h == Up, 0, fence) | st&(stateEjected|agentMask|stateRemote)
		if nst == st || s.m.cas(s.off+sState, uint64(st), uint64(nst)) {
			break
		}
	}
	tr := Transition{From: st.Health(), To: h}
	if !tr.Changed() {
		return tr, nil
	}
	if h == Up {
		s.m.store(s.off+sUpSinceNs, uint64(Now()))
	}
	s.m.add(s.off+sTransitions, 1)
	now := NowMs()
	if q, ok := s.beginWrite(); ok {
		s.m.store(s.off+sLastCheckMs, uint64(now))
		s.m.store(s.off+sLastResult, 0)
		s.m.storeString(s.off+sDetail, detailLen, detail)
		s.m.store(s.off+sSinceMs, uint64(now))
		s.m.store(s.off+sSinceReason, 0)
		s.endWrite(q)
	}
	return tr, nil
}

// FleetMode is where this host stands in the fleet, as the master last wrote it.
type FleetMode uint8

// FleetMode values. Zero is "no [fleet]" (and every older table).
const (
	FleetNone     FleetMode = 0
	FleetFallback FleetMode = 1 // not in the fleet (etcd lost, or not joined yet): checking everything
	FleetJoined   FleetMode = 2 // in the fleet: checking the servers it holds claims on
)

func (m FleetMode) String() string {
	switch m {
	case FleetFallback:
		return "fallback"
	case FleetJoined:
		return "fleet"
	}
	return "none"
}

// FleetStats are the coordinator's figures the master copies into the header.
type FleetStats struct {
	Mode       FleetMode
	Members    int    // live members it sees (0 in fallback)
	Claims     int    // claims it holds (0 in fallback)
	RoundTrips uint64 // etcd requests of every kind, since the master started
	Writes     uint64 // etcd write requests
	Fallbacks  uint64 // times it left the fleet for fallback
	Sessions   uint64 // times it joined
	SinceMs    int64  // when it entered Mode (Unix ms)
}

// Header words of the fleet's figures, relative to hFleet.
const (
	fMode = 8 * iota
	fMembers
	fClaims
	fRoundTrips
	fWrites
	fFallbacks
	fSessions
	fUpdatedMs
	fSinceMs
	fleetWords = iota
)

// SetFleetStats records the master's fleet figures (FleetNone clears them).
func (t *Table) SetFleetStats(f FleetStats) {
	t.m.store(hFleet+fMode, uint64(f.Mode))
	t.m.store(hFleet+fMembers, uint64(max(f.Members, 0)))
	t.m.store(hFleet+fClaims, uint64(max(f.Claims, 0)))
	t.m.store(hFleet+fRoundTrips, f.RoundTrips)
	t.m.store(hFleet+fWrites, f.Writes)
	t.m.store(hFleet+fFallbacks, f.Fallbacks)
	t.m.store(hFleet+fSessions, f.Sessions)
	t.m.store(hFleet+fSinceMs, uint64(max(f.SinceMs, 0)))
	t.m.store(hFleet+fUpdatedMs, uint64(NowMs()))
}

// FleetStats returns the fleet figures the master last recorded, and when (zero time if never).
func (t *Table) FleetStats() (FleetStats, time.Time) {
	f := FleetStats{
		Mode:       FleetMode(min(t.m.load(hFleet+fMode), 255)),
		Members:    int(min(t.m.load(hFleet+fMembers), 1<<31)),
		Claims:     int(min(t.m.load(hFleet+fClaims), 1<<31)),
		RoundTrips: t.m.load(hFleet + fRoundTrips),
		Writes:     t.m.load(hFleet + fWrites),
		Fallbacks:  t.m.load(hFleet + fFallbacks),
		Sessions:   t.m.load(hFleet + fSessions),
		SinceMs:    int64(min(t.m.load(hFleet+fSinceMs), 1<<62)),
	}
	var at time.Time
	if ms := t.m.load(hFleet + fUpdatedMs); ms != 0 {
		at = time.UnixMilli(int64(ms))
	}
	return f, at
}
