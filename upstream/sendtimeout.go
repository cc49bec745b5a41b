package upstream

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"
)

// The send timeouts of the net/http path bound each write, not a whole transfer (nginx's
// proxy_send_timeout and send_timeout): a deadline is set when a write starts and holds until
// the next one, so a peer that keeps taking bytes is never cut off, however long a request or
// response lasts, and one that takes none for the timeout fails the write that waits on it.
// Deadlines move lazily (see NextDeadline): a busy connection does not reset its timer on every
// write.

// NextDeadline returns the deadline for a read or write that starts at now, given the one in
// force (cur, zero for none): now+d, or cur itself when that is less than d/8 earlier, so the
// bound holds within 1/8 of d. ok says whether the deadline must be set. Both engines use it;
// the fast engine passes its connection's clock (fastpath's clientConn.tick), this one
// time.Now().
func NextDeadline(cur time.Time, d time.Duration, now time.Time) (next time.Time, ok bool) {
	next = now.Add(d)
	if gap := next.Sub(cur); !cur.IsZero() && gap >= 0 && gap < d/8 {
		return cur, false
	}
	return next, true
}

// sendConn is a dialed upstream connection whose every Write has SendTimeout from its start,
// until it becomes a tunnel. The transport writes a request from its write loop and, after a
// 101, the ReverseProxy from its copier; dl (unix nanoseconds) and tunnel are atomic because
// nothing orders the two.
type sendConn struct {
	net.Conn
	d      time.Duration
	dl     atomic.Int64
	tunnel atomic.Bool
}

func (c *sendConn) Write(b []byte) (int, error) {
	if c.tunnel.Load() {
		return c.Conn.Write(b)
	}
	var cur time.Time
	if ns := c.dl.Load(); ns != 0 {
		cur = time.Unix(0, ns)
	}
	if next, ok := NextDeadline(cur, c.d, time.Now()); ok {
		c.Conn.SetWriteDeadline(next)
		c.dl.Store(next.UnixNano())
	}
	return c.Conn.Write(b)
}

// SetWriteDeadline lets a caller's own deadline replace the lazy one.
func (c *sendConn) SetWriteDeadline(t time.Time) error {
	c.dl.Store(0)
	return c.Conn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines, forgetting the lazy one as SetWriteDeadline does.
func (c *sendConn) SetDeadline(t time.Time) error {
	c.dl.Store(0)
	return c.Conn.SetDeadline(t)
}

// sendTimeoutDial wraps dial so that every connection it makes has send timeout d.
func sendTimeoutDial(dial func(ctx context.Context, network, addr string) (net.Conn, error), d time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &sendConn{Conn: c, d: d}, nil
	}
}

// tunnelConn notes the upstream connection of each try of an upgrade request, so that the one
// that answers 101 loses its send timeout: a tunnel has none on either side, in either engine
// (the fast path's tunnels have no deadlines, and net/http clears the client's on Hijack).
type tunnelConn struct{ c atomic.Pointer[sendConn] }

// traceTunnel returns req with a trace that keeps the connection of each try in the result.
func traceTunnel(req *http.Request) (*http.Request, *tunnelConn) {
	tc := &tunnelConn{}
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		c, _ := info.Conn.(*sendConn)
		tc.c.Store(c)
	}}
	return req.WithContext(httptrace.WithClientTrace(req.Context(), trace)), tc
}

// untimed ends the send timeout of the connection of the last try, now a tunnel.
func (tc *tunnelConn) untimed() {
	if c := tc.c.Load(); c != nil {
		c.tunnel.Store(true)
		c.Conn.SetWriteDeadline(time.Time{})
	}
}

// clientWriter is the response writer of a request when ClientSendTimeout is set: the status,
// every body write and every flush to the client get a write deadline of d from their start,
// and so does what net/http writes after the handler returns (the end of a chunked body).
// net/http clears the deadline when the connection is hijacked for a 101.
type clientWriter struct {
	http.ResponseWriter
	rc       *http.ResponseController
	d        time.Duration
	dl       time.Time // the deadline in force
	hijacked bool
}

func newClientWriter(w http.ResponseWriter, d time.Duration) *clientWriter {
	cw := &clientWriter{ResponseWriter: w, rc: http.NewResponseController(w), d: d}
	cw.arm() // a 100 Continue, written when the body is first read, is a write too
	return cw
}

// arm moves the write deadline for a write that starts now.
func (w *clientWriter) arm() {
	if w.hijacked {
		return
	}
	if next, ok := NextDeadline(w.dl, w.d, time.Now()); ok {
		w.rc.SetWriteDeadline(next) // ErrNotSupported: a writer with no connection, nothing to bound
		w.dl = next
	}
}

// done arms the deadline once more for what net/http writes after the handler returns: the
// body may have waited on the upstream for longer than d since its last write.
func (w *clientWriter) done() { w.arm() }

func (w *clientWriter) WriteHeader(code int) {
	w.arm()
	w.ResponseWriter.WriteHeader(code)
}

func (w *clientWriter) Write(b []byte) (int, error) {
	w.arm()
	return w.ResponseWriter.Write(b)
}

// FlushError flushes within the send timeout (ReverseProxy flushes after every write).
func (w *clientWriter) FlushError() error {
	w.arm()
	return w.rc.Flush()
}

// Hijack hands the connection over (for a 101) and stops arming deadlines on it: a tunnel has
// none, as before the upgrade.
func (w *clientWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.hijacked = true
	return w.rc.Hijack()
}

// Unwrap lets http.ResponseController reach the writer underneath.
func (w *clientWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ConnState is an http.Server ConnState hook for listeners whose handler is a Proxy: a
// connection that goes idle drops the write deadline of its last response (ClientSendTimeout),
// so that what the server itself writes before the next request reaches the handler (a 400, a
// 431) is not refused by a deadline that passed while the connection waited; a connection of
// Listener that is hijacked (an upgrade) stops following request framing.
func ConnState(c net.Conn, st http.ConnState) {
	switch st {
	case http.StateIdle:
		c.SetWriteDeadline(time.Time{})
	case http.StateHijacked:
		if fc, ok := c.(*followConn); ok {
			fc.stop()
		}
	}
}
