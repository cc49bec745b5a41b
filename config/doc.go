// Package config reads hcproxy's TOML configuration, applies its defaults
// and validates it, strictly, before anything else runs.
//
// # Model
//
// A config has three parts:
//
//   - process settings at the top level: workers, pid_file, table,
//     max_servers, shutdown_timeout, log_format, error_log;
//   - listeners: one [[server]] table per proxy listener, each naming the
//     upstream that gets its requests, and an optional [status] listener;
//   - upstreams: [upstream.NAME] tables, each a list of servers behind a
//     balancer, with one active health check [upstream.NAME.check];
//   - optionally [fleet]: the etcd cluster through which several hosts
//     share one set of checks (Fleet, package fleet). Without it, Fleet is
//     nil and the host checks every server itself.
//
// A checked server is identified by its address and its probe, Check.Key: a
// hash of everything that defines what the probe sends and how the answer
// is judged, but not of when it runs (interval) or how results become a
// state (rise, fall, initial). The health table has one slot per checked
// server, so two upstreams that list the same address with the same probe
// share one slot, one probe and one state; they must then agree on
// interval, rise and fall. On reload a server whose key is unchanged keeps
// its state; changing the probe (say expect_body) starts it afresh.
//
// # Life of a config
//
// The master calls Load: the TOML is parsed into a generic tree, decoded
// field by field (an unknown key or a value of the wrong type is an error),
// given its defaults in one place (applyDefaults, for exactly the keys the
// file does not set), its relative paths resolved against the file's
// directory, and validated (ranges, references, uniqueness, the shared-slot
// rule). The master passes the result to its workers as JSON (Marshal); a
// worker never reads the TOML file, and Unmarshal validates the JSON with
// the same rules and compiles the body regexps again.
//
// # Bounds
//
// The master reads its config at start and on every reload, so reading one
// must stay fast and small whatever the file holds (the TOML decoder alone
// took 20 s and 4 GB on 60 KB of nested inline tables). Before the decoder
// sees a file, Parse checks it in one linear pass that reads strings and
// comments as TOML does (bounds.go), and refuses, with FILE:LINE, a file of
// more than MaxFileSize bytes (16 MiB), arrays and inline tables nested
// more than MaxDepth (32) deep, a key or table header of more than
// MaxKeyParts (16) parts, a full key name longer than MaxKeyLen (256
// bytes), or more than MaxItems (1,048,576) keys and values, counted as the
// decoder's work grows. After validation it refuses a config whose hand-off
// to the workers (its JSON and the slot map) could be more than MaxHandoff
// (64 MiB), the most a worker reads, so a config that passes -t always
// reaches its workers whole; that is about 66,000 upstreams. The largest
// table, max_servers = 100000 with every server an inline table, is a
// 6.6 MB file of 700,000 items and a 14 MB hand-off.
//
// # Errors
//
// An invalid config gives an Errors value listing every problem of the
// failing stage (decoding, or validation once decoding succeeded), sorted
// by line. Each is an *Error that prints as
//
//	FILE:LINE: KEY: what is wrong
//
// (without LINE when the problem has no line, such as a missing key), where
// KEY is the full dotted key; elements of arrays carry their index:
// server[1].listen, upstream.app.servers[0]. Every such error wraps
// ErrInvalid.
package config
