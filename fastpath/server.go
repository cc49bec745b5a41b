package fastpath

import (
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"hcproxy/upstream"
)

// Defaults of Options.
const (
	DefaultMaxHeadBytes = 16 << 10
	// IdleGrace is how long a draining server leaves a connection that waits for a request
	// open (as the worker's drain does for net/http).
	IdleGrace = time.Second
	// upstreamIdle is how long an idle upstream connection stays in its pool.
	upstreamIdle = 60 * time.Second
)

// Options configure a Server. It takes the same upstream.Options as the net/http path (timeouts,
// the send timeouts of both sides among them, balancer, retries, passive checks, access log,
// forwarding headers, keepalive) plus the client side's limits. The zero value of each field is
// usable.
type Options struct {
	upstream.Options
	// ClientHeaderTimeout bounds reading a request head from its first byte (and a new
	// connection's first head from the accept); 0 = no bound.
	ClientHeaderTimeout time.Duration
	// ClientIdleTimeout closes a keep-alive connection that waits that long for its next request,
	// and bounds each read of a request body; 0 = no bound. Writes to the client are bounded by
	// ClientSendTimeout (in upstream.Options).
	ClientIdleTimeout time.Duration
	// MaxHeadBytes bounds a request head (431 beyond it) and a response head (502); 0 =
	// DefaultMaxHeadBytes.
	MaxHeadBytes int
	// OnConnClosed, when not nil, is called once per accepted connection, when it is closed
	// (the listener's open-connections gauge).
	OnConnClosed func()
	// Pools holds the idle upstream connections; listeners of one worker that share an upstream
	// should share it. nil = a pool of this server's own.
	Pools *Pools
}

// Server forwards the HTTP/1.1 requests of its listeners to the servers of one upstream.
type Server struct {
	name   string
	o      Options
	policy *upstream.Policy
	pools  map[*upstream.Server]*connPool
	dialer net.Dialer
	log    *slog.Logger
	key    keyFunc
	// ridLower is o.RequestIDHeader in lower case.
	ridLower string

	draining atomic.Bool
	mu       sync.Mutex
	lns      map[net.Listener]struct{}
	conns    map[*clientConn]struct{}
	closed   bool
	drainOn  sync.Once
	running  sync.WaitGroup // connection goroutines
	stop     chan struct{}
}

// New returns a server for the upstream name over servers.
func New(name string, servers []*upstream.Server, o Options) *Server {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.MaxHeadBytes <= 0 {
		o.MaxHeadBytes = DefaultMaxHeadBytes
	}
	if o.Pools == nil {
		o.Pools = NewPools()
	}
	s := &Server{
		name: name, o: o, log: o.Log,
		pools:  map[*upstream.Server]*connPool{},
		dialer: net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second},
		lns:    map[net.Listener]struct{}{},
		conns:  map[*clientConn]struct{}{},
		stop:   make(chan struct{}),
	}
	s.ridLower = strings.ToLower(o.RequestIDHeader)
	s.policy = upstream.NewPolicy(name, servers, &s.o.Options)
	if o.Balancer == "hash" {
		s.key = newKeyFunc(o.Hash)
	}
	for _, sv := range servers {
		s.pools[sv] = o.Pools.of(sv, o.Keepalive)
	}
	return s
}

// ErrServerClosed is returned by Serve after Drain or Close.
var ErrServerClosed = errors.New("fastpath: server closed")

// Serve accepts connections on ln and serves each on its own goroutine until ln is closed (by
// Drain, Close or the caller); it returns ErrServerClosed after Drain or Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed || s.draining.Load() {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.lns[ln] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.draining.Load() || s.isClosed() {
				return ErrServerClosed
			}
			if isTemporaryAccept(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed, retrying", "err", err, "in", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		cc := newClientConn(s, c)
		if !s.track(cc) {
			c.Close()
			s.connClosed()
			cc.release()
			continue
		}
		s.running.Add(1)
		go func() {
			defer s.running.Done()
			cc.serve()
		}()
	}
}

// isTemporaryAccept reports whether an accept error passes (out of descriptors or memory, a
// connection reset before it was accepted), as net/http's Serve treats them.
func isTemporaryAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) ||
		errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EINTR)
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) track(cc *clientConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[cc] = struct{}{}
	return true
}

func (s *Server) connClosed() {
	if s.o.OnConnClosed != nil {
		s.o.OnConnClosed()
	}
}

func (s *Server) untrack(cc *clientConn) {
	s.mu.Lock()
	delete(s.conns, cc)
	s.mu.Unlock()
}

// Drain stops accepting (closes the listeners), makes every response from now on carry
// Connection: close (a keep-alive client moves to another worker after its current response),
// and closes connections that wait for a request longer than IdleGrace, until none is left or
// Close is called. It is idempotent; Conns says how many connections remain.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.mu.Lock()
	for ln := range s.lns {
		ln.Close()
	}
	s.mu.Unlock()
	s.drainOn.Do(func() {
		go func() {
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for s.CloseIdle(IdleGrace) > 0 {
				select {
				case <-t.C:
				case <-s.stop:
					return
				}
			}
		}()
	})
}

// CloseIdle closes the connections that have waited for a request for grace or longer (a
// keep-alive connection between requests, or a new one that sent nothing) and returns how many
// connections remain.
func (s *Server) CloseIdle(grace time.Duration) int {
	now := time.Now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	for cc := range s.conns {
		since := cc.idleSince.Load()
		if now-since >= int64(grace) && cc.state.CompareAndSwap(stateIdle, stateClosing) {
			cc.c.Close()
			delete(s.conns, cc)
		}
	}
	return len(s.conns)
}

// Conns returns how many client connections are open.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close closes the listeners and every client connection, requests in flight included, and
// waits (up to a second: a goroutine may be blocked on its upstream until the read timeout) for
// their goroutines to end. It is idempotent.
func (s *Server) Close() {
	s.close()
	done := make(chan struct{})
	go func() { s.running.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
	}
}

func (s *Server) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.stop)
	}
	for ln := range s.lns {
		ln.Close()
	}
	for cc := range s.conns {
		cc.c.Close()
		delete(s.conns, cc)
	}
}
