package probe

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// connect opens a TCP connection to addr for one check (or a kept check connection), bounded
// by deadline and cancelled with ctx.
//
// An address that is an IP literal and port (every server in a config is one) gets a
// connection made with raw system calls and read and written through the poller's raw
// callbacks (tcpConn); any other address goes through net.Dialer. Why: net's dial costs a
// check about 17 system calls (4 of them setting TCP keepalive, which a check connection
// never needs, and getsockname and getpeername for addresses nobody reads), and net's connect,
// write and close tell the scheduler they might block. On loopback those calls run the peer's
// TCP stack inline and often outlast the runtime monitor's 20 µs tick, so with one P per
// worker the monitor hands the P to another thread during most checks and never backs off:
// measured at 2,000 servers checked each second, the monitor was 13% of a worker's CPU, with a
// context switch per check. tcpConn makes 4-6 system calls to connect and none of them
// enters the scheduler.
func connect(ctx context.Context, addr string, deadline time.Time) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return (&net.Dialer{Deadline: deadline, KeepAlive: -1}).DialContext(ctx, "tcp", addr)
	}
	return dialTCP(ctx, ap, deadline)
}

// dialTCP is connect's raw path.
func dialTCP(ctx context.Context, ap netip.AddrPort, deadline time.Time) (net.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, dialError(ap, err)
	}
	ip := ap.Addr().Unmap()
	family := unix.AF_INET
	if ip.Is6() {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, dialError(ap, os.NewSyscallError("socket", err))
	}
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	var sa unsafe.Pointer
	var salen uintptr
	port := ap.Port()
	if family == unix.AF_INET {
		sa4.Family = unix.AF_INET
		sa4.Port = port<<8 | port>>8 // network byte order
		sa4.Addr = ip.As4()
		sa, salen = unsafe.Pointer(&sa4), unsafe.Sizeof(sa4)
	} else {
		sa6.Family = unix.AF_INET6
		sa6.Port = port<<8 | port>>8
		sa6.Addr = ip.As16()
		sa, salen = unsafe.Pointer(&sa6), unsafe.Sizeof(sa6)
	}
	var e unix.Errno
	for {
		_, _, e = unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(sa), salen)
		if e != unix.EINTR {
			break
		}
	}
	if e != 0 && e != unix.EINPROGRESS {
		unix.Close(fd)
		return nil, dialError(ap, os.NewSyscallError("connect", e))
	}
	// A non-blocking descriptor: NewFile registers it with the poller.
	c := &tcpConn{f: os.NewFile(uintptr(fd), "tcp"), raddr: ap}
	rc, err := c.f.SyscallConn()
	if err != nil {
		c.f.Close()
		return nil, dialError(ap, err)
	}
	c.rc = rc
	c.rd, c.wr = c.doRead, c.doWrite
	if e == unix.EINPROGRESS {
		if err := c.finishConnect(ctx, deadline); err != nil {
			c.f.Close()
			return nil, dialError(ap, err)
		}
	}
	return c, nil
}

// finishConnect waits, until deadline or ctx ends, for a connect in progress to complete.
func (c *tcpConn) finishConnect(ctx context.Context, deadline time.Time) error {
	if err := c.f.SetWriteDeadline(deadline); err != nil {
		return err
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { c.f.SetWriteDeadline(aLongTimeAgo) })
		defer stop()
	}
	// The connection's TCP state says in one call whether the handshake is done (on loopback
	// it usually is by now: connect ran it inline), still going (wait until writable and look
	// again), or failed (SO_ERROR says why).
	var info unix.TCPInfo
	var gerr error
	failed := false
	err := c.rc.Write(func(fd uintptr) bool {
		n := uint32(unsafe.Sizeof(info))
		if _, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO, uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0); e != 0 {
			gerr = os.NewSyscallError("getsockopt", e)
			return true
		}
		switch info.State {
		case tcpEstablished, tcpCloseWait: // connected (and, in CLOSE_WAIT, already closed by the peer)
			return true
		case tcpSynSent, tcpSynRecv:
			return false
		}
		failed = true
		return true
	})
	switch {
	case err != nil:
		if ctx.Err() != nil && isTimeout(err) {
			return ctx.Err()
		}
		return err
	case gerr != nil:
		return gerr
	case failed:
		var soErr int
		c.rc.Control(func(fd uintptr) { soErr, gerr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR) })
		if soErr == 0 {
			soErr = int(unix.ECONNABORTED)
		}
		return os.NewSyscallError("connect", unix.Errno(soErr))
	}
	return c.f.SetWriteDeadline(time.Time{})
}

// TCP states (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpSynSent     = 2
	tcpSynRecv     = 3
	tcpCloseWait   = 8
)

// dialError is the error net.Dialer would return.
func dialError(ap netip.AddrPort, err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(ap), Err: err}
}

// tcpConn is a check's TCP connection made by dialTCP: a net.Conn whose reads and writes are
// single raw system calls inside the poller's callbacks (waiting, deadlines and Close waking
// a blocked call work as for net.Conn), like the fast engine's sockIO.
type tcpConn struct {
	f      *os.File
	rc     syscall.RawConn
	raddr  netip.AddrPort
	rd, wr func(fd uintptr) bool
	// A read and a write may run at once (HTTP/2's read loop beside a write): each has its own.
	rp, wp         []byte
	rn, wn         int
	rerrno, werrno unix.Errno
	closed         atomic.Bool
}

func (c *tcpConn) Read(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, c.opError("read", net.ErrClosed)
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.rp, c.rn, c.rerrno = p, 0, 0
	err := c.rc.Read(c.rd)
	n := c.rn
	c.rp = nil
	if err == nil && c.rerrno != 0 {
		err = &net.OpError{Op: "read", Net: "tcp", Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", c.rerrno)}
	}
	if err == nil && n == 0 {
		return 0, io.EOF
	}
	return n, err
}

func (c *tcpConn) doRead(fd uintptr) bool {
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.rp[0])), uintptr(len(c.rp)), 0, 0, 0)
		switch e {
		case 0:
			c.rn = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		c.rerrno = e
		return true
	}
}

func (c *tcpConn) Write(p []byte) (int, error) {
	if c.closed.Load() {
		return 0, c.opError("write", net.ErrClosed)
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.wp, c.wn, c.werrno = p, 0, 0
	err := c.rc.Write(c.wr)
	n := c.wn
	c.wp = nil
	if err == nil && c.werrno != 0 {
		err = &net.OpError{Op: "write", Net: "tcp", Addr: c.RemoteAddr(), Err: os.NewSyscallError("write", c.werrno)}
	}
	return n, err
}

// doWrite writes until p is all sent (MSG_NOSIGNAL: a closed peer is EPIPE, not a signal).
func (c *tcpConn) doWrite(fd uintptr) bool {
	for c.wn < len(c.wp) {
		rest := c.wp[c.wn:]
		n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)), unix.MSG_NOSIGNAL, 0, 0)
		switch e {
		case 0:
			c.wn += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			c.werrno = e
			return true
		}
	}
	return true
}

// Close shuts the connection down with a raw call (the FIN, or the RST for unread bytes, and
// the peer's side of it run inline here), wakes any read or write still waiting (a past
// deadline), and hands the descriptor to the batch closer (closer.go). A second Close, and
// any read or write after the first, returns net.ErrClosed.
func (c *tcpConn) Close() error {
	if c.closed.Swap(true) {
		return c.opError("close", net.ErrClosed)
	}
	c.rc.Control(func(fd uintptr) {
		unix.RawSyscall(unix.SYS_SHUTDOWN, fd, unix.SHUT_RDWR, 0)
	})
	c.f.SetDeadline(aLongTimeAgo)
	closeLater(c.f)
	return nil
}

func (c *tcpConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Addr: c.RemoteAddr(), Err: err}
}

func (c *tcpConn) LocalAddr() net.Addr {
	sa, err := c.getsockname()
	if err != nil {
		return &net.TCPAddr{}
	}
	return sa
}

func (c *tcpConn) getsockname() (net.Addr, error) {
	var addr net.Addr
	var serr error
	err := c.rc.Control(func(fd uintptr) {
		sa, e := unix.Getsockname(int(fd))
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			addr = &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
		case *unix.SockaddrInet6:
			addr = &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
		default:
			serr = e
		}
	})
	if err == nil {
		err = serr
	}
	return addr, err
}

func (c *tcpConn) RemoteAddr() net.Addr               { return net.TCPAddrFromAddrPort(c.raddr) }
func (c *tcpConn) SetDeadline(t time.Time) error      { return c.f.SetDeadline(t) }
func (c *tcpConn) SetReadDeadline(t time.Time) error  { return c.f.SetReadDeadline(t) }
func (c *tcpConn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }
