package fastpath

import (
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
	c     net.Conn
	rc    syscall.RawConn // nil: use c's Read and Write
	p     []byte          // the buffer of the call in progress
	n     int             // bytes moved by it
	errno unix.Errno      // its error, 0 for none

	// The write part of a WriteRead in progress: what to send, how much went, and why it
	// stopped (0: it did not, or EAGAIN).
	wp     []byte
	wn     int
	werrno unix.Errno

	rd, wr, wrd func(fd uintptr) bool
}

// init binds s to c. It allocates once per connection (the two callbacks), never per call.
// A pooled owner that binds its sockIO again keeps the callbacks, which point at s itself.
func (s *sockIO) init(c net.Conn) {
	rd, wr, wrd := s.rd, s.wr, s.wrd
	*s = sockIO{c: c}
	if tc, ok := c.(*net.TCPConn); ok {
		if rc, err := tc.SyscallConn(); err == nil {
			if rd == nil {
				rd, wr, wrd = s.doRead, s.doWrite, s.doWriteRead
			}
			s.rc, s.rd, s.wr, s.wrd = rc, rd, wr, wrd
		}
	}
}

// clear drops the connection, keeping the callbacks for the next init.
func (s *sockIO) clear() { s.c, s.rc, s.p, s.wp = nil, nil, nil, nil }

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
	if s.rc == nil {
		return s.c.Write(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	s.p, s.n, s.errno = p, 0, 0
	return s.done("write", s.rc.Write(s.wr))
}

// WriteRead sends p, then reads into q like Read, for a request and the start of its answer
// when nothing can arrive before the request went (an upstream connection with nothing
// unread). It does not try the read that would find nothing yet: the write is made inside the
// callback of the read, after the poller forgot the socket's earlier readiness and before it
// waits, so an answer that arrives at any time after it is seen and none is missed. That saves
// a system call per request (and the scheduler's work around it) on every round trip whose
// answer takes longer than the write, which is almost all of them.
//
// wrote is how much of p went. When the socket's buffer filled first (wrote < len(p), err nil)
// nothing was read, and the caller writes the rest and reads as usual. A failed write returns
// the write's error with n = 0; after a whole write, n and err are those of the read.
func (s *sockIO) WriteRead(p, q []byte) (wrote, n int, err error) {
	if s.rc == nil || len(p) == 0 || len(q) == 0 {
		if wrote, err = s.Write(p); err != nil {
			return wrote, 0, err
		}
		n, err = s.Read(q)
		return wrote, n, err
	}
	s.wp, s.wn, s.werrno = p, 0, 0
	s.p, s.n, s.errno = q, 0, 0
	rerr := s.rc.Read(s.wrd)
	wrote, s.wp = s.wn, nil
	switch {
	case s.werrno != 0:
		s.p = nil
		return wrote, 0, opError("write", s.werrno)
	case wrote < len(p):
		s.p = nil
		return wrote, 0, rerr // the buffer filled (rerr nil), or the poller refused (closed)
	}
	n, err = s.done("read", rerr)
	if err == nil && n == 0 {
		return wrote, 0, io.EOF
	}
	return wrote, n, err
}

// doWriteRead is WriteRead's callback: on its first call it sends s.wp and asks the poller to
// wait until the socket is readable (false), or stops (true) when the write could not finish;
// then it reads as doRead.
func (s *sockIO) doWriteRead(fd uintptr) bool {
	if s.wp == nil {
		return s.doRead(fd)
	}
	for s.wn < len(s.wp) {
		rest := s.wp[s.wn:]
		n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)), unix.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			s.wn += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return true
		default:
			s.werrno = e
			return true
		}
	}
	s.wp = nil
	return false
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
