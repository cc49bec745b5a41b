package fastpath

import (
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"hcproxy/internal/h1"
	"hcproxy/upstream"
)

// States of a client connection, for Drain: only an idle one may be closed from outside.
const (
	stateIdle    = iota // waiting for a request head
	stateActive         // reading a request or answering it
	stateClosing        // closed by CloseIdle
)

// clientConn is one client connection and the buffers its requests reuse. Its goroutine (serve)
// owns everything but state and idleSince, which CloseIdle reads.
type clientConn struct {
	s  *Server
	c  net.Conn
	io sockIO // reads and writes c
	ip []byte // the client's address without the port

	in    rbuf
	req   h1.Head
	resp  h1.Head
	out   []byte // the upstream request head (and a body that was buffered with it)
	body  []byte // a chunked request body's bytes re-framed for the server, as they stream
	rout  []byte // the client response head (and the first body bytes)
	rid   []byte // the request id
	key   []byte // the hash balancer's key of the current request
	tried []*upstream.Server

	state     atomic.Int32
	idleSince atomic.Int64 // unix nanoseconds

	scanned        int       // how far headEnd looked into in.buffered() for the current head
	linger         bool      // an error response ended the connection: close it lingering
	skipped        bool      // empty lines were skipped before the current head
	headerDeadline bool      // the read deadline is the header timeout of the head begun
	rdl, wdl       time.Time // the read and write deadlines set on c

	// now is the connection's clock for its deadlines and timestamps. It is read (tick) after
	// every wait: a read that brought bytes (of a request, a response head, a body, a spliced
	// segment) and a write that had to wait for its peer (write, writeUp). In between it is used
	// as it is, so a small request reads the clock twice, not at each of its dozen deadlines and
	// timestamps (a read costs 20-50 ns in a VM; they were 5% of a worker's CPU), and a deadline
	// set from it is early by no more than the non-blocking work since the last wait.
	now time.Time
}

// tick reads the clock into cc.now.
func (cc *clientConn) tick() time.Time {
	cc.now = time.Now()
	return cc.now
}

// write writes b to the client, ticking the clock when the write had to wait for the client.
func (cc *clientConn) write(b []byte) (int, error) {
	n, err := cc.io.Write(b)
	if cc.io.waited {
		cc.tick()
	}
	return n, err
}

// writeUp writes b to u, ticking the clock when the write had to wait for the server.
func (cc *clientConn) writeUp(u *upConn, b []byte) (int, error) {
	n, err := u.io.Write(b)
	if u.io.waited {
		cc.tick()
	}
	return n, err
}

var clientConns = sync.Pool{New: func() any { return new(clientConn) }}

func newClientConn(s *Server, c net.Conn) *clientConn {
	cc := clientConns.Get().(*clientConn)
	cc.s, cc.c = s, c
	cc.io.init(c)
	if n := s.o.MaxHeadBytes + 4<<10; len(cc.in.buf) != n {
		cc.in.buf = make([]byte, n)
	}
	cc.in.r, cc.in.w = 0, 0
	cc.rdl, cc.wdl, cc.headerDeadline = time.Time{}, time.Time{}, false
	cc.ip = cc.ip[:0]
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		cc.ip = a.AddrPort().Addr().Unmap().AppendTo(cc.ip)
	} else if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		cc.ip = append(cc.ip, host...)
	}
	cc.state.Store(stateIdle)
	cc.idleSince.Store(cc.tick().UnixNano())
	return cc
}

func (cc *clientConn) release() {
	cc.s, cc.c = nil, nil
	cc.io.clear()
	cc.req.Reset()
	cc.resp.Reset()
	cc.tried = cc.tried[:0]
	clientConns.Put(cc)
}

// serve reads and answers the requests of the connection until it closes, either side ends
// keep-alive, or a request is malformed.
func (cc *clientConn) serve() {
	cc.linger = false
	defer func() {
		if cc.linger {
			cc.lingerClose()
		}
		cc.c.Close()
		cc.s.untrack(cc)
		cc.s.connClosed()
		cc.release()
	}()
	first := true
	for {
		if err := cc.readHead(first); err != nil {
			var pe *h1.Error
			if errors.As(err, &pe) && cc.state.Load() == stateActive {
				cc.writeError(pe.Status, false) // before any request: nothing to log
			}
			return
		}
		if !cc.serveRequest() {
			return
		}
		first = false
		cc.idleSince.Store(cc.now.UnixNano()) // ticked at the response head or the body's last wait
		if !cc.state.CompareAndSwap(stateActive, stateIdle) {
			return
		}
	}
}

// readHead reads the next request head into cc.req: it must begin within the idle timeout (the
// header timeout on a new connection) and be complete within the header timeout of its first
// byte. The connection is active once any byte of it arrived.
func (cc *clientConn) readHead(first bool) error {
	o := &cc.s.o
	cc.scanned, cc.skipped = 0, false
	cc.rid = cc.rid[:0]
	for {
		cc.skipEmptyLines()
		if cc.in.len() > 0 {
			if !cc.state.CompareAndSwap(stateIdle, stateActive) && cc.state.Load() != stateActive {
				return net.ErrClosed
			}
			b := cc.in.buffered()
			if n := h1.HeadEnd(b, cc.scanned); n > 0 {
				if n > o.MaxHeadBytes {
					return h1.ErrHeadTooLarge
				}
				err := h1.ParseRequest(b[:n], &cc.req)
				if err == nil {
					cc.in.consume(n)
				}
				return err
			}
			cc.scanned = len(b)
			if len(b) >= o.MaxHeadBytes {
				return h1.ErrHeadTooLarge
			}
		}
		timeout := o.ClientIdleTimeout
		if first {
			timeout = o.ClientHeaderTimeout
		}
		if cc.in.len() > 0 || cc.skipped {
			// A head has begun: it gets the header timeout from here on (set once).
			if (cc.scanned > 0 || cc.skipped) && o.ClientHeaderTimeout > 0 && !cc.headerDeadline {
				cc.rdl = cc.now.Add(o.ClientHeaderTimeout)
				cc.c.SetReadDeadline(cc.rdl)
				cc.headerDeadline = true
			}
		} else if timeout > 0 {
			cc.rdl = lazyDeadline(cc.c.SetReadDeadline, cc.rdl, timeout, cc.now)
			cc.headerDeadline = false
		} else {
			cc.rdl = time.Time{}
			cc.c.SetReadDeadline(cc.rdl)
		}
		if cc.in.w == len(cc.in.buf) && cc.in.r > 0 {
			cc.in.w = copy(cc.in.buf, cc.in.buf[cc.in.r:cc.in.w])
			cc.in.r = 0
		}
		_, err := cc.in.fill(&cc.io)
		cc.tick() // the request's clock starts when its bytes arrive
		if err != nil {
			if cc.in.len() > 0 && err == io.EOF {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
}

// skipEmptyLines drops CRLFs (and bare LFs) before a request line (RFC 9112 section 2.2: a
// server should ignore at least one; some clients send one after a body; nginx and HAProxy skip
// any number). The bytes skipped begin the head for its timeout, so a client that trickles
// empty lines is cut off by the header timeout as one that trickles a head.
func (cc *clientConn) skipEmptyLines() {
	b := cc.in.buffered()
	i := 0
	for i < len(b) && (b[i] == '\r' || b[i] == '\n') {
		i++
	}
	if i > 0 {
		cc.in.consume(i)
		cc.skipped = true
	}
}

// writeError answers the current request with status and a short text body, its status text,
// which names nothing internal (no upstream, no server); keep says whether the connection stays
// open after it. It returns whether the connection stays open, and the body bytes it wrote (0
// for a HEAD request or when the write failed), which is what the access log records.
func (cc *clientConn) writeError(status int, keep bool) (bool, int64) {
	text := statusText(status)
	b := cc.rout[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, text...)
	b = append(b, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n"...)
	body := text
	b = append(b, "Content-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)+1), 10)
	b = append(b, "\r\n"...)
	if h := cc.s.o.RequestIDHeader; h != "" && len(cc.rid) > 0 {
		b = append(b, h...)
		b = append(b, ": "...)
		b = append(b, cc.rid...)
		b = append(b, "\r\n"...)
	}
	if !keep || cc.s.draining.Load() {
		keep = false
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, "\r\n"...)
	var sent int64
	if !h1.EqualFold(cc.req.Method, "head") {
		b = append(b, body...)
		b = append(b, '\n')
		sent = int64(len(body) + 1)
	}
	cc.rout = b
	cc.setWriteDeadline()
	_, err := cc.write(b)
	cc.linger = !keep && err == nil
	if err != nil {
		sent = 0
	}
	return keep && err == nil, sent
}

// Lingering close, as nginx's lingering_close: after an error response that ends a connection
// whose client may still be sending (a head too large, a refused body), the proxy half-closes
// and reads and discards what comes until the client closes, lingerTimeout passes with nothing
// or lingerTime in all. Closing with unread input would make the kernel send a reset, and a
// reset can destroy the response in the client's receive buffer before the client reads it.
const (
	lingerTime    = 5 * time.Second
	lingerTimeout = time.Second
)

// lingerClose half-closes the client connection and discards its input until it closes or the
// linger bounds pass. The caller closes the connection after it.
func (cc *clientConn) lingerClose() {
	tc, ok := cc.c.(*net.TCPConn)
	if !ok || tc.CloseWrite() != nil {
		return
	}
	end := time.Now().Add(lingerTime)
	for {
		now := time.Now()
		if !now.Before(end) {
			return
		}
		tc.SetReadDeadline(now.Add(min(lingerTimeout, end.Sub(now))))
		cc.in.r, cc.in.w = 0, 0
		if _, err := cc.in.fill(&cc.io); err != nil {
			return
		}
	}
}

// setWriteDeadline arms ClientSendTimeout for a write to the client that starts at cc.now: the
// bound is on each write (nginx's send_timeout), so a client that keeps reading is never cut
// off.
func (cc *clientConn) setWriteDeadline() {
	if t := cc.s.o.ClientSendTimeout; t > 0 {
		cc.wdl = lazyDeadline(cc.c.SetWriteDeadline, cc.wdl, t, cc.now)
	}
}

// lazyDeadline moves a deadline that was set to cur to now+d, but only when that moves it by
// more than d/8: a timeout then holds within 1/8 of its length, and a busy keep-alive connection
// does not reset its timers on every request. It returns the deadline in force.
func lazyDeadline(set func(time.Time) error, cur time.Time, d time.Duration, now time.Time) time.Time {
	next, ok := upstream.NextDeadline(cur, d, now)
	if ok {
		set(next)
	}
	return next
}

func statusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 405:
		return "Method Not Allowed"
	case 417:
		return "Expectation Failed"
	case 431:
		return "Request Header Fields Too Large"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	}
	return "Error"
}
