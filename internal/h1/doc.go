// Package h1 holds the HTTP/1.1 byte rules (RFC 9112, RFC 9110) that more than one part of
// hcproxy must apply the same way: which request targets a proxy forwards and which Host the
// upstream request carries.
//
// Every function here is pure: it reads bytes and returns a decision, allocating nothing, so the
// fast engine can call it per request and the std engine and the probes can call it too. When two
// callers must agree (a request that one engine forwards must not be refused by the other for a
// reason of framing or form), the rule lives here once and both call it.
package h1
