package fastpath

import (
	"math/rand/v2"
	"strconv"

	"hcproxy/internal/h1"
	"hcproxy/upstream"
)

// requestID sets cc.rid: the client's id when it sent one of at most 200 bytes, else 32 random
// hex digits (as the net/http path makes up).
func (cc *clientConn) requestID() {
	cc.rid = cc.rid[:0]
	name := cc.s.o.RequestIDHeader
	if name == "" {
		return
	}
	for i := range cc.req.headers {
		if equalFold(cc.req.headers[i].name, cc.s.ridLower) {
			if v := cc.req.headers[i].value; len(v) > 0 && len(v) <= 200 {
				cc.rid = append(cc.rid, v...)
				return
			}
			break
		}
	}
	const hex = "0123456789abcdef"
	for range 2 {
		x := rand.Uint64()
		for range 16 {
			cc.rid = append(cc.rid, hex[x&15])
			x >>= 4
		}
	}
}

// dropRequestHeader reports whether a client header stays out of the upstream request: the
// framing headers (buildRequest writes the framing it checked), the hop-by-hop headers (those
// net/http's ReverseProxy removes, and those Connection names), the forwarding headers hcproxy
// sets itself, Expect (hcproxy answers 100-continue itself), the request id header (set to
// cc.rid), and Host when the target's authority replaces it.
//
// A header that Connection names is dropped only after the framing headers and Host were
// decided above: "Connection: Content-Length" must never leave a body without its framing, and
// "Connection: Host" never a request without Host (the smuggling of issue 12).
func (cc *clientConn) dropRequestHeader(name []byte, upgrading bool) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "te")
	case 4:
		if equalFold(name, "host") {
			return cc.req.form == h1.Absolute
		}
	case 6:
		return equalFold(name, "expect")
	case 7:
		if equalFold(name, "trailer") || (!upgrading && equalFold(name, "upgrade")) {
			return true
		}
	case 9:
		if equalFold(name, "forwarded") {
			return true
		}
	case 10:
		if equalFold(name, "connection") || equalFold(name, "keep-alive") {
			return true
		}
	case 11:
		if equalFold(name, "x-forwarded") {
			return true
		}
	case 14:
		if equalFold(name, "content-length") {
			return true
		}
	case 15:
		if equalFold(name, "x-forwarded-for") {
			return true
		}
	case 16:
		if equalFold(name, "proxy-connection") || equalFold(name, "x-forwarded-host") {
			return true
		}
	case 17:
		if equalFold(name, "x-forwarded-proto") || equalFold(name, "transfer-encoding") {
			return true
		}
	case 18:
		if equalFold(name, "proxy-authenticate") {
			return true
		}
	case 19:
		if equalFold(name, "proxy-authorization") {
			return true
		}
	}
	if h := cc.s.ridLower; h != "" && len(name) == len(h) && equalFold(name, h) {
		return true
	}
	return len(cc.req.connTokens) > 0 && cc.req.namedInConnection(name)
}

// upstreamHost is the Host of the upstream request: the target's authority for absolute-form
// (RFC 9112 section 3.2.2: a proxy generates Host from the target), else the client's Host
// (nil when an HTTP/1.0 client sent none).
func (h *head) upstreamHost() []byte {
	if h.form == h1.Absolute {
		return h.authority
	}
	return h.host
}

// buildRequest writes the upstream request head into cc.out: the client's request line (origin
// form, HTTP/1.1) and headers in their order and spelling, less the dropped ones, then the
// framing the parser checked (Content-Length or chunked, written by the proxy, never copied),
// the forwarding headers, the request id and Via as configured. The Host is the client's, the
// target's authority in absolute-form, or for an HTTP/1.0 request that had none srv's address
// (as net/http's transport would; srv is nil when no server is available and the head is built
// only to be discarded).
func (cc *clientConn) buildRequest(srv *upstream.Server, upgrading bool) {
	req, o := &cc.req, &cc.s.o
	b := cc.out[:0]
	b = append(b, req.method...)
	b = append(b, ' ')
	b = append(b, h1.OriginForm(req.form, req.target)...)
	b = append(b, " HTTP/1.1\r\n"...)
	host := req.upstreamHost()
	switch {
	case req.form == h1.Absolute:
		b = append(b, "Host: "...)
		b = append(b, host...)
		b = append(b, "\r\n"...)
	case host == nil && srv != nil:
		b = append(b, "Host: "...)
		b = append(b, srv.Address...)
		b = append(b, "\r\n"...)
	}
	for i := range req.headers {
		h := &req.headers[i]
		if cc.dropRequestHeader(h.name, upgrading) {
			continue
		}
		b = append(b, h.name...)
		b = append(b, ": "...)
		b = append(b, h.value...)
		b = append(b, "\r\n"...)
	}
	switch {
	case req.chunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case req.contentLength >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, req.contentLength, 10)
		b = append(b, "\r\n"...)
	}
	if req.teTrailers {
		b = append(b, "Te: trailers\r\n"...)
	}
	if upgrading {
		b = append(b, "Connection: Upgrade\r\n"...)
	}
	mode := o.Forwarded
	if mode == "" || mode == "x-forwarded" || mode == "both" {
		b = append(b, "X-Forwarded-For: "...)
		b = append(b, cc.ip...)
		if len(host) > 0 {
			b = append(b, "\r\nX-Forwarded-Host: "...)
			b = append(b, host...)
		}
		b = append(b, "\r\nX-Forwarded-Proto: http\r\n"...)
	}
	if mode == "forwarded" || mode == "both" {
		b = append(b, "Forwarded: "...)
		for i := range req.headers {
			if equalFold(req.headers[i].name, "forwarded") {
				b = append(b, req.headers[i].value...)
				b = append(b, ", "...)
			}
		}
		b = append(b, "for="...)
		if bytesContain(cc.ip, ':') {
			b = append(b, "\"["...)
			b = append(b, cc.ip...)
			b = append(b, "]\""...)
		} else {
			b = append(b, cc.ip...)
		}
		b = append(b, ";host="...)
		b = strconv.AppendQuote(b, unsafeString(host))
		b = append(b, ";proto=http\r\n"...)
	}
	if o.RequestIDHeader != "" {
		b = append(b, o.RequestIDHeader...)
		b = append(b, ": "...)
		b = append(b, cc.rid...)
		b = append(b, "\r\n"...)
	}
	if o.Via {
		b = append(b, "Via: 1.1 hcproxy\r\n"...)
	}
	b = append(b, "\r\n"...)
	cc.out = b
}

func bytesContain(b []byte, c byte) bool {
	for _, x := range b {
		if x == c {
			return true
		}
	}
	return false
}
