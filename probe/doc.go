// Package probe does one active health check of one target and returns a
// typed Result.
//
// # Model
//
// A Prober is a small, stateless value built once from a check's options,
// one constructor and one file per check type: NewHTTP (http.go), NewTCP and
// NewTCPSequence (tcp.go), NewTLS (tls.go), NewHTTPS (https.go), NewGRPC
// (grpc.go), NewRedis (redis.go), NewMySQL (mysql.go), NewPostgres
// (postgres.go, pgauth.go), NewSMTP (smtp.go), NewFastCGI (fastcgi.go) and
// NewAgent (agent.go). Probe(ctx, addr) dials addr, makes the one exchange
// its protocol needs, closes the connection and returns. The deadline
// of ctx is the whole check's timeout: it bounds the dial, the write and every
// read, because the connection's deadline is set from it. Cancelling ctx
// aborts the check. Nothing survives the call: no goroutines (other than
// those inside package net, and net/http's HTTP/2 client for https and grpc,
// which end with the connection), no timers, no pooled connections. The one
// exception is keep-alive (keep.go): http, https and grpc are also
// ConnProbers, whose ProbeConn runs by a deadline over a Conn that the
// caller owns, and which keeps the connection (and the probe's buffers)
// from one check to the next when the check asks for it. An owner that
// keeps the deadlines itself (Conn.SetOwnerDeadline; the worker's checker
// does) ends each probe with Conn.Expire, so the http probe moves no
// runtime timer. The descriptors of closed check connections that had to
// wait in the runtime's poller are closed in batches a few milliseconds later
// (closer.go); the others are closed at once.
//
// Connections to IP literals are made with raw system calls (dial.go) and
// enter the runtime's poller only when a call must wait. An owner may also
// hand its probes a Gate (WithGate; the checker does, for http): the answer
// to a request is then read at the owner's next wake-up, with the answers of
// the other probes started meanwhile, instead of waking the process once per
// answer. Result.RTT stays the server's: the kernel stamps the answer's
// arrival (SO_TIMESTAMPNS), and the time it waited at the gate is not counted.
//
// Scheduling, hysteresis (rise/fall) and writing state to the shared table
// live once, in worker/. probe/ only knows how to do one check.
//
// # Results
//
// Every check reports a Reason from one fixed set shared by all check types.
// Reasons are stored as numbers in the shared-memory table, so their values
// never change; new ones are only appended. Errors are classified with
// errors.Is/As and net.Error.Timeout, never by matching error text, and in a
// fixed order: transport errors first (connect, send, timeout, early close),
// then framing (bad_response, too_large), then the status code (bad_status),
// then the body (body_mismatch). The first failure wins.
//
// Result.Detail is a short human string for logs and the status page (at
// most 120 bytes); Result.Bytes is the number of bytes read from the peer.
//
// # Bounded reads
//
// Responses come from untrusted peers. ParseResponse is a hand-written,
// strict HTTP/1.x response parser that reads at most max+1 bytes from the
// connection and buffers no more than that, so a peer that streams forever
// costs a bounded amount of memory and time. It is fuzzed (FuzzParseResponse).
// The other protocols read through a session (conn.go) whose budget is
// max_response for the whole exchange; a length field is checked against
// what is left of the budget before anything is allocated. Each parser has
// a fuzz target (fuzz_checks_test.go). TLS checks may read 64KiB more for
// the handshake.
package probe
