package fastpath

import (
	"net"
	"sync"
	"time"

	"hcproxy/internal/h1"
	"hcproxy/upstream"
)

// rbuf is a read buffer over a connection: buf[r:w] holds the bytes read and not yet consumed.
type rbuf struct {
	buf  []byte
	r, w int
}

func (b *rbuf) buffered() []byte { return b.buf[b.r:b.w] }
func (b *rbuf) len() int         { return b.w - b.r }

// consume drops n buffered bytes.
func (b *rbuf) consume(n int) {
	if b.r += n; b.r == b.w {
		b.r, b.w = 0, 0
	}
}

// fill reads once from c into the free end of the buffer, first moving the buffered bytes to
// the front when the free end is full. It returns errHeadTooLarge-like errFull when the buffer
// is full of unconsumed bytes.
func (b *rbuf) fill(c *sockIO) (int, error) {
	if b.w == len(b.buf) {
		if b.r == 0 {
			return 0, errFull
		}
		b.w = copy(b.buf, b.buf[b.r:b.w])
		b.r = 0
	}
	n, err := c.Read(b.buf[b.w:])
	b.w += n
	return n, err
}

var errFull = &h1.Error{Status: 431, Msg: "fastpath: buffer full"}

// upConn is one connection to an upstream server with its read buffer.
type upConn struct {
	c      net.Conn
	io     sockIO // reads and writes c
	in     rbuf
	pool   *connPool
	idleAt time.Time
	rdl    time.Time // the read deadline set on c
	wdl    time.Time // the write deadline set on c
	reused bool      // it served a request before this one
}

func (u *upConn) close() {
	u.c.Close()
	u.pool.free(u)
}

// Pools holds idle keep-alive connections to upstream servers, a bounded LIFO stack per server:
// the most recently used connection (the one least likely to have been closed by its server) is
// reused first, and the oldest is closed when the stack is full.
type Pools struct {
	mu sync.Mutex
	m  map[*upstream.Server]*connPool
}

// NewPools returns empty pools.
func NewPools() *Pools { return &Pools{m: map[*upstream.Server]*connPool{}} }

func (p *Pools) of(s *upstream.Server, keepalive int) *connPool {
	p.mu.Lock()
	defer p.mu.Unlock()
	cp := p.m[s]
	if cp == nil {
		cp = &connPool{server: s, max: keepalive, bufSize: 16 << 10}
		p.m[s] = cp
	}
	cp.max = max(cp.max, keepalive)
	return cp
}

// connPool is the idle connections to one server.
type connPool struct {
	server  *upstream.Server
	bufSize int
	mu      sync.Mutex
	idle    []*upConn // LIFO: the newest on top
	max     int
	bufs    sync.Pool
}

// get returns an idle connection, nil when there is none fresh enough. It is not yet known to
// be quiet: the request's send checks that first (sockIO.Exchange, or Quiet before a streamed
// body), and a connection on which anything arrived while it was idle (bytes the server sent
// unasked, its FIN, an error) is closed, never reused: what the server sent is never
// delivered to anyone.
func (p *connPool) get(now time.Time) *upConn {
	p.mu.Lock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		u := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if now.Sub(u.idleAt) < upstreamIdle {
			u.reused = true
			return u
		}
		u.close()
		p.mu.Lock()
	}
	p.mu.Unlock()
	return nil
}

// put keeps u for reuse, or closes it when the pool is full (closing the oldest instead).
func (p *connPool) put(u *upConn, now time.Time) {
	if p.max <= 0 || u.in.len() > 0 {
		u.close() // bytes the server sent beyond its response: it is not in a known state
		return
	}
	u.idleAt = now
	u.in.r, u.in.w = 0, 0
	p.mu.Lock()
	var old *upConn
	if len(p.idle) >= p.max {
		old = p.idle[0]
		copy(p.idle, p.idle[1:])
		p.idle[len(p.idle)-1] = u
	} else {
		p.idle = append(p.idle, u)
	}
	p.mu.Unlock()
	if old != nil {
		old.close()
	}
}

// wrap makes an upConn of a freshly dialed connection.
func (p *connPool) wrap(c net.Conn) *upConn {
	u, _ := p.bufs.Get().(*upConn)
	if u == nil {
		u = &upConn{in: rbuf{buf: make([]byte, p.bufSize)}, pool: p}
	}
	u.c, u.reused, u.rdl, u.wdl = c, false, time.Time{}, time.Time{}
	u.io.init(c)
	return u
}

// free returns u's buffer to the pool once its connection is closed.
func (p *connPool) free(u *upConn) {
	u.c = nil
	u.io.clear()
	u.in.r, u.in.w = 0, 0
	p.bufs.Put(u)
}
