// Package conformance is a differential test of hcproxy's request handling: raw requests from
// public corpora go, each on a fresh connection, to hcproxy with each engine and to nginx and
// HAProxy as oracles, each in front of a recording backend, and hcproxy fails a case when it
// forwards what both oracles refuse, forwards something framed differently from what it
// accepted, or turns one request into two. See docs/conformance.md for the counts of a run and
// each difference from the oracles explained.
//
// The model. A lane is one port of every proxy with a recorder behind each; a lane runs one
// case at a time, so everything its recorders receive belongs to that case. A recorder is a raw
// TCP server that keeps the exact bytes of each connection, frames them into requests with the
// package's own RFC 9112 reader (independent of both engines' parsers), and answers each request
// with a 200 that carries a serial number; a response that reaches the wrong client is traced to
// the request it answered by that serial. The corpus is data (testdata/*.txt, one case per
// entry, with its source); testdata/allow.txt lists, with a reason each, the cases an engine
// may forward although both oracles refuse them.
//
// Everything is in the package's tests; this file only documents it. The test needs nginx and
// HAProxy (Debian's packages) and skips, saying so, without them; it builds cmd/hcproxy itself
// unless HCPROXY_BIN names a binary.
package conformance
