// Package fleet shares one set of health checks between the hosts of a
// fleet of proxies through etcd: each checked server is probed by a few
// hosts, not by all of them, and every host routes on the same, voted state.
//
// # Model
//
// A host runs one Coordinator. Its state in etcd lives under a prefix
// (default "/hcproxy/") and is attached to one lease of the host, renewed
// every TTL/3:
//
//	PREFIX/members/HOST        the host is a live member (value: its lease)
//	PREFIX/claims/KEY/HOST     HOST checks the server KEY
//	PREFIX/state/KEY/HOST      HOST's verdict on KEY: "up" or "down"
//
// KEY is the caller's opaque string for a checked server (the table's slot
// key: address and check hash), path-escaped so that it holds no "/". A
// Coordinator reads the whole prefix once per session, then follows it with
// one watch, so its view is etcd's, in revision order.
//
// Assignment: the hosts ranked for KEY are the live members ordered by a
// rendezvous hash of (KEY, HOST) (rank.go), the same on every host with no
// communication. A host among the Checkers best-ranked claims KEY at once,
// with a transaction that creates its claim only if absent; a host ranked
// lower claims it only after fewer than Checkers hosts ranked above it have
// held a claim for a grace of TTL/2 (one that does not know KEY is stepped
// in for). A session also waits that grace, in fallback, before its first
// claims, so hosts starting together each claim their share. A host releases a claim once Checkers hosts ranked above it hold
// claims and have published a verdict, so a newcomer takes over without a
// gap. With stable membership exactly the Checkers best-ranked hosts that
// know KEY hold its claims; when one dies, its claims vanish with its lease
// and the next host in the ranking, now among the best, claims them at once.
//
// Results: the holder of a claim publishes its verdict when it changes
// (Publish), never per probe. The lease's renewal is the refresh: a verdict
// lives exactly as long as its host's lease.
//
// Votes: the fleet's state of KEY is decided from the verdicts of its
// current checkers (the live hosts holding a claim): Down when more than
// half of them say down, Up otherwise, Unknown when none has published
// (Vote.Decide). One host with a bad path to a server cannot take it out
// for everyone unless it is the only checker.
//
// # Invariants
//
//   - The data plane never waits on etcd: View, Owned, Fallback and Stats
//     read an immutable snapshot and atomics; Publish and SetKeys record the
//     request and return.
//   - Never a stale fleet view past the lease: the lease deadline is the
//     send time of the last acknowledged renewal plus the TTL, an
//     underestimate of when etcd expires the lease. From that instant
//     Fallback is true (computed by the reader from the clock, not by the
//     loop), View is empty and Owned is every key: the host checks
//     everything itself. The session then ends; the next one starts from a
//     fresh lease and a fresh read when etcd answers again.
//   - A host name is held by one live process: a session whose member key
//     exists under another lease (a duplicate host, or this host's previous
//     run) waits, in fallback, for that lease to lapse.
//   - One goroutine (Run) owns the cache of etcd's keys and every write;
//     a second renews the lease and moves the deadline.
//
// # What it does not do
//
// It does not probe, schedule or apply hysteresis: the caller probes the
// keys in Owned and publishes its verdicts. It cannot tell a host whose
// lease is renewed but whose probes stopped: its verdicts stand until its
// lease lapses. After etcd itself restarts, etcd restores every lease with
// a full TTL, so a host that died while etcd was down keeps its claims for
// one more TTL.
package fleet
