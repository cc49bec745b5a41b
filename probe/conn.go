package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// session is one connection of a line- or record-oriented check (tcp
// sequence, redis, mysql, postgres, smtp, fastcgi, agent). Reads go through a
// budget: the whole exchange may read at most max bytes from the peer, and a
// read that would need more fails with ErrTooLarge, so nothing is buffered
// past max.
type session struct {
	conn net.Conn
	lim  *budgetReader
	r    *bufio.Reader
	max  int64
}

// newSession wraps conn; max <= 0 means DefaultMaxResponse.
func newSession(conn net.Conn, max int64) *session {
	if max <= 0 {
		max = DefaultMaxResponse
	}
	lim := &budgetReader{r: conn, left: max}
	return &session{conn: conn, lim: lim, r: bufio.NewReaderSize(lim, 512), max: max}
}

// read returns the number of bytes read from the peer so far.
func (s *session) read() int { return int(s.lim.n) }

// write sends p; the error is classified by sendFailure.
func (s *session) write(p []byte) error {
	_, err := s.conn.Write(p)
	return err
}

// full reads exactly len(p) bytes.
func (s *session) full(p []byte) error {
	_, err := io.ReadFull(s.r, p)
	return err
}

// line reads one line ending in "\n" and returns it without "\r\n" or "\n".
// On an error it returns what it read of the line, too.
func (s *session) line() ([]byte, error) {
	out, err := readLine(s.r)
	if err != nil {
		return out, err
	}
	out = out[:len(out)-1]
	if n := len(out); n > 0 && out[n-1] == '\r' {
		out = out[:n-1]
	}
	return out, nil
}

// readLine reads through the next "\n", however long the line, and returns
// the line with its "\n"; the reader under r must bound it (a session's
// budget does). On an error it returns what it read of the line, too.
func readLine(r *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		frag, err := r.ReadSlice('\n')
		out = append(out, frag...)
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return out, err
		}
	}
}

// budgetReader reads from r until left bytes have been read; after that a
// Read returns ErrTooLarge (never io.EOF, so a peer that sends too much is
// not mistaken for one that closed).
type budgetReader struct {
	r    io.Reader
	left int64
	n    int64
}

func (b *budgetReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, ErrTooLarge
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	b.left -= int64(n)
	return n, err
}

// protoError is a reply that does not follow the protocol; Unwrap gives
// ErrMalformed, so it is classified as bad_response.
func protoError(format string, args ...any) error {
	return &malformedError{what: fmt.Sprintf(format, args...)}
}

// startSession dials addr, arms cancellation and returns a session, or a
// failed Result. The caller must call the returned cleanup.
func startSession(ctx context.Context, addr string, max int64) (*session, func(), Result) {
	conn, res := dial(ctx, addr)
	if conn == nil {
		return nil, nil, res
	}
	// Cancelling ctx aborts the exchange; AfterFunc runs only if ctx ends first.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	return newSession(conn, max), func() { stop(); conn.Close() }, Result{}
}

// sessionProbe is the Probe of every session-based check: it dials addr,
// runs exchange on a session whose reads are bounded by max (<= 0 means
// DefaultMaxResponse), closes the connection and returns the verdict through
// finish, the RTT counted from before the dial. A panic in exchange is
// recovered into an Internal result.
func sessionProbe(ctx context.Context, addr string, max int64, exchange func(*session) Result) (res Result) {
	start := time.Now()
	defer recoverInto(&res, start)
	s, done, res := startSession(ctx, addr, max)
	if s == nil {
		return finish(res, start)
	}
	defer done()
	return finish(exchange(s), start)
}

// sendFailure classifies a write error.
func sendFailure(err error, what string) Result {
	if isTimeout(err) {
		return Result{Reason: Timeout, Detail: "timeout sending " + what}
	}
	return Result{Reason: SendError, Detail: "sending " + what + ": " + err.Error()}
}

// readFailure classifies an error while reading what (e.g. "the banner"),
// transport first, then framing. n is the number of bytes read so far and
// max the budget.
func readFailure(err error, what string, n int, max int64) Result {
	var me *malformedError
	res := Result{Bytes: n}
	switch {
	case isTimeout(err):
		res.Reason, res.Detail = Timeout, fmt.Sprintf("timeout reading %s (%d bytes read)", what, n)
	case errors.Is(err, ErrTooLarge):
		res.Reason, res.Detail = TooLarge, fmt.Sprintf("%s: more than %d bytes", what, max)
	case errors.Is(err, syscall.ECONNRESET):
		res.Reason, res.Detail = EarlyClose, fmt.Sprintf("connection reset after %d bytes, reading %s", n, what)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, ErrEarlyClose):
		res.Reason, res.Detail = EarlyClose, fmt.Sprintf("connection closed after %d bytes, reading %s", n, what)
	case errors.As(err, &me):
		res.Reason, res.Detail = BadResponse, what+": "+me.what
	default:
		res.Reason, res.Detail = Internal, err.Error()
	}
	return res
}

// countConn counts the bytes read from a connection and fails reads past a
// limit with ErrTooLarge. It is used under TLS, where net/http may read on
// its own goroutine, so its counters are atomic.
type countConn struct {
	net.Conn
	n, limit atomic.Int64
	over     atomic.Bool // a read hit the limit
}

func newCountConn(c net.Conn, limit int64) *countConn {
	cc := &countConn{Conn: c}
	cc.limit.Store(limit)
	return cc
}

func (c *countConn) Read(p []byte) (int, error) {
	left := c.limit.Load() - c.n.Load()
	if left <= 0 {
		c.over.Store(true)
		return 0, ErrTooLarge
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// allow lets the peer send more bytes from now on (after a handshake).
func (c *countConn) allow(more int64) { c.limit.Store(c.n.Load() + more) }

// read is the number of bytes read from the peer.
func (c *countConn) read() int { return int(c.n.Load()) }
