package probe

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
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
//
// A gate (not nil) is for a request-then-answer exchange (the http check): the request is sent
// first, before anything is read, and the answer's reads wait for the gate (see tcpConn).
func connect(ctx context.Context, addr string, deadline time.Time, gate *Gate) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return (&net.Dialer{Deadline: deadline, KeepAlive: -1}).DialContext(ctx, "tcp", addr)
	}
	return dialTCP(ctx, ap, deadline, gate)
}

// dialTCP is connect's raw path. The connection it returns is not registered with the
// runtime's poller while its calls need no waiting (see tcpConn).
func dialTCP(ctx context.Context, ap netip.AddrPort, deadline time.Time, gate *Gate) (net.Conn, error) {
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
	if gate != nil {
		// The kernel stamps the data it receives: a read held back by the gate still knows
		// when its answer came (tcpConn.held).
		one := int32(1)
		unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, uintptr(unsafe.Pointer(&one)), 4, 0)
		// The request goes first: the handshake's last ACK waits for it and rides on it, as
		// HAProxy's checks do (tcp-smart-connect). Two segments fewer per check (8 instead of
		// 10 with the server's close); measured at 10,000 servers, 5% less CPU per check for
		// the checker and 8% for the servers.
		zero := int32(0)
		unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, uintptr(unsafe.Pointer(&zero)), 4, 0)
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
	c := &tcpConn{fd: fd, raddr: ap, gate: gate}
	if gate != nil {
		c.stop = ctx.Done()
	}
	if e == unix.EINPROGRESS {
		if err := c.finishConnect(ctx, deadline); err != nil {
			c.Close()
			return nil, dialError(ap, err)
		}
	}
	return c, nil
}

// finishConnect waits, until deadline or ctx ends, for a connect in progress to complete.
//
// The connection's TCP state says in one call whether the handshake is done (on loopback it
// usually is by now: connect ran it inline), still going (wait until writable and look again),
// or failed (SO_ERROR says why). Only a handshake still going registers the descriptor with
// the poller.
func (c *tcpConn) finishConnect(ctx context.Context, deadline time.Time) error {
	switch st, err := c.tcpState(uintptr(c.fd)); {
	case err != nil:
		return err
	case st == connDone:
		return nil
	case st == connFailed:
		return c.soError()
	}
	if err := c.register(); err != nil {
		return err
	}
	if err := c.f.SetWriteDeadline(deadline); err != nil {
		return err
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { c.f.SetWriteDeadline(aLongTimeAgo) })
		defer stop()
	}
	var st int
	var gerr error
	err := c.rc.Write(func(fd uintptr) bool {
		st, gerr = c.tcpState(fd)
		return gerr != nil || st != connPending
	})
	switch {
	case err != nil:
		if ctx.Err() != nil && isTimeout(err) {
			return ctx.Err()
		}
		return err
	case gerr != nil:
		return gerr
	case st == connFailed:
		return c.soError()
	}
	return c.f.SetWriteDeadline(time.Time{})
}

// Connection states as tcpState reports them.
const (
	connDone = iota
	connPending
	connFailed
)

// tcpState reads fd's TCP state (TCP_INFO): connected (ESTABLISHED, or CLOSE_WAIT if the
// peer has already closed), still connecting, or failed.
func (c *tcpConn) tcpState(fd uintptr) (int, error) {
	st, e := rawTCPState(fd)
	if e != 0 {
		return connFailed, os.NewSyscallError("getsockopt", e)
	}
	switch st {
	case tcpEstablished, tcpCloseWait:
		return connDone, nil
	case tcpSynSent, tcpSynRecv:
		return connPending, nil
	}
	return connFailed, nil
}

// rawTCPState reads fd's TCP state (TCP_INFO) with a raw call.
func rawTCPState(fd uintptr) (uint8, unix.Errno) {
	var info unix.TCPInfo
	n := uint32(unsafe.Sizeof(info))
	_, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_INFO, uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0)
	return info.State, e
}

// soError is the error of a failed connect (SO_ERROR).
func (c *tcpConn) soError() error {
	soErr, err := unix.GetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	if soErr == 0 {
		soErr = int(unix.ECONNABORTED)
	}
	return os.NewSyscallError("connect", unix.Errno(soErr))
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
// single raw system calls.
//
// It starts unregistered: its descriptor is not in the runtime's poller, so it costs no
// epoll_ctl, and data arriving on it wakes nothing. A call that has to wait (connect still in
// progress, a full send buffer, a read with nothing to read) registers it (os.NewFile) and
// from then on waits, with deadlines and Close waking a blocked call, as a net.Conn does.
//
// With a Gate in the dial's context (the checker's), a read right after a write first waits for
// the gate to open. The checker opens its gate once per wake-up, so the answers to the requests
// sent in one wake-up are read in the next, all in one go. Why: on loopback an answer arrives a
// few tens of microseconds after its request, and a worker that waits for each in the poller
// sleeps and wakes once per check; measured at 2,000 servers, 1.45 context switches and 2
// epoll_pwait per check, where HAProxy, which reads its answers in its next loop, had 0.4 and
// 0.5.
//
// A read at the gate that finds nothing waits for the next opening (1-4 ms later), up to
// gateWaits openings in all, and only then registers. Registration lasts as long as the
// connection, and each answer on a registered connection wakes the worker from its sleep in the
// poller, so a kept connection (keepalive) registered for one slow answer would cost a wake-up
// per check for the rest of its life.
type tcpConn struct {
	fd    int
	raddr netip.AddrPort
	gate  *Gate
	stop  <-chan struct{} // the dial context's end: a gate wait ends with it
	sent  atomic.Bool     // a write since the last gate wait

	mu       sync.Mutex
	f        *os.File // set by register
	rc       syscall.RawConn
	users    int  // raw calls on fd in progress
	closed   bool // Close was called
	fdClosed bool
	rdl, wdl time.Time             // deadlines, kept for register
	rd, wr   func(fd uintptr) bool // doRead and doWrite, bound once by register
	held     time.Duration         // how long answers waited at the gate after they came, in all

	// Registered I/O, in the poller's callbacks. A read and a write may run at once (HTTP/2's
	// read loop beside a write): each has its own.
	rp, wp         []byte
	rn, wn         int
	rerrno, werrno unix.Errno
}

// acquire makes a raw call on fd safe from a concurrent Close: it returns the registered file
// instead if there is one, or ok false once the connection is closed.
func (c *tcpConn) acquire() (f *os.File, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, false
	}
	if c.f != nil {
		return c.f, true
	}
	c.users++
	return nil, true
}

// release ends a raw call; the last one after a Close closes the descriptor.
func (c *tcpConn) release() {
	c.mu.Lock()
	c.users--
	last := c.closed && c.users == 0 && c.f == nil && !c.fdClosed
	if last {
		c.fdClosed = true
	}
	c.mu.Unlock()
	if last {
		c.closeFd()
	}
}

// register hands the descriptor to the poller, with the deadlines set so far.
func (c *tcpConn) register() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return net.ErrClosed
	}
	if c.f != nil {
		return nil
	}
	f := os.NewFile(uintptr(c.fd), "tcp") // non-blocking: NewFile registers it with the poller
	rc, err := f.SyscallConn()
	if err != nil {
		return err // cannot happen for a file from NewFile; f is dropped unclosed, fd stays ours
	}
	if !c.rdl.IsZero() {
		f.SetReadDeadline(c.rdl)
	}
	if !c.wdl.IsZero() {
		f.SetWriteDeadline(c.wdl)
	}
	c.f, c.rc = f, rc
	c.rd, c.wr = c.doRead, c.doWrite
	return nil
}

// past reports whether deadline d (zero: none) has passed.
func past(d time.Time) bool { return !d.IsZero() && !time.Now().Before(d) }

// gateWaits is how many openings of the gate a read waits for before it waits in the poller:
// answers from servers on loopback or a LAN are in by the second or third (1-12 ms); a server
// that takes longer costs a registration, as before, and a probe of a black-holed server two
// reads that find nothing.
const gateWaits = 3

func (c *tcpConn) Read(p []byte) (int, error) {
	gated := false // the gate was waited for: this read takes the answer's arrival time
	waits := 0     // openings of the gate waited for by this read
	for {
		f, ok := c.acquire()
		switch {
		case !ok:
			return 0, c.opError("read", net.ErrClosed)
		case f != nil:
			return c.readRegistered(p)
		case len(p) == 0:
			c.release()
			return 0, nil
		}
		c.mu.Lock()
		late := past(c.rdl)
		c.mu.Unlock()
		if late {
			c.release()
			return 0, c.opError("read", os.ErrDeadlineExceeded)
		}
		if c.gate != nil && c.sent.Swap(false) {
			// The answer to a request just sent is rarely in yet: wait for the gate first.
			c.release()
			c.gate.wait(c.stop)
			gated = true
			waits++
			continue
		}
		var n int
		var e unix.Errno
		if gated {
			var at time.Time
			n, at, e = rawRecvStamped(c.fd, p)
			if e == 0 && n > 0 && !at.IsZero() {
				if d := time.Since(at); d > 0 {
					c.mu.Lock()
					c.held += d
					c.mu.Unlock()
				}
			}
			gated = false
		} else {
			n, e = rawRecv(c.fd, p)
		}
		c.release()
		switch e {
		case 0:
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			if waits > 0 && waits < gateWaits {
				c.sent.Store(true) // not in yet: the next opening of the gate
				continue
			}
			if err := c.register(); err != nil {
				return 0, c.opError("read", err)
			}
			continue
		}
		return 0, &net.OpError{Op: "read", Net: "tcp", Addr: c.RemoteAddr(), Err: os.NewSyscallError("read", e)}
	}
}

func rawRecv(fd int, p []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
	return int(n), e
}

// rawRecvStamped is rawRecv that also returns when the kernel received the data read
// (SO_TIMESTAMPNS, set by dialTCP), or the zero time if it did not say.
func rawRecvStamped(fd int, p []byte) (int, time.Time, unix.Errno) {
	var oob [64]byte
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	msg := unix.Msghdr{Iov: &iov, Iovlen: 1, Control: &oob[0]}
	msg.SetControllen(len(oob))
	n, _, e := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), 0)
	if e != 0 {
		return 0, time.Time{}, e
	}
	var at time.Time
	for b := oob[:min(int(msg.Controllen), len(oob))]; len(b) >= unix.SizeofCmsghdr; {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		l := int(h.Len)
		if l < unix.SizeofCmsghdr || l > len(b) {
			break
		}
		if h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPNS && l >= unix.SizeofCmsghdr+int(unsafe.Sizeof(unix.Timespec{})) {
			ts := (*unix.Timespec)(unsafe.Pointer(&b[unix.SizeofCmsghdr]))
			at = time.Unix(ts.Sec, ts.Nsec)
		}
		b = b[min(unix.CmsgSpace(l-unix.SizeofCmsghdr), len(b)):]
	}
	return int(n), at, 0
}

// heldBack returns how long, in all, the answers read on nc waited at the gate after they
// came; 0 for a connection that is not a gated tcpConn.
func heldBack(nc net.Conn) time.Duration {
	c, ok := nc.(*tcpConn)
	if !ok {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

func (c *tcpConn) readRegistered(p []byte) (int, error) {
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
		n, e := rawRecv(int(fd), c.rp)
		switch e {
		case 0:
			c.rn = n
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
	c.sent.Store(true)
	done := 0
	for {
		f, ok := c.acquire()
		switch {
		case !ok:
			return done, c.opError("write", net.ErrClosed)
		case f != nil:
			n, err := c.writeRegistered(p[done:])
			return done + n, err
		case done == len(p):
			c.release()
			return done, nil
		}
		c.mu.Lock()
		late := past(c.wdl)
		c.mu.Unlock()
		if late {
			c.release()
			return done, c.opError("write", os.ErrDeadlineExceeded)
		}
		n, e := rawSend(c.fd, p[done:])
		c.release()
		switch e {
		case 0:
			done += n
		case unix.EINTR:
		case unix.EAGAIN:
			if err := c.register(); err != nil {
				return done, c.opError("write", err)
			}
		default:
			return done, &net.OpError{Op: "write", Net: "tcp", Addr: c.RemoteAddr(), Err: os.NewSyscallError("write", e)}
		}
	}
}

// rawSend sends with MSG_NOSIGNAL: a closed peer is EPIPE, not a signal.
func rawSend(fd int, p []byte) (int, unix.Errno) {
	n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	return int(n), e
}

func (c *tcpConn) writeRegistered(p []byte) (int, error) {
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

// doWrite writes until p is all sent.
func (c *tcpConn) doWrite(fd uintptr) bool {
	for c.wn < len(c.wp) {
		n, e := rawSend(int(fd), c.wp[c.wn:])
		switch e {
		case 0:
			c.wn += n
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

// Close closes the connection (the FIN, or the RST for unread bytes, and the peer's side of it
// run inline here). Unregistered, the descriptor is closed at once with a raw call, or by the
// raw call still in progress when it ends. Registered, it is shut down with a raw call, any
// read or write still waiting is woken (a past deadline), and the descriptor goes to the batch
// closer (closer.go). A second Close, and any read or write after the first, returns
// net.ErrClosed.
func (c *tcpConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opError("close", net.ErrClosed)
	}
	c.closed = true
	f := c.f
	now := f == nil && c.users == 0
	if now {
		c.fdClosed = true
	}
	c.mu.Unlock()
	switch {
	case f != nil:
		c.rc.Control(func(fd uintptr) {
			unix.RawSyscall(unix.SYS_SHUTDOWN, fd, unix.SHUT_RDWR, 0)
		})
		f.SetDeadline(aLongTimeAgo)
		closeLater(f)
	case now:
		c.closeFd()
	}
	return nil
}

// closeFd closes the unregistered descriptor. An http check's connection that the server has
// already closed (CLOSE_WAIT: the server answered with Connection: close and closed) is reset
// rather than closed with a FIN: the server's side is gone already, so it sees no error, and it
// keeps no TIME_WAIT socket per check (at 10,000 checks a second a server fills the kernel's
// 131,072 TIME_WAIT buckets in 13 s), and the checker saves the FIN exchange (about 6 us per
// check at 10,000 servers). A server that has not closed gets a FIN, never an RST: applications
// log a reset as an error (haproxy/haproxy#560: HAProxy's checks reset them). A server that
// half-closed (shut its writing side down and still reads) is taken as closed and gets the RST.
func (c *tcpConn) closeFd() {
	if c.gate != nil {
		if st, e := rawTCPState(uintptr(c.fd)); e == 0 && st == tcpCloseWait {
			l := unix.Linger{Onoff: 1, Linger: 0}
			unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(c.fd), unix.SOL_SOCKET, unix.SO_LINGER, uintptr(unsafe.Pointer(&l)), unsafe.Sizeof(l), 0)
		}
	}
	unix.RawSyscall(unix.SYS_CLOSE, uintptr(c.fd), 0, 0)
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
	f, ok := c.acquire()
	if !ok {
		return nil, net.ErrClosed
	}
	var addr net.Addr
	var serr error
	read := func(fd uintptr) {
		sa, e := unix.Getsockname(int(fd))
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			addr = &net.TCPAddr{IP: net.IP(a.Addr[:]).To16(), Port: a.Port}
		case *unix.SockaddrInet6:
			addr = &net.TCPAddr{IP: net.IP(a.Addr[:]), Port: a.Port}
		default:
			serr = e
		}
	}
	var err error
	if f != nil {
		err = c.rc.Control(read)
	} else {
		read(uintptr(c.fd))
		c.release()
	}
	if err == nil {
		err = serr
	}
	return addr, err
}

func (c *tcpConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.raddr) }

func (c *tcpConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *tcpConn) SetReadDeadline(t time.Time) error {
	return c.setDeadline(&c.rdl, t, (*os.File).SetReadDeadline)
}

func (c *tcpConn) SetWriteDeadline(t time.Time) error {
	return c.setDeadline(&c.wdl, t, (*os.File).SetWriteDeadline)
}

// setDeadline keeps t in *d for register and, once registered, sets it on the file.
func (c *tcpConn) setDeadline(d *time.Time, t time.Time, set func(*os.File, time.Time) error) error {
	c.mu.Lock()
	f := c.f
	*d = t
	c.mu.Unlock()
	if f != nil {
		return set(f, t)
	}
	return nil
}
