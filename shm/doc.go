// Package shm is the health table: one file, mapped MAP_SHARED by the master, every worker and
// hcctl, that holds the health state of every checked server.
//
// The model:
//
//   - A header (magic, layout version, sizes, a checksum of the fixed fields) says what the file is;
//     Attach validates all of it before anything else is read, and refuses anything else with a
//     named error. The magic is written last when a table is initialised.
//   - Only the table's user may write it (trust.go): OpenMaster walks the path without following
//     a symlink, refuses a directory or file that anyone else could write or replace, and builds
//     a new table in a file of its own that it renames into place, so it never re-initialises a
//     file it did not make; a read-write Open (hcctl set) applies the same checks for the
//     table's owner.
//   - A worker table in the header lists the worker processes: each has a token (a never-reused
//     serial and its pid in one word), its generation, its state (starting, ready, draining, dead)
//     and a heartbeat. Only the master adds, drains and buries workers.
//   - One fixed-size slot per checked server, keyed by (server address, check definition hash).
//     The master allocates and frees slots; the slot's owner (one worker) probes it and writes its
//     results. Ownership is a CAS of the owner word from a takeable value to the worker's token;
//     every claim bumps a fencing number kept in the routing word, and the owner's state writes
//     are CAS'd against its fence, so an owner that was stopped and resumed after a takeover
//     cannot overwrite its successor's results.
//   - The routing word (health, admin state, last result, streak, fence) is one 64-bit value that
//     the data plane reads on every request with a single atomic load. The diagnostic record
//     (last check time, round trip, reason, detail text, transition time) spans several words and
//     is guarded by a seqlock; a writer that died inside it is repaired by the next claim.
//
// Every shared field is a fixed-width 64-bit word accessed with sync/atomic; no Go pointer or
// time.Time is ever stored. Times shared between processes are CLOCK_MONOTONIC nanoseconds (for
// schedules and leases) or Unix milliseconds (for display). Only mem.go uses unsafe, and nothing
// outside this package knows an offset.
package shm
