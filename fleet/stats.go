package fleet

import "sync/atomic"

// Stats are a Coordinator's counters since New, for metrics.
type Stats struct {
	RoundTrips uint64 // etcd requests of every kind
	Writes     uint64 // write requests (transactions, puts, deletes, grants, revokes)
	WriteOps   uint64 // keys put or deleted by them
	KeepAlives uint64 // lease renewals acknowledged
	Claims     int64  // claims held now (0 in fallback)
	Fallbacks  uint64 // sessions lost: times this host went back to checking everything
	Sessions   uint64 // sessions started (joins)
}

type counters struct {
	roundTrips, writes, writeOps, keepAlives, fallbacks, sessions atomic.Uint64
	claims                                                        atomic.Int64
}

// Stats returns the counters.
func (c *Coordinator) Stats() Stats {
	s := &c.stats
	st := Stats{
		RoundTrips: s.roundTrips.Load(), Writes: s.writes.Load(), WriteOps: s.writeOps.Load(),
		KeepAlives: s.keepAlives.Load(), Claims: s.claims.Load(), Fallbacks: s.fallbacks.Load(),
		Sessions: s.sessions.Load(),
	}
	if c.Fallback() {
		st.Claims = 0
	}
	return st
}
