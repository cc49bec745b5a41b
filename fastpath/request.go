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
	for i := range cc.req.Fields {
		if h1.EqualFold(cc.req.Fields[i].Name, cc.s.ridLower) {
			if v := cc.req.Fields[i].Value; len(v) > 0 && len(v) <= 200 {
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
		return h1.EqualFold(name, "te")
	case 4:
		if h1.EqualFold(name, "host") {
			return cc.req.Form == h1.Absolute
		}
	case 6:
		return h1.EqualFold(name, "expect")
	case 7:
		if h1.EqualFold(name, "trailer") || (!upgrading && h1.EqualFold(name, "upgrade")) {
			return true
		}
	case 9:
		if h1.EqualFold(name, "forwarded") {
			return true
		}
	case 10:
		if h1.EqualFold(name, "connection") || h1.EqualFold(name, "keep-alive") {
			return true
		}
	case 11:
		if h1.EqualFold(name, "x-forwarded") {
			return true
		}
	case 14:
		if h1.EqualFold(name, "content-length") {
			return true
		}
	case 15:
		if h1.EqualFold(name, "x-forwarded-for") {
			return true
		}
	case 16:
		if h1.EqualFold(name, "proxy-connection") || h1.EqualFold(name, "x-forwarded-host") {
			return true
		}
	case 17:
		if h1.EqualFold(name, "x-forwarded-proto") || h1.EqualFold(name, "transfer-encoding") {
			return true
		}
	case 18:
		if h1.EqualFold(name, "proxy-authenticate") {
			return true
		}
	case 19:
		if h1.EqualFold(name, "proxy-authorization") {
			return true
		}
	}
	if h := cc.s.ridLower; h != "" && len(name) == len(h) && h1.EqualFold(name, h) {
		return true
	}
	return len(cc.req.ConnTokens) > 0 && cc.req.NamedInConnection(name)
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
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = append(b, h1.OriginForm(req.Form, req.Target)...)
	b = append(b, " HTTP/1.1\r\n"...)
	host := req.UpstreamHost()
	switch {
	case req.Form == h1.Absolute:
		b = append(b, "Host: "...)
		b = append(b, host...)
		b = append(b, "\r\n"...)
	case host == nil && srv != nil:
		b = append(b, "Host: "...)
		b = append(b, srv.Address...)
		b = append(b, "\r\n"...)
	}
	for i := range req.Fields {
		h := &req.Fields[i]
		if cc.dropRequestHeader(h.Name, upgrading) {
			continue
		}
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	switch {
	case req.Chunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	case req.ContentLength >= 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, req.ContentLength, 10)
		b = append(b, "\r\n"...)
	}
	if req.TETrailers {
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
		for i := range req.Fields {
			if h1.EqualFold(req.Fields[i].Name, "forwarded") {
				b = append(b, req.Fields[i].Value...)
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
