package upstream

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"sync"

	"hcproxy/internal/h1"
)

// The std engine reads requests with net/http, whose parser is more lenient than RFC 9112 and
// than the fast engine's (obs-fold unfolded, Transfer-Encoding beside Content-Length taken as
// chunked, chunk sizes of 16 digits, trailers and chunk lines barely checked), and streams the
// head upstream before it reads the body. So that both engines accept and refuse the same
// requests, each connection follows the bytes net/http reads from it and checks them with the
// fast engine's own rules (internal/h1): every request head with h1.ParseRequest, every chunked
// body with h1.ChunkScanner. A head h1 refuses is refused before anything goes upstream, with
// h1's status; a chunked body h1 refuses fails the read that brings the fault (net/http then
// fails the body and the proxy answers 400), and when the fault came with the head, the request
// is refused before anything goes upstream.
//
// Following never decides framing for net/http: the proxy reports how net/http framed each
// request (Listener's connections learn it through ConnContext), and the request is refused if
// h1 frames it otherwise. Before it relies on its position, the follower checks that the head
// it read is the one net/http parsed (method, target, version, exactly as sent); when they
// differ (a request net/http answered itself without the handler, such as OPTIONS *), it stops
// following that connection and refuses nothing more on it.

// errFraming refuses a request that net/http frames otherwise than h1 (a body length or
// chunked coding net/http chose where h1 sees another).
var errFraming = &h1.Error{Status: 400, Msg: "upstream: net/http frames the request body otherwise than RFC 9112"}

const (
	maxFollowHead = 64 << 10 // bytes of a head followed before the follower gives up (net/http's limit is lower)
	maxFollowWait = 64 << 10 // bytes read past a head before the proxy said how it is framed
)

// Listener wraps ln so that each connection it accepts follows its requests' framing, for an
// http.Server whose handler is a Proxy and whose ConnContext is ConnContext.
func Listener(ln net.Listener) net.Listener { return followListener{ln} }

type followListener struct{ net.Listener }

func (l followListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &followConn{Conn: c}, nil
}

type followKey struct{}

// ConnContext is the http.Server ConnContext hook that lets the Proxy reach the connection of
// a request accepted by Listener.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*followConn); ok {
		return context.WithValue(ctx, followKey{}, fc)
	}
	return ctx
}

// followConn is a client connection whose reads are followed. net/http reads it from the
// request's goroutine, from its background read and from the transport's write loop (the
// request body), hence the mutex.
type followConn struct {
	net.Conn
	mu sync.Mutex
	f  follower
}

func (c *followConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	ferr := c.f.err
	c.mu.Unlock()
	if ferr != nil {
		return 0, ferr // net/http drains a refused body: it must not wait for more
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		ferr := c.f.feed(p[:n])
		c.mu.Unlock()
		if ferr != nil {
			return 0, ferr
		}
	}
	return n, err
}

// CloseWrite lets net/http half-close the connection before closing it (its lingering close).
func (c *followConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// begin tells the connection how net/http framed the request r whose head it read last, and
// returns h1's error for that head or for the body bytes already read, if any.
func (c *followConn) begin(r *http.Request) error {
	chunked := len(r.TransferEncoding) > 0 // net/http allows only "chunked"
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.f.begin(r.Method, r.RequestURI, r.Proto, chunked, r.ContentLength)
}

// stop ends the following (a hijacked connection carries a tunnel, not requests).
func (c *followConn) stop() {
	c.mu.Lock()
	c.f.state = followOff
	c.f.pending = nil
	c.mu.Unlock()
}

// beginFollow reports r's framing to its connection if Listener accepted it.
func beginFollow(r *http.Request) error {
	if fc, ok := r.Context().Value(followKey{}).(*followConn); ok {
		return fc.begin(r)
	}
	return nil
}

// Follower states.
const (
	followHead    = iota // reading a request head, up to its empty line
	followWait           // past a head: waiting for the proxy to say how its body is framed
	followBody           // skipping a Content-Length body
	followChunked        // checking a chunked body
	followOff            // not following (lost step, or a tunnel)
)

// follower is the state of a followed connection.
type follower struct {
	state int
	err   error // once set, every read fails with it

	head    []byte  // the head being read (CR and LF before it skipped, as h1 and net/http skip them)
	scanned int     // how far h1.HeadEnd looked into head
	req     h1.Head // the last head, parsed by h1 (its slices point into head)
	headErr error   // h1's verdict on it
	first   []byte  // its request line without the line ending (a slice of head)

	pending []byte // read in followWait
	left    int64  // Content-Length bytes left to skip in followBody
	chunks  h1.ChunkScanner
	carry   []byte // chunked bytes the scanner left for more (a line cut off by the read)
}

// feed follows b, the next bytes read from the connection.
func (f *follower) feed(b []byte) error {
	for len(b) > 0 && f.err == nil {
		switch f.state {
		case followOff:
			return nil
		case followWait:
			if len(f.pending)+len(b) > maxFollowWait {
				f.off()
				return nil
			}
			f.pending = append(f.pending, b...)
			return nil
		case followBody:
			n := int(min(f.left, int64(len(b))))
			f.left -= int64(n)
			b = b[n:]
			if f.left == 0 {
				f.startHead()
			}
		case followChunked:
			b = f.chunked(b)
		case followHead:
			b = f.readHead(b)
		}
	}
	return f.err
}

// readHead adds b to the head being read and returns what follows the head, if it ended.
func (f *follower) readHead(b []byte) []byte {
	if len(f.head) == 0 {
		for len(b) > 0 && (b[0] == '\r' || b[0] == '\n') {
			b = b[1:]
		}
		if len(b) == 0 {
			return nil
		}
	}
	had := len(f.head)
	f.head = append(f.head, b...)
	n := h1.HeadEnd(f.head, f.scanned)
	if n < 0 {
		if f.scanned = len(f.head); len(f.head) > maxFollowHead {
			f.off()
		}
		return nil
	}
	f.headErr = h1.ParseRequest(f.head[:n], &f.req)
	f.first = f.head[:n]
	if i := bytes.IndexByte(f.first, '\n'); i >= 0 {
		f.first = bytes.TrimSuffix(f.first[:i], []byte("\r"))
	}
	f.state = followWait
	f.pending = f.pending[:0]
	return b[n-had:]
}

// chunked checks b, the next bytes of a chunked body, and returns what follows the body, if it
// ended.
func (f *follower) chunked(b []byte) []byte {
	data := b
	if len(f.carry) > 0 {
		data = append(f.carry, b...)
	}
	n, _, err := f.chunks.Scan(data, h1.ChunkPass, nil)
	if err != nil {
		f.err = err
		return nil
	}
	if f.chunks.Done() {
		rest := data[n:]
		f.carry = f.carry[:0]
		f.startHead()
		return append([]byte(nil), rest...)
	}
	f.carry = append(f.carry[:0], data[n:]...)
	return nil
}

// off stops following: out of step, or past what it keeps.
func (f *follower) off() {
	f.state, f.pending, f.head, f.carry = followOff, nil, nil, nil
}

// startHead starts following the next request's head.
func (f *follower) startHead() {
	f.state = followHead
	f.head, f.scanned, f.first, f.headErr = f.head[:0], 0, nil, nil
	f.req.Reset()
}

// begin applies the framing net/http gave the request whose head was read last: method, target
// and proto as net/http parsed them from its request line, and its body. It returns h1's error
// for the head, a framing that differs from h1's, or the error the body bytes already read
// bring, if any: then nothing of the request has gone upstream.
func (f *follower) begin(method, target, proto string, chunked bool, contentLength int64) error {
	if f.err != nil {
		return f.err
	}
	if f.state != followWait || !f.lineIs(method, target, proto) {
		f.off() // out of step: refuse nothing rather than guess
		return nil
	}
	if f.headErr != nil {
		return f.headErr
	}
	cl := max(f.req.ContentLength, 0)
	if f.req.Chunked != chunked || !chunked && cl != max(contentLength, 0) {
		return errFraming
	}
	switch {
	case chunked:
		f.state = followChunked
		f.chunks.Reset()
		f.carry = f.carry[:0]
	case cl > 0:
		f.state, f.left = followBody, cl
	default:
		f.startHead()
	}
	b := f.pending
	f.pending = nil
	err := f.feed(b)
	if f.pending == nil {
		f.pending = b[:0] // keep the buffer for the next request's early bytes
	}
	return err
}

// lineIs reports whether the request line of the last head is method SP target SP proto.
func (f *follower) lineIs(method, target, proto string) bool {
	l := f.first
	for i, part := range [...]string{method, target, proto} {
		if len(l) < len(part) || string(l[:len(part)]) != part {
			return false
		}
		l = l[len(part):]
		if i < 2 {
			if len(l) == 0 || l[0] != ' ' {
				return false
			}
			l = l[1:]
		}
	}
	return len(l) == 0
}
