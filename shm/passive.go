package shm

import "time"

// Passive checks: the data plane of every worker reports failed requests into the server's slot,
// so the counts are shared. maxFails failures within failTimeout (a window opened by the first
// failure) eject the server for failTimeout (nginx's max_fails/fail_timeout, but across all
// workers); a passing active check after that brings it back (Record). Counting is approximate
// under contention at a window's edge (two workers may both open a window), never wrong by more
// than the failures of that instant.

// PassiveFailure counts a failed request at monotonic time now and reports whether it ejected the
// server. maxFails <= 0 counts without ever ejecting.
func (s Slot) PassiveFailure(now int64, maxFails int, failTimeout time.Duration) bool {
	s.m.add(s.off+sPassive, 1)
	if maxFails <= 0 {
		return false
	}
	start := int64(s.m.load(s.off + sPassWindow))
	if start == 0 || now-start > int64(failTimeout) {
		if s.m.cas(s.off+sPassWindow, uint64(start), uint64(now)) {
			s.m.store(s.off+sPassCount, 0)
		}
	}
	if n := s.m.add(s.off+sPassCount, 1); n < uint64(maxFails) {
		return false
	}
	return s.eject(now, failTimeout)
}

// Response counts a response for outlier detection: limit consecutive 5xx responses (any
// worker) eject the server for d; any other response resets the count. limit <= 0 disables it.
func (s Slot) Response(now int64, is5xx bool, limit int, d time.Duration) bool {
	if limit <= 0 {
		return false
	}
	if !is5xx {
		if s.m.load(s.off+sConsec5xx) != 0 {
			s.m.store(s.off+sConsec5xx, 0)
		}
		return false
	}
	if n := s.m.add(s.off+sConsec5xx, 1); n < uint64(limit) {
		return false
	}
	s.m.store(s.off+sConsec5xx, 0)
	return s.eject(now, d)
}

// eject sets the ejected bit (keeping everything else in the routing word) until now+d, and
// reports whether this call did it.
func (s Slot) eject(now int64, d time.Duration) bool {
	for {
		st := s.State()
		if st.Ejected() {
			return false
		}
		s.m.store(s.off+sEjectUntil, uint64(now+int64(d)))
		if s.m.cas(s.off+sState, uint64(st), uint64(st|stateEjected)) {
			s.m.store(s.off+sPassCount, 0)
			return true
		}
	}
}

// EjectedUntil returns the monotonic time a passive ejection holds until (meaningful while
// State().Ejected()).
func (s Slot) EjectedUntil() int64 { return int64(s.m.load(s.off + sEjectUntil)) }

// UpSince returns the monotonic time of the server's last transition to up, 0 if it never made
// one (it started up).
func (s Slot) UpSince() int64 { return int64(s.m.load(s.off + sUpSinceNs)) }

// SetAgent records what the server's agent check asked for: a weight in percent of the
// configured one (-1: none) and an admin state (kept apart from the operator's, which hcctl
// sets). It returns the agent admin state it replaced.
func (s Slot) SetAgent(weightPct int, a Admin) Admin {
	if weightPct < 0 {
		s.m.store(s.off+sAgentWeight, 0)
	} else {
		s.m.store(s.off+sAgentWeight, uint64(weightPct)+1)
	}
	for {
		st := s.State()
		nst := st&^agentMask | State(a&3)<<6
		if s.m.cas(s.off+sState, uint64(st), uint64(nst)) {
			return st.AgentAdmin()
		}
	}
}

// AgentWeight returns the weight in percent the agent asked for, -1 when none.
func (s Slot) AgentWeight() int { return int(s.m.load(s.off+sAgentWeight)) - 1 }
