package upstream

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"hcproxy/internal/h1"
)

// What the std engine checks on the client's side of a request, the way the fast engine does:
// the request target and Host by the rule of internal/h1, each read of the request body bounded
// by a timeout, and a body that cannot be read (malformed framing, a stall, a client that went
// away) told apart from an upstream failure, so that it is answered as the client's fault and
// never counted against a server.

// ClientError is a failure on the client's side of a request: its body could not be read. It is
// never counted against a server (no error, no passive failure) and never retried.
type ClientError struct{ Err error }

func (e *ClientError) Error() string { return "upstream: client request body: " + e.Err.Error() }
func (e *ClientError) Unwrap() error { return e.Err }

// clientStatus is what the proxy answers for a ClientError: 408 when a read of the body timed
// out, 499 when the client went away (the connection ended or failed), 400 for a body whose
// framing net/http refused (a bad chunk, a chunk size line too long). abort says the connection
// is closed with no response, as the fast engine and nginx do for the first two.
func clientStatus(err error) (status int, abort bool) {
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return http.StatusRequestTimeout, true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		return 499, true
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return 499, true // a reset, a broken connection
	}
	return http.StatusBadRequest, false
}

// clientBody is a request body as the proxy reads it from the client. Each read has the
// connection's read deadline d from its start (moved lazily, as NextDeadline says), so a client
// that stops sending its body fails the request after d however long the body is, and one that
// keeps sending never does; the deadline is cleared at the end of the body, because net/http then
// waits for the client's next bytes with a read of its own that a deadline would fail. Errors
// other than io.EOF come back as *ClientError, and the first is kept: net/http cancels the
// request's context when a read from the client fails, so the transport may return
// context.Canceled rather than the body's error, and the proxy asks the body what happened. The
// transport reads the body from its own goroutine, hence the atomics.
type clientBody struct {
	rc  io.ReadCloser
	cc  *http.ResponseController
	d   time.Duration
	dl  atomic.Int64 // the read deadline in force, unix nanoseconds; 0 none
	eof atomic.Bool
	err atomic.Pointer[ClientError]
	n   atomic.Int64 // bytes read, for the request metrics
}

func newClientBody(rc io.ReadCloser, w http.ResponseWriter, d time.Duration) *clientBody {
	return &clientBody{rc: rc, cc: http.NewResponseController(w), d: d}
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.d > 0 {
		var cur time.Time
		if ns := b.dl.Load(); ns != 0 {
			cur = time.Unix(0, ns)
		}
		if next, ok := NextDeadline(cur, b.d, time.Now()); ok {
			b.cc.SetReadDeadline(next) // ErrNotSupported: a writer with no connection, nothing to bound
			b.dl.Store(next.UnixNano())
		}
	}
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	switch {
	case err == nil:
	case err == io.EOF:
		b.eof.Store(true)
		if b.d > 0 {
			b.cc.SetReadDeadline(time.Time{})
			b.dl.Store(0)
		}
	default:
		ce := &ClientError{Err: err}
		b.err.CompareAndSwap(nil, ce)
		err = ce
	}
	return n, err
}

func (b *clientBody) Close() error { return b.rc.Close() }

// done bounds, when the handler returns, what net/http still reads of a body the proxy did not
// read to its end (it drains up to 256 KiB of it before the next request, or closes): a request
// refused or answered early, whose client then stalls, is cut off after d too. A body read to
// its end keeps no deadline, and one that failed needs none (net/http reads no more of it).
func (b *clientBody) done() {
	if b.d > 0 && !b.eof.Load() && b.err.Load() == nil {
		b.cc.SetReadDeadline(time.Now().Add(b.d))
	}
}

// failed returns the first error reading the body, or nil. The transport returns from a try only
// once its write loop (the body's reader) is done, so after a try the answer is final.
func (b *clientBody) failed() *ClientError {
	if b == nil {
		return nil
	}
	return b.err.Load()
}

// checkTarget applies internal/h1's rule to a request net/http accepted: its target (raw, as
// the client sent it) must be one ParseTarget allows and its Host one ValidAuthority allows. It
// returns the authority of an absolute-form target ("" otherwise), which replaces the received
// Host (RFC 9112 section 3.2.2). net/http has already set r.Host from such a target and dropped
// the Host header, so the received Host of an absolute-form request is ignored, as the RFC says.
func checkTarget(r *http.Request) (authority string, err error) {
	form, auth, err := h1.ParseTarget([]byte(r.Method), []byte(r.RequestURI))
	if err != nil {
		return "", err
	}
	if form == h1.Absolute {
		return string(auth), nil
	}
	if !h1.ValidAuthority([]byte(r.Host)) {
		return "", h1.ErrHost
	}
	return "", nil
}
