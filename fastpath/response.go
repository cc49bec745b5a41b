package fastpath

import (
	"io"
	"net"
	"strconv"
	"time"

	"hcproxy/internal/h1"
	"hcproxy/shm"
	"hcproxy/upstream"
)

// Response bodies longer than spliceMin beyond what came with the head are copied by the kernel
// (splice through a pipe) in segments of spliceSegment, each with fresh timeouts that follow its
// progress (splice.go).
const (
	spliceMin     = 64 << 10
	spliceSegment = 1 << 20
)

// dropResponseHeader reports whether an upstream response header stays away from the client:
// hop-by-hop headers (as net/http's ReverseProxy removes them, Upgrade kept on a 101) and the
// request id header (set to cc.rid). The framing headers stay, since the body passes as it is,
// even when Connection names them (Transfer-Encoding goes when the body is decoded).
func (cc *clientConn) dropResponseHeader(name []byte, upgraded, decode bool) bool {
	switch len(name) {
	case 14:
		if h1.EqualFold(name, "content-length") {
			return false
		}
	case 2:
		return h1.EqualFold(name, "te")
	case 7:
		if h1.EqualFold(name, "trailer") || (!upgraded && h1.EqualFold(name, "upgrade")) {
			return true
		}
	case 10:
		if h1.EqualFold(name, "connection") || h1.EqualFold(name, "keep-alive") {
			return true
		}
	case 16:
		if h1.EqualFold(name, "proxy-connection") {
			return true
		}
	case 17:
		if h1.EqualFold(name, "transfer-encoding") {
			return decode
		}
	case 18:
		if h1.EqualFold(name, "proxy-authenticate") {
			return true
		}
	}
	if h := cc.s.ridLower; h != "" && len(name) == len(h) && h1.EqualFold(name, h) {
		return true
	}
	return len(cc.resp.ConnTokens) > 0 && cc.resp.NamedInConnection(name)
}

// framing of a response body
const (
	bodyNone = iota
	bodyLength
	bodyChunked
	bodyToEOF
)

// forwardResponse sends the response whose head is in cc.resp, and its body, to the client,
// then keeps u for reuse when it is in a known state. It releases srv's active count and
// returns whether the client connection may serve another request.
func (cc *clientConn) forwardResponse(x *exchange, u *upConn, srv *upstream.Server) bool {
	resp, req := &cc.resp, &cc.req
	defer srv.Slot.AddActive(-1)
	x.status = resp.Status
	upgraded := resp.Status == 101
	if upgraded && !x.upgrading {
		u.close()
		cc.s.log.Warn("upstream switched protocols unasked", "upstream", cc.s.name, "server", srv.Address)
		return cc.refuse(x, 502, false)
	}
	reuse := !resp.ConnClose && (resp.Minor == 1 || resp.ConnKeepAlive) && !upgraded
	framing := bodyNone
	switch {
	case upgraded, resp.Status == 204, resp.Status == 304, h1.EqualFold(req.Method, "head"):
	case resp.Chunked:
		framing = bodyChunked
	case resp.ContentLength >= 0:
		framing = bodyLength
	default:
		framing, reuse, x.keepClient = bodyToEOF, false, false
	}
	decode := framing == bodyChunked && req.Minor == 0 // an HTTP/1.0 client knows no chunks
	if decode || x.streaming || cc.s.draining.Load() {
		x.keepClient = false // x.streaming: an early answer, the rest of the request body unread
	}

	b := cc.rout[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(resp.Status), 10)
	b = append(b, ' ')
	b = append(b, resp.Reason...)
	b = append(b, "\r\n"...)
	for i := range resp.Fields {
		h := &resp.Fields[i]
		if cc.dropResponseHeader(h.Name, upgraded, decode) {
			continue
		}
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	if h := cc.s.o.RequestIDHeader; h != "" {
		b = append(b, h...)
		b = append(b, ": "...)
		b = append(b, cc.rid...)
		b = append(b, "\r\n"...)
	}
	if cc.s.o.Via {
		b = append(b, "Via: 1.1 hcproxy\r\n"...)
	}
	switch {
	case upgraded:
		b = append(b, "Connection: Upgrade\r\n"...)
	case !x.keepClient:
		b = append(b, "Connection: close\r\n"...)
	case req.Minor == 0:
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	b = append(b, "\r\n"...)
	headLen := len(b)

	var err error
	done := false // the body was read to its end
	switch framing {
	case bodyNone:
		done = true
	case bodyLength:
		k := min(resp.ContentLength, int64(u.in.len()))
		b = append(b, u.in.buffered()[:k]...)
		u.in.consume(int(k))
		done = k == resp.ContentLength
	case bodyChunked:
		var n int
		var out []byte
		if decode {
			out = b
		}
		n, out, err = x.chunks.Reset().Scan(u.in.buffered(), chunkModeFor(decode), out)
		if decode {
			b = out
		} else {
			b = append(b, u.in.buffered()[:n]...)
		}
		u.in.consume(n)
		done = x.chunks.Done()
	case bodyToEOF:
		b = append(b, u.in.buffered()...)
		u.in.consume(u.in.len())
	}
	cc.rout = b
	x.bytes = int64(len(b) - headLen)
	if err != nil {
		u.close()
		return false
	}
	cc.setWriteDeadline()
	if _, werr := cc.write(b); werr != nil {
		u.close()
		return false
	}
	if upgraded {
		cc.splice(u)
		return false
	}
	if !done {
		var n int64
		n, err = cc.copyBody(x, u, framing, decode)
		x.bytes += n
		if err != nil {
			u.close()
			return false
		}
	}
	if reuse {
		u.pool.put(u, cc.now)
	} else {
		u.close()
	}
	return x.keepClient
}

// chunkModeFor is how a chunked response body goes to the client: decoded for an HTTP/1.0
// client, as it is otherwise.
func chunkModeFor(decode bool) h1.ChunkMode {
	if decode {
		return h1.ChunkDecode
	}
	return h1.ChunkPass
}

// copyBody copies the rest of a response body from u to the client.
func (cc *clientConn) copyBody(x *exchange, u *upConn, framing int, decode bool) (int64, error) {
	switch framing {
	case bodyLength:
		return cc.copyN(u, cc.resp.ContentLength-x.bytes)
	case bodyToEOF:
		return cc.copyN(u, -1)
	}
	var total int64
	for !x.chunks.Done() {
		if err := cc.refill(u); err != nil {
			return total, err
		}
		in := u.in.buffered()
		var out []byte
		if decode {
			out = cc.rout[:0]
		}
		n, out, err := x.chunks.Scan(in, chunkModeFor(decode), out)
		if err != nil {
			return total, err
		}
		if !decode {
			out = in[:n]
		} else {
			cc.rout = out
		}
		cc.setWriteDeadline()
		if _, err := cc.write(out); err != nil {
			return total, err
		}
		total += int64(len(out))
		u.in.consume(n)
	}
	return total, nil
}

// refill reads more of a response body into u's buffer, within the read timeout, and ticks the
// clock after the wait.
func (cc *clientConn) refill(u *upConn) error {
	if t := cc.s.o.ReadTimeout; t > 0 {
		u.rdl = lazyDeadline(u.c.SetReadDeadline, u.rdl, t, cc.now)
	}
	_, err := u.in.fill(&u.io)
	cc.tick()
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// copyN copies n body bytes (n < 0: until the server closes) from u to the client: small
// remainders through u's buffer, large ones spliced by the kernel.
func (cc *clientConn) copyN(u *upConn, n int64) (int64, error) {
	var total int64
	dst, canSplice := cc.c.(*net.TCPConn)
	_, srcTCP := u.c.(*net.TCPConn)
	canSplice = canSplice && srcTCP && u.in.len() == 0
	for n != 0 {
		if canSplice && (n < 0 || n > spliceMin) {
			seg := int64(spliceSegment)
			if n > 0 {
				seg = min(seg, n)
			}
			k, err := cc.spliceN(dst, u, seg)
			total += k
			if n > 0 {
				n -= k
			}
			if err != nil {
				return total, err
			}
			if k < seg {
				if n < 0 {
					return total, nil // the server closed: the end of a close-delimited body
				}
				return total, io.ErrUnexpectedEOF
			}
			continue
		}
		err := cc.refill(u)
		if n < 0 && err == io.ErrUnexpectedEOF && u.in.len() == 0 {
			return total, nil
		}
		if err != nil && u.in.len() == 0 {
			return total, err
		}
		out := u.in.buffered()
		if n > 0 {
			out = out[:min(int64(len(out)), n)]
			n -= int64(len(out))
		}
		cc.setWriteDeadline()
		if _, werr := cc.write(out); werr != nil {
			return total, werr
		}
		total += int64(len(out))
		u.in.consume(len(out))
	}
	return total, nil
}

// splice joins the client and the upstream connection after a 101 response: bytes both ways,
// each side's buffered bytes first, until either side closes; then both are closed.
func (cc *clientConn) splice(u *upConn) {
	cc.c.SetDeadline(time.Time{})
	u.c.SetDeadline(time.Time{})
	cc.rdl, cc.wdl, u.rdl, u.wdl = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if b := cc.in.buffered(); len(b) > 0 {
		if _, err := u.io.Write(b); err != nil {
			u.close()
			return
		}
		cc.in.consume(len(b))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		io.Copy(u.c, cc.c)
		u.c.Close()
		cc.c.Close()
	}()
	if b := u.in.buffered(); len(b) > 0 {
		cc.io.Write(b)
		u.in.consume(len(b))
	}
	io.Copy(cc.c, u.c)
	cc.c.Close()
	u.c.Close()
	<-done
	u.close()
}

// newEntry starts the access log entry of the current request, copying what it needs out of
// the request head.
func (cc *clientConn) newEntry(start time.Time) *upstream.Entry {
	req := &cc.req
	proto := "HTTP/1.1"
	if req.Minor == 0 {
		proto = "HTTP/1.0"
	}
	return &upstream.Entry{
		Time: start, RemoteAddr: cc.c.RemoteAddr().String(), Method: string(req.Method), URI: string(req.Target),
		Proto: proto, Referer: string(req.Get("referer")), UserAgent: string(req.Get("user-agent")),
		RequestID: string(cc.rid),
	}
}

// finish reports the request at its end: to the policy (the request metrics, Policy.Done) and
// to the access log when there is one (e), from the same values. It allocates nothing.
func (cc *clientConn) finish(e *upstream.Entry, x *exchange, srv *upstream.Server) {
	r := shm.Request{Status: x.status, Own: x.own, Duration: cc.now.Sub(x.tries.Start), Header: x.upTime,
		Connect: x.connect, BytesIn: x.bytesIn, BytesOut: x.bytes}
	cc.s.policy.Done(&x.tries, srv, &r)
	if e == nil {
		return
	}
	e.Status, e.Bytes, e.UpstreamTime, e.Tries = x.status, x.bytes, x.upTime, x.tries.N
	if srv != nil {
		e.Upstream = srv.Address
	}
	cc.s.o.AccessLog.Log(e)
}
