package fastpath

import (
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// A spliced segment of a response body (copyN) is one call into the kernel, which alternates
// between reading from the server and writing to the client, and whose deadlines are set before
// it starts. A client (or server) that is slow but steady may take longer than its timeout over a
// segment although it never keeps a single write (read) waiting that long; the buffered path
// arms the timeouts before each write and read, and a segment must behave the same. So while a
// segment runs, a watcher reads the kernel's counters of both sockets (TCP_INFO) every quarter of
// the shorter timeout and moves the deadlines a full timeout ahead:
//
//   - the client's (ClientSendTimeout) when the client acknowledged bytes since the last look, or
//     has none outstanding (the segment is not waiting on it);
//   - the server's (ReadTimeout) when bytes of the server arrived, or the client has bytes
//     outstanding (the segment may be waiting on the client, not on the server).
//
// A client that takes nothing is then cut off within 1.25 ClientSendTimeout of its last
// progress, however long the segment, and a server that sends nothing within 1.25 ReadTimeout.

// spliceN moves up to seg bytes of u's body to the client through the kernel, its deadlines
// following the progress of both sockets.
func (cc *clientConn) spliceN(dst *net.TCPConn, u *upConn, seg int64) (int64, error) {
	o := &cc.s.o
	defer cc.tick() // a segment waits on both sides
	if o.ReadTimeout > 0 {
		u.rdl = lazyDeadline(u.c.SetReadDeadline, u.rdl, o.ReadTimeout, cc.now)
	}
	cc.setWriteDeadline()
	period := min(positive(o.ReadTimeout), positive(o.ClientSendTimeout)) / 4
	src, isTCP := u.c.(*net.TCPConn)
	if period <= 0 || !isTCP {
		return dst.ReadFrom(&io.LimitedReader{R: u.c, N: seg})
	}
	stop, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		cc.watchSplice(dst, src, u, period, stop)
	}()
	k, err := dst.ReadFrom(&io.LimitedReader{R: u.c, N: seg})
	close(stop)
	<-exited
	return k, err
}

// positive is d, or the longest duration for a d that sets no bound.
func positive(d time.Duration) time.Duration {
	if d <= 0 {
		return 1<<63 - 1
	}
	return d
}

// watchSplice moves the deadlines of a running splice from client to server as the comment
// above says, every period until stop is closed. Meanwhile it owns cc.wdl and u.rdl: the
// connection's goroutine waits in the splice and reads them after the watcher exited.
func (cc *clientConn) watchSplice(client, server *net.TCPConn, u *upConn, period time.Duration, stop <-chan struct{}) {
	o := &cc.s.o
	t := time.NewTicker(period)
	defer t.Stop()
	last := sample(client, server)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		now := sample(client, server)
		if !now.ok || !last.ok {
			last = now
			continue
		}
		at := time.Now()
		if o.ClientSendTimeout > 0 && (now.acked != last.acked || !now.outstanding) {
			cc.wdl = at.Add(o.ClientSendTimeout)
			cc.c.SetWriteDeadline(cc.wdl)
		}
		if o.ReadTimeout > 0 && (now.received != last.received || now.outstanding) {
			u.rdl = at.Add(o.ReadTimeout)
			u.c.SetReadDeadline(u.rdl)
		}
		last = now
	}
}

// progress is what the kernel says of a splice's two sockets.
type progress struct {
	acked       uint64 // bytes the client acknowledged
	outstanding bool   // the client has bytes not yet sent or not yet acknowledged
	received    uint64 // bytes that arrived from the server
	ok          bool   // both sockets answered
}

func sample(client, server *net.TCPConn) progress {
	c, okc := tcpInfo(client)
	s, oks := tcpInfo(server)
	if !okc || !oks {
		return progress{}
	}
	return progress{acked: c.Bytes_acked, outstanding: c.Unacked > 0 || c.Notsent_bytes > 0, received: s.Bytes_received, ok: true}
}

func tcpInfo(c *net.TCPConn) (*unix.TCPInfo, bool) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil || ierr != nil {
		return nil, false
	}
	return info, true
}
