// Package h1 is hcproxy's HTTP/1.1 byte core (RFC 9112, RFC 9110): the rules that decide how a
// message is framed and what a proxy may forward, written once and used by every part that reads
// HTTP/1 bytes, so that no two of them can read the same bytes two ways.
//
//   - head.go: a request or response head parsed in place (Head, HeadEnd, ParseRequest,
//     ParseResponse): method, target, version, the fields, and what frames the body
//     (Content-Length by RFC 9112 section 6.3, Transfer-Encoding: chunked only, both at once
//     refused) or concerns the connection. Strict: bare CR, NUL, obs-fold, a space before a
//     colon and a malformed Content-Length are errors, each an *Error carrying the status to
//     answer (400, 417, 431, 501; 502 for a response).
//   - chunked.go: a chunked body validated as it streams (ChunkScanner), passed through,
//     decoded, or re-framed canonically (ChunkEncode) so a server parses only what was checked.
//   - target.go: request targets and Host (ParseTarget, OriginForm, ValidAuthority, and
//     Head.UpstreamHost: an absolute-form target's authority replaces Host).
//
// Users: the fast engine (fastpath) parses every request and response with it; the std engine
// (upstream) runs the same request-head and chunk checks on the bytes net/http reads, so both
// engines accept and refuse the same requests.
//
// Every function is pure and allocates nothing per call once a Head has seen its largest head;
// every slice a Head holds points into the buffer it was parsed from.
package h1
