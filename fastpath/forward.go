package fastpath

import (
	"context"
	"errors"
	"io"
	"net"
	"time"

	"hcproxy/internal/h1"
	"hcproxy/shm"
	"hcproxy/upstream"
)

// exchange is the state of one client request across its tries.
type exchange struct {
	keepClient bool  // the client connection may serve another request after this one
	upgrading  bool  // the client asked for an Upgrade
	streaming  bool  // part of the body is still to be read from the client
	bodyRead   bool  // body bytes were read from the client socket: the request cannot be replayed
	bodyLeft   int64 // Content-Length body bytes still to be read from the client
	chunks     h1.ChunkScanner
	sent100    bool
	interim    bool // a 1xx response went to the client: no retry after it
	upTime     time.Duration
	connect    time.Duration // the connect time of the last new upstream connection
	tries      upstream.Tries
	bytes      int64 // response body bytes sent to the client
	bytesIn    int64 // request body bytes read from the client
	status     int
	own        shm.OwnReason // why hcproxy answered itself, shm.OwnNone when it relayed a response
}

// clientError is a failure on the client's side while its body streams upstream.
type clientError struct{ err error }

func (e *clientError) Error() string { return "fastpath: client: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// isClientError reports whether err is a *clientError (never wrapped: a type assertion, which
// unlike errors.As allocates nothing).
func isClientError(err error) bool {
	_, ok := err.(*clientError)
	return ok
}

// serveRequest forwards cc.req (its head parsed, its body unread) and answers the client; it
// returns whether the connection may serve another request.
func (cc *clientConn) serveRequest() bool {
	s, req := cc.s, &cc.req
	o := &s.o
	if o.OnRequest != nil {
		o.OnRequest()
	}
	x := exchange{keepClient: !req.ConnClose && (req.Minor == 1 || req.ConnKeepAlive)}
	x.upgrading = req.Upgrade != nil && req.ConnUpgrade && req.Minor == 1
	cc.requestID()
	var key string
	if s.key != nil {
		cc.key = append(cc.key[:0], s.key(cc, req)...)
		key = unsafeString(cc.key)
	}
	// cc.now was ticked when the request's bytes arrived; the tries' slice is the connection's.
	x.tries = upstream.Tries{Tried: cc.tried[:0]}
	x.tries.Reset(key, upstream.Idempotent(unsafeString(req.Method)), cc.now)
	defer func() { cc.tried = x.tries.Tried[:0] }()
	var entry *upstream.Entry
	if o.AccessLog != nil {
		entry = cc.newEntry(x.tries.Start)
	}
	srv := s.policy.Pick(&x.tries)
	if srv == nil {
		cc.buildRequest(nil, false)
		if cc.bufferBody(&x) != nil || x.streaming {
			x.keepClient = false
		}
		keep := cc.refuse(&x, 503, x.keepClient)
		cc.finish(entry, &x, nil)
		return keep
	}
	cc.buildRequest(srv, x.upgrading)
	if err := cc.bufferBody(&x); err != nil {
		cc.refuse(&x, 400, false)
		cc.finish(entry, &x, nil)
		return false
	}
	u, srv, err := cc.tryServers(&x, srv)
	if err != nil {
		srv.Slot.AddActive(-1)
		var ce *clientError
		switch {
		case errors.As(err, &ce):
			switch {
			case ce.err == h1.ErrBadChunk:
				cc.refuse(&x, 400, false)
			case isTimeout(ce.err):
				// The body stalled past client_idle_timeout: closed with no answer, logged as
				// 408, as nginx's client_body_timeout and the std engine do.
				s.log.Debug("client body timed out", "upstream", s.name, "server", srv.Address)
				x.status, x.own = 408, shm.OwnClientClosed
			default:
				s.log.Debug("client went away", "upstream", s.name, "server", srv.Address, "err", ce.err)
				x.status, x.own = 499, shm.OwnClientClosed
			}
		default:
			s.log.Warn("upstream request failed", "upstream", s.name, "server", srv.Address, "tries", x.tries.N, "err", err)
			x.status = 502
			if isTimeout(err) {
				x.status = 504
			}
			x.keepClient = cc.refuse(&x, x.status, x.keepClient && !x.streaming)
		}
		cc.finish(entry, &x, srv)
		return x.keepClient && x.status != 499 && x.status != 400 && x.status != 408
	}
	keep := cc.forwardResponse(&x, u, srv)
	cc.finish(entry, &x, srv)
	return keep
}

// refuse answers the request with hcproxy's own response of status (writeError) and notes the
// status and the body bytes sent in x, for the access log; it returns whether the connection
// stays open.
func (cc *clientConn) refuse(x *exchange, status int, keep bool) bool {
	x.status, x.own = status, upstream.OwnReason(status)
	keep, x.bytes = cc.writeError(status, keep)
	return keep
}

// bufferBody appends the part of the request body that came with the head to cc.out, so that
// the head and a small body go upstream in one write and can be sent again on a retry; it notes
// in x what is left to stream from the client.
func (cc *clientConn) bufferBody(x *exchange) error {
	req := &cc.req
	switch {
	case req.Chunked:
		n, out, err := x.chunks.Scan(cc.in.buffered(), h1.ChunkEncode, cc.out)
		if err != nil {
			return err
		}
		cc.out = out
		cc.in.consume(n)
		x.bytesIn += int64(n)
		x.streaming = !x.chunks.Done()
	case req.ContentLength > 0:
		k := min(req.ContentLength, int64(cc.in.len()))
		cc.out = append(cc.out, cc.in.buffered()[:k]...)
		cc.in.consume(int(k))
		x.bytesIn += k
		x.bodyLeft = req.ContentLength - k
		x.streaming = x.bodyLeft > 0
	}
	return nil
}

// tryServers sends the request to srv and, as the upstream's policy allows, to other servers.
// It returns the connection whose response head is in cc.resp (the server's active count still
// held), or the last error (with the count of the server it names still held).
func (cc *clientConn) tryServers(x *exchange, srv *upstream.Server) (*upConn, *upstream.Server, error) {
	p := cc.s.policy
	first := cc.now
	defer func() { x.upTime = cc.now.Sub(first) }()
	for {
		p.Begin(&x.tries, srv)
		u, err := cc.roundTrip(x, srv)
		cc.tick() // the response head arrived, or the try failed
		if isClientError(err) {
			return nil, srv, err
		}
		status := 0
		if err == nil {
			status = cc.resp.Status
		}
		_, next := p.After(&x.tries, srv, err, status, shm.At(cc.now), cc.now.Sub(x.tries.Start), !x.bodyRead && !x.interim)
		if next == nil {
			return u, srv, err
		}
		if u != nil {
			u.close()
		}
		srv.Slot.AddActive(-1)
		srv = next
	}
}

// roundTrip sends the request to srv over an idle connection (or a new one) and reads the
// response head into cc.resp. A reused connection that the server had closed is replaced by a
// new one, once, when nothing came back and the request can be sent again.
func (cc *clientConn) roundTrip(x *exchange, srv *upstream.Server) (*upConn, error) {
	pool := cc.s.pools[srv]
	x.connect = 0 // this try's, not an earlier one's
	u := pool.get(cc.now)
	for {
		if u == nil {
			t0 := time.Now() // only for a new connection: a reused one costs no clock read
			c, err := cc.s.dialer.Dial("tcp", srv.Address)
			x.connect = time.Since(t0)
			if err != nil {
				return nil, err
			}
			u = pool.wrap(c)
		}
		got, err := cc.exchangeOn(x, u)
		if err == nil {
			return u, nil
		}
		reused := u.reused
		u.close()
		if reused && err == errUnsolicited {
			u = pool.get(cc.now) // nothing was sent: another idle connection, or a new one
			continue
		}
		if !reused || got || x.bodyRead || isClientError(err) || isTimeout(err) {
			return nil, err
		}
		u = nil // the server closed the idle connection: try a new one
	}
}

// exchangeOn writes the request (streaming the rest of its body) to u and reads the response
// head; got says whether any response byte arrived.
func (cc *clientConn) exchangeOn(x *exchange, u *upConn) (got bool, err error) {
	o := &cc.s.o
	out := cc.out
	if !x.streaming {
		// The whole request is in out: prove the connection quiet, send, and wait for the
		// answer, all in one call (sockIO.Exchange).
		if o.ReadTimeout > 0 {
			u.rdl = lazyDeadline(u.c.SetReadDeadline, u.rdl, o.ReadTimeout, cc.now)
		}
		sent, n, err := u.io.Exchange(out, u.in.buf[u.in.w:])
		u.in.w += n
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return n > 0, err
		}
		out = out[sent:]
	} else if u.reused && !u.io.Quiet() {
		return false, errUnsolicited
	}
	if len(out) > 0 {
		u.setWriteDeadline(o.SendTimeout, cc.now)
		if _, err := cc.writeUp(u, out); err != nil {
			return false, err
		}
	}
	if x.streaming {
		if err := cc.streamBody(x, u); err != nil {
			if isClientError(err) {
				return false, err
			}
			// The server stopped reading: it may have answered early (413, 401...), and that
			// answer goes to the client. A send timeout without one fails the try as a timeout
			// (nginx's proxy_send_timeout) rather than waiting for an answer for ReadTimeout.
			if isTimeout(err) && !u.answered() {
				return false, err
			}
		}
	}
	if o.ReadTimeout > 0 {
		u.rdl = lazyDeadline(u.c.SetReadDeadline, u.rdl, o.ReadTimeout, cc.now)
	}
	scanned := 0
	for {
		b := u.in.buffered()
		if len(b) > 0 {
			got = true
			if n := h1.HeadEnd(b, scanned); n > 0 {
				if err := h1.ParseResponse(b[:n], &cc.resp); err != nil {
					return true, err
				}
				if st := cc.resp.Status; st < 200 && st != 101 {
					// An interim response (103 Early Hints, a 100 the server sent anyway):
					// to an HTTP/1.1 client as it is, then wait for the final one.
					if cc.req.Minor == 1 && !(st == 100 && x.sent100) {
						x.interim = true
						cc.tick()
						cc.setWriteDeadline()
						if _, err := cc.write(b[:n]); err != nil {
							return true, &clientError{err}
						}
					}
					u.in.consume(n)
					scanned = 0
					continue
				}
				u.in.consume(n) // the head's slices stay valid until the next fill
				return true, nil
			}
			scanned = len(b)
			if len(b) >= o.MaxHeadBytes {
				return true, h1.ErrBadResponseHeader
			}
		}
		if _, err := u.in.fill(&u.io); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return got || u.in.len() > 0, err
		}
	}
}

// streamBody sends the rest of the request body from the client to u, as it arrives: a
// Content-Length body byte for byte, a chunked body re-framed canonically (chunkEncode) as
// its framing checks out.
func (cc *clientConn) streamBody(x *exchange, u *upConn) error {
	o := &cc.s.o
	if cc.req.Expect100 && !x.sent100 {
		x.sent100 = true
		cc.setWriteDeadline()
		if _, err := cc.write(continue100); err != nil {
			return &clientError{err}
		}
	}
	for x.streaming {
		if o.ClientIdleTimeout > 0 {
			cc.rdl = lazyDeadline(cc.c.SetReadDeadline, cc.rdl, o.ClientIdleTimeout, cc.now)
		}
		x.bodyRead = true
		_, err := cc.in.fill(&cc.io)
		cc.tick()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return &clientError{err}
		}
		var out []byte
		var used int
		if cc.req.Chunked {
			n, enc, err := x.chunks.Scan(cc.in.buffered(), h1.ChunkEncode, cc.body[:0])
			if err != nil {
				return &clientError{err}
			}
			cc.body, out, used = enc, enc, n
			x.streaming = !x.chunks.Done()
		} else {
			b := cc.in.buffered()
			out = b[:min(int64(len(b)), x.bodyLeft)]
			used = len(out)
			x.bodyLeft -= int64(len(out))
			x.streaming = x.bodyLeft > 0
		}
		cc.in.consume(used)
		x.bytesIn += int64(used)
		if len(out) == 0 {
			continue
		}
		u.setWriteDeadline(o.SendTimeout, cc.now)
		if _, err = cc.writeUp(u, out); err != nil {
			return err
		}
	}
	return nil
}

var continue100 = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// setWriteDeadline arms the send timeout d (0: none) for a write to u that starts at now: the
// bound is on each write of the request, head or body (nginx's proxy_send_timeout), not on all
// of it.
func (u *upConn) setWriteDeadline(d time.Duration, now time.Time) {
	if d > 0 {
		u.wdl = lazyDeadline(u.c.SetWriteDeadline, u.wdl, d, now)
	}
}

// answered reports whether the server sent response bytes that wait unread on u, waiting at
// most a millisecond for them (they are in the socket's buffer already, or not at all). It
// leaves u with no read deadline.
func (u *upConn) answered() bool {
	if u.in.len() > 0 {
		return true
	}
	u.c.SetReadDeadline(time.Now().Add(time.Millisecond))
	n, _ := u.in.fill(&u.io)
	u.rdl = time.Time{}
	u.c.SetReadDeadline(u.rdl)
	return n > 0
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}
