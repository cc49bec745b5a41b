package conformance

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// A recorder is the backend of one proxy in one lane: a raw TCP listener on 127.0.0.1 that
// keeps every byte each connection sends, splits the bytes into requests with the reference
// reader (strict: what it cannot frame is garbage, answered 400 and closed), and answers each
// complete request at once with a 200 of fixed length that carries a serial number. The serial
// names the request in the serialBook, so that a response a client receives can be traced to
// the request (and the case) it answers.
//
// A lane runs one case at a time, so what a recorder receives between begin and finish belongs
// to that case; a request whose first byte came during an earlier case is kept with that case's
// name, which makes a leftover on a reused upstream connection visible.
type recorder struct {
	proxy string // the proxy in front of it
	lane  int
	ln    net.Listener
	book  *serialBook

	mu      sync.Mutex
	current string // the case now running, "" between cases
	last    time.Time
	got     []upstreamRequest
	garbage []garbage
	conns   map[*recConn]struct{}
	nconn   int
	done    bool
	wg      sync.WaitGroup
}

// upstreamRequest is one request a recorder received.
type upstreamRequest struct {
	msg     message // as the reference reader framed it
	began   string  // the case running when its first byte arrived
	ended   string  // the case running when it completed (or the case ended)
	serial  int     // the serial of its response, 0 if not answered
	partial bool    // it had not completed when the connection closed or the case ended
	conn    int     // the connection's number
}

// garbage is bytes a recorder could not frame as a request.
type garbage struct {
	why   string
	bytes []byte // the first bytes of it
	began string
}

type recConn struct {
	c        net.Conn
	id       int
	pending  []byte // bytes not yet taken by a complete request
	began    string // the case running when the first pending byte arrived
	lastCase string // the case running when bytes last arrived
	sent100  bool
	broken   bool
}

// serialBook maps response serials to the request they answer.
type serialBook struct {
	mu   sync.Mutex
	next int
	of   map[int]serialEntry
}

type serialEntry struct {
	caseName, proxy string
}

func newSerialBook() *serialBook { return &serialBook{next: 1, of: map[int]serialEntry{}} }

func (b *serialBook) issue(caseName, proxy string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.next
	b.next++
	b.of[s] = serialEntry{caseName, proxy}
	return s
}

func (b *serialBook) lookup(s int) (serialEntry, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.of[s]
	return e, ok
}

// Each response is the same size but for its serial: "X-Serial: " and 8 digits.
const responseFormat = "HTTP/1.1 200 OK\r\nX-Serial: %08d\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n%s\r\n%s"

func startRecorder(proxy string, lane int, book *serialBook) (*recorder, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	r := &recorder{proxy: proxy, lane: lane, ln: ln, book: book, conns: map[*recConn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

func (r *recorder) addr() string { return r.ln.Addr().String() }

func (r *recorder) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		if r.done {
			r.mu.Unlock()
			c.Close()
			return
		}
		r.nconn++
		rc := &recConn{c: c, id: r.nconn}
		r.conns[rc] = struct{}{}
		r.last = time.Now()
		r.mu.Unlock()
		r.wg.Add(1)
		go r.serve(rc)
	}
}

func (r *recorder) serve(rc *recConn) {
	defer r.wg.Done()
	defer rc.c.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := rc.c.Read(buf)
		if n > 0 {
			out, closeAfter := r.received(rc, buf[:n])
			if len(out) > 0 {
				rc.c.SetWriteDeadline(time.Now().Add(2 * time.Second))
				if _, werr := rc.c.Write(out); werr != nil {
					closeAfter = true
				}
			}
			if closeAfter {
				r.gone(rc)
				return
			}
		}
		if err != nil {
			r.gone(rc)
			return
		}
	}
}

// received takes bytes of a connection and returns what to answer and whether to close after.
func (r *recorder) received(rc *recConn, b []byte) ([]byte, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = time.Now()
	rc.lastCase = r.current
	if len(rc.pending) == 0 {
		rc.began = r.current
	}
	rc.pending = append(rc.pending, b...)
	if rc.broken {
		return nil, true
	}
	var out []byte
	for len(rc.pending) > 0 && !isBlank(rc.pending) {
		m := readMessage(rc.pending)
		why := m.unclear
		if why == "" && m.both {
			why = "Content-Length and Transfer-Encoding both sent upstream"
		}
		if why != "" {
			r.garbage = append(r.garbage, garbage{why: why, bytes: clip(rc.pending, 200), began: rc.began})
			rc.broken = true
			return append(out, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"...), true
		}
		if !m.complete {
			if m.headDone && m.expect100 && !rc.sent100 {
				rc.sent100 = true
				out = append(out, "HTTP/1.1 100 Continue\r\n\r\n"...)
			}
			break
		}
		serial := r.book.issue(rc.began, r.proxy)
		r.got = append(r.got, upstreamRequest{msg: m, began: rc.began, ended: r.current, serial: serial, conn: rc.id})
		conn, body := "", "ok\n"
		if m.closes {
			conn = "Connection: close\r\n"
		}
		if m.method == "HEAD" {
			body = ""
		}
		out = append(out, fmt.Sprintf(responseFormat, serial, conn, body)...)
		rc.pending = rc.pending[m.size:]
		rc.began, rc.sent100 = r.current, false
		if m.closes {
			return out, true
		}
	}
	return out, false
}

// gone forgets a closed connection; a request it left unfinished is kept as partial.
func (r *recorder) gone(rc *recConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.conns[rc]; !ok {
		return
	}
	delete(r.conns, rc)
	r.last = time.Now()
	if !rc.broken && !isBlank(rc.pending) && rc.lastCase == r.current {
		r.got = append(r.got, upstreamRequest{msg: readMessage(rc.pending), began: rc.began, ended: r.current, partial: true, conn: rc.id})
	}
	rc.pending = nil
}

// begin starts a case: what arrives from now on is its.
func (r *recorder) begin(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.current, r.got, r.garbage = name, nil, nil
}

// idleFor returns how long nothing arrived.
func (r *recorder) idleFor() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Since(r.last)
}

// finish ends the current case and returns what arrived during it, with any request still
// unfinished on an open connection as partial.
func (r *recorder) finish() ([]upstreamRequest, []garbage) {
	r.mu.Lock()
	defer r.mu.Unlock()
	got, junk := r.got, r.garbage
	for rc := range r.conns {
		if !rc.broken && !isBlank(rc.pending) && rc.lastCase == r.current {
			got = append(got, upstreamRequest{msg: readMessage(rc.pending), began: rc.began, ended: r.current, partial: true, conn: rc.id})
		}
	}
	r.current, r.got, r.garbage = "", nil, nil
	return got, junk
}

// close stops the listener and every connection and waits for their goroutines.
func (r *recorder) close() {
	r.mu.Lock()
	r.done = true
	for rc := range r.conns {
		rc.c.Close()
	}
	r.mu.Unlock()
	r.ln.Close()
	r.wg.Wait()
}

func clip(b []byte, n int) []byte {
	if len(b) > n {
		b = b[:n]
	}
	return append([]byte(nil), b...)
}

// healthPort is a listener that accepts connections and closes them: the target of hcproxy's
// tcp checks, so that they never reach a recorder.
type healthPort struct {
	ln net.Listener
	wg sync.WaitGroup
}

func startHealthPort() (*healthPort, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("health port: %w", err)
	}
	h := &healthPort{ln: ln}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				time.Sleep(10 * time.Millisecond) // out of descriptors: let the test go on
				continue
			}
			c.Close()
		}
	}()
	return h, nil
}

func (h *healthPort) port() int { return h.ln.Addr().(*net.TCPAddr).Port }

func (h *healthPort) close() {
	h.ln.Close()
	h.wg.Wait()
}
