package fastpath

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockIO reads and writes a TCP connection with raw system calls made inside the callbacks of
// syscall.RawConn: the connection stays in Go's network poller (deadlines, waiting for
// readiness, Close waking a blocked reader all work as for net.Conn), but a read or write that
// can proceed is one system call with no scheduler bookkeeping around it.
//
// Why: a non-blocking socket call never blocks, yet net.Conn's Read and Write tell the Go
// scheduler they might (entersyscall/exitsyscall). With one P per worker process (GOMAXPROCS=1,
// the prefork model), the runtime's monitor thread then takes the P away from any such call that
// spans one of its 20 µs ticks (a loopback write runs the receiver's TCP stack inline and often
// does) and hands it to another thread; under load that is tens of thousands of thread wake-ups
// and hand-offs a second per worker, and the monitor never backs off. Measured under wrk on this
// engine: about 12% of a worker's CPU was the monitor thread before this type.
//
// A sockIO for a connection that is not a *net.TCPConn (tests, pipes) uses its Read and Write.
type sockIO struct {
	c      net.Conn
	rc     syscall.RawConn // nil: use c's Read and Write
	p      []byte          // the buffer of the call in progress
	n      int             // bytes moved by it
	errno  unix.Errno      // its error, 0 for none
	waited bool            // the last Write had to wait for the socket (or may have: not TCP)
	quiet  bool            // the result of the last peek: nothing has arrived
	peek   [1]byte         // where a peek would copy a byte
	req    []byte          // Exchange: the request
	sent   int             // Exchange: bytes of req sent
	stage  uint8           // Exchange: xCheck, xSent or xStopped
	rd, wr func(fd uintptr) bool
	ex     func(fd uintptr) bool
	pk     func(fd uintptr)
}

// Exchange's stages.
const (
	xCheck   uint8 = iota // the connection has not been read yet: is anything waiting on it?
	xSent                 // the request is all sent: read the answer
	xStopped              // it stopped before the request was all sent (see Exchange)
)

// init binds s to c. It allocates once per connection (the two callbacks), never per call.
// A pooled owner that binds its sockIO again keeps the callbacks, which point at s itself.
func (s *sockIO) init(c net.Conn) {
	rd, wr, ex, pk := s.rd, s.wr, s.ex, s.pk
	*s = sockIO{c: c}
	if tc, ok := c.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			if rd == nil {
				rd, wr, ex, pk = s.doRead, s.doWrite, s.doExchange, s.doPeek
			}
			s.rc, s.rd, s.wr, s.ex, s.pk = rc, rd, wr, ex, pk
		}
	}
}

// errUnsolicited: Exchange found bytes, an end of stream or an error waiting on the connection
// before it sent anything. Nothing was sent, so the request may go on another connection.
var errUnsolicited = errors.New("fastpath: upstream connection not quiet (it sent unasked, closed or failed while idle)")

// Exchange sends req and reads the first bytes of the answer into p, in one wait for the
// poller: the read that finds nothing yet comes before the request is sent instead of after.
// That read also proves the connection quiet (nothing arrived on it since it was last read,
// see Quiet) at no extra system call: a pooled connection that is not quiet gets
// errUnsolicited with nothing sent, and whatever it held is never delivered.
//
// It returns the bytes of req sent and of p read. When the socket takes only part of req
// without waiting (a request larger than its send buffer), Exchange returns with sent <
// len(req), n == 0 and no error: the caller sends the rest with Write and then reads. The wait
// for the answer is bounded by the read deadline. A connection that is not TCP (tests) counts
// as quiet and is written and read with its own calls.
func (s *sockIO) Exchange(req, p []byte) (sent, n int, err error) {
	if s.rc == nil {
		if sent, err = s.Write(req); err != nil {
			return sent, 0, err
		}
		n, err = s.Read(p)
		return sent, n, err
	}
	s.req, s.sent, s.stage = req, 0, xCheck
	s.p, s.n, s.errno = p, 0, 0
	s.waited = false
	err = s.rc.Read(s.ex)
	sent, s.req = s.sent, nil
	switch s.stage {
	case xCheck: // the poller refused the call (closed, deadline), or the check failed
		s.p = nil
		if err == nil {
			err = errUnsolicited
		}
		return 0, 0, err
	case xStopped:
		_, err = s.done("write", err)
		return sent, 0, err
	}
	n, err = s.done("read", err)
	if err == nil && n == 0 && s.stage == xSent {
		return sent, 0, io.EOF
	}
	return sent, n, err
}

// doExchange is Exchange's callback: first a read that must find nothing (EAGAIN), then the
// request sent, then, on every later call once the poller says readable, a read like doRead's.
func (s *sockIO) doExchange(fd uintptr) bool {
	if s.stage == xSent {
		return s.doRead(fd)
	}
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&s.p[0])), uintptr(len(s.p)), 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != unix.EAGAIN {
			return true // bytes, an end of stream or an error: stage stays xCheck
		}
		break
	}
	for s.sent < len(s.req) {
		rest := s.req[s.sent:]
		n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)), unix.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			s.sent += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			s.stage, s.waited = xStopped, true
			return true
		default:
			s.stage, s.errno = xStopped, e
			return true
		}
	}
	s.stage = xSent
	return false
}

// Quiet reports whether nothing has arrived on the connection since it was last read: no byte,
// no end of stream, no error. It peeks without waiting (one recvfrom with MSG_PEEK and
// MSG_DONTWAIT) and consumes nothing. An idle pooled upstream connection is reused only when
// it is quiet: bytes the server sent unasked (a second response, garbage) would otherwise be
// read as the answer to the next client's request, and a FIN means the server closed it.
// A connection that is not TCP (tests) counts as quiet.
func (s *sockIO) Quiet() bool {
	if s.rc == nil {
		return true
	}
	s.quiet = false
	if err := s.rc.Control(s.pk); err != nil {
		return false
	}
	return s.quiet
}

// doPeek is Quiet's callback.
func (s *sockIO) doPeek(fd uintptr) {
	for {
		_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&s.peek[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EINTR {
			continue
		}
		s.quiet = e == unix.EAGAIN
		return
	}
}

// clear drops the connection, keeping the callbacks for the next init.
func (s *sockIO) clear() { s.c, s.rc, s.p = nil, nil, nil }

// Read reads into p like net.Conn's Read: at least one byte, io.EOF at the end of the stream,
// a timeout net.Error at the read deadline.
func (s *sockIO) Read(p []byte) (int, error) {
	if s.rc == nil || len(p) == 0 {
		return s.c.Read(p)
	}
	s.p, s.n, s.errno = p, 0, 0
	n, err := s.done("read", s.rc.Read(s.rd))
	if err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

// Write writes all of p like net.Conn's Write, or returns how much it wrote and why it stopped
// (a timeout net.Error at the write deadline).
func (s *sockIO) Write(p []byte) (int, error) {
	s.waited = s.rc == nil
	if s.rc == nil {
		return s.c.Write(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.p, s.n, s.errno = p, 0, 0
	return s.done("write", s.rc.Write(s.wr))
}

// done ends a call whose RawConn Read or Write returned err: the bytes it moved, and err, or the
// error of the system call that stopped it.
func (s *sockIO) done(op string, err error) (int, error) {
	n, errno := s.n, s.errno
	s.p = nil
	if err == nil && errno != 0 {
		err = opError(op, errno)
	}
	return n, err
}

// doRead is the read callback: false asks the poller to wait until the socket is readable.
// recvfrom, not read: it goes to the socket layer directly, where read(2) first passes through
// the VFS (file position lock, access checks, notification hooks), about a quarter of the
// kernel's cost of a small read in the profile.
//
// The read is always tried before waiting, even where it will find nothing yet (just after a
// request went upstream): the poller forgets readiness it saw before a wait begins, so a wait
// that skipped the read could miss an end of stream already queued, such as the FIN of an idle
// keep-alive connection the server half-closed (TestHalfClosedIdleUpstreamConnectionIsReplaced).
func (s *sockIO) doRead(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&s.p[0])), uintptr(len(s.p)), 0, 0, 0)
		switch e {
		case 0:
			s.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		s.errno = e
		return true
	}
}

// doWrite is the write callback: it writes until p is all sent, the socket buffer is full
// (false: the poller waits until it is writable and calls again) or an error. MSG_NOSIGNAL: a
// peer that closed gives EPIPE, not a signal.
func (s *sockIO) doWrite(fd uintptr) bool {
	for s.n < len(s.p) {
		rest := s.p[s.n:]
		n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)), unix.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			s.n += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			s.waited = true
			return false
		default:
			s.errno = e
			return true
		}
	}
	return true
}

// opError is the error net.Conn would return for errno (only on a failing call).
func opError(op string, errno unix.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, errno)}
}
