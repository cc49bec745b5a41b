package upstream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
)

// The std engine's chunk size limit. net/http decodes a chunked request body itself and takes
// a chunk size of up to 16 hex digits (2^64-1), where the fast engine, like nginx and HAProxy,
// refuses more than 15 (fastpath parseChunkSize): a request body reader sees only the decoded
// bytes. So the connection follows the bytes net/http reads from it, request by request: it
// finds the end of each head (the first empty line, as net/http's header reader does), learns
// from the proxy how net/http framed that request's body (chunked, or Content-Length bytes),
// skips or scans the body accordingly, and fails the read that brings a chunk size line of more
// than 15 hex digits. net/http then fails the body, and the proxy answers 400.
//
// Following never decides framing: net/http decides it, the proxy reports it (Listener's
// connections learn it through ConnContext), and the follower only applies it. Before it relies
// on its position, it checks that the head it found starts with the request line net/http parsed
// (method, target, version, exactly as sent); when they differ (a request net/http answered
// itself without the handler, such as OPTIONS *), it stops following that connection and
// refuses nothing more on it.

// ErrChunkSize fails a read of a chunked request body whose chunk size line has more than
// maxChunkDigits hex digits.
var ErrChunkSize = errors.New("upstream: chunk size of more than 15 hex digits")

const (
	maxChunkDigits = 15       // as the fast engine: a chunk size below 2^60
	maxFollowLine  = 8 << 10  // bytes of a request line kept to compare with net/http's
	maxFollowWait  = 64 << 10 // bytes read past a head before the proxy said how it is framed
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
// returns ErrChunkSize if the body bytes already read break the limit.
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
	followHead      = iota // reading a request head, up to its empty line
	followWait             // past a head: waiting for the proxy to say how its body is framed
	followBody             // skipping a Content-Length body
	followChunkLine        // reading a chunk size line
	followChunkData        // skipping chunk data
	followChunkEnd         // skipping the CRLF after chunk data
	followTrailer          // reading the trailer section, up to its empty line
	followOff              // not following (lost step, or a tunnel)
)

// follower is the state of a followed connection. Its byte rules are net/http's: lines end at
// LF (a CR before it is part of the ending), a head and a trailer section end at the first empty
// line, after a POST up to 4 CR or LF bytes before the next request are skipped, chunk data is
// followed by 2 bytes, a chunk size line of size 0 starts the trailer. Input that net/http
// refuses may move it anywhere; net/http fails that request and closes the connection itself.
type follower struct {
	state int
	err   error // once set, every read fails with it

	// the head being read
	skip     int    // CR and LF bytes net/http skips before this head
	line     []byte // the request line, up to maxFollowLine bytes
	lineLen  int    // bytes of the current line so far
	lineCR   bool   // the current line's last byte so far is CR
	pastLine bool   // the request line was read (false: the current line is the request line)
	firstLen int    // length of the request line (without its line ending)
	post     bool   // the last request was a POST

	pending []byte // read in followWait

	left   int64 // bytes left to skip in followBody, followChunkData, followChunkEnd
	digits int   // hex digits at the start of the chunk size line so far
	size   int64
	inHex  bool
}

// feed follows b, the next bytes read from the connection.
func (f *follower) feed(b []byte) error {
	for len(b) > 0 && f.err == nil {
		switch f.state {
		case followOff:
			return nil
		case followWait:
			if len(f.pending)+len(b) > maxFollowWait {
				f.state, f.pending = followOff, nil
				return nil
			}
			f.pending = append(f.pending, b...)
			return nil
		case followBody, followChunkData, followChunkEnd:
			n := int(min(f.left, int64(len(b))))
			f.left -= int64(n)
			b = b[n:]
			if f.left == 0 {
				switch f.state {
				case followBody:
					f.startHead()
				case followChunkData:
					f.state, f.left = followChunkEnd, 2
				case followChunkEnd:
					f.startChunkLine()
				}
			}
		default:
			b = f.scanLines(b)
		}
	}
	return f.err
}

// scanLines follows b in the states that read lines and returns what is left of it after a
// state change.
func (f *follower) scanLines(b []byte) []byte {
	for i, c := range b {
		if f.state == followHead && f.skip > 0 {
			if c == '\r' || c == '\n' {
				f.skip--
				continue
			}
			f.skip = 0
		}
		if c != '\n' {
			if f.state == followHead && !f.pastLine && len(f.line) < maxFollowLine {
				f.line = append(f.line, c)
			}
			if f.state == followChunkLine {
				f.chunkDigit(c)
				if f.err != nil {
					return nil
				}
			}
			f.lineLen++
			f.lineCR = c == '\r'
			continue
		}
		empty := f.lineLen == 0 || f.lineLen == 1 && f.lineCR
		switch {
		case f.state == followChunkLine:
			if f.digits > 0 && f.size == 0 {
				f.state = followTrailer
			} else {
				f.state, f.left = followChunkData, f.size
			}
		case f.state == followHead && !f.pastLine:
			f.pastLine = true
			f.firstLen = f.lineLen
			if f.lineCR {
				f.firstLen--
			}
			if empty {
				f.state = followWait // net/http refuses an empty request line
			}
		case empty && f.state == followHead:
			f.state = followWait
		case empty: // followTrailer
			f.startHead()
		}
		f.lineLen, f.lineCR = 0, false
		if f.state != followHead && f.state != followTrailer {
			return b[i+1:]
		}
	}
	return nil
}

// chunkDigit follows one byte of a chunk size line before its LF.
func (f *follower) chunkDigit(c byte) {
	if !f.inHex {
		return
	}
	var d byte
	switch {
	case '0' <= c && c <= '9':
		d = c - '0'
	case 'a' <= c && c <= 'f':
		d = c - 'a' + 10
	case 'A' <= c && c <= 'F':
		d = c - 'A' + 10
	default:
		f.inHex = false
		return
	}
	if f.digits++; f.digits > maxChunkDigits {
		f.err = ErrChunkSize
		return
	}
	f.size = f.size<<4 | int64(d)
}

// startHead starts following the next request's head.
func (f *follower) startHead() {
	f.state = followHead
	f.skip = 0
	if f.post {
		f.skip = 4
	}
	f.line = f.line[:0]
	f.pastLine = false
	f.lineLen, f.lineCR = 0, false
}

func (f *follower) startChunkLine() {
	f.state = followChunkLine
	f.digits, f.size, f.inHex = 0, 0, true
	f.lineLen, f.lineCR = 0, false
}

// begin applies the framing net/http gave the request whose head was read last: method, target
// and proto as net/http parsed them from its request line, and its body. It returns the error
// the bytes already read past the head bring, if any.
func (f *follower) begin(method, target, proto string, chunked bool, contentLength int64) error {
	if f.err != nil {
		return f.err
	}
	if f.state != followWait || !f.lineIs(method, target, proto) {
		f.state, f.pending = followOff, nil // out of step: refuse nothing rather than guess
		return nil
	}
	f.post = method == "POST"
	switch {
	case chunked:
		f.startChunkLine()
	case contentLength > 0:
		f.state, f.left = followBody, contentLength
	default:
		f.startHead()
	}
	b := f.pending
	f.pending = nil
	return f.feed(b)
}

// lineIs reports whether the request line read last is method SP target SP proto.
func (f *follower) lineIs(method, target, proto string) bool {
	if f.firstLen != len(method)+len(target)+len(proto)+2 {
		return false
	}
	l := f.line
	if len(l) > f.firstLen {
		l = l[:f.firstLen] // the CR of the line ending
	}
	for _, part := range [...]string{method, " ", target, " ", proto} {
		n := min(len(part), len(l))
		if string(l[:n]) != part[:n] {
			return false
		}
		l = l[n:]
	}
	return true
}
