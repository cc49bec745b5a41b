package worker

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// conns tracks a server's client connections and their states, so that a drain can close the
// idle ones without touching a connection under a request.
type conns struct {
	mu sync.Mutex
	m  map[net.Conn]connState
}

type connState struct {
	state http.ConnState
	since time.Time
}

func newConns() *conns { return &conns{m: map[net.Conn]connState{}} }

// track is an http.Server ConnState hook.
func (c *conns) track(conn net.Conn, st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch st {
	case http.StateHijacked, http.StateClosed:
		delete(c.m, conn)
	default:
		c.m[conn] = connState{state: st, since: time.Now()}
	}
}

// closeIdle closes connections that have waited for a request longer than grace (a keep-alive
// connection between requests, or a new one that sent nothing), and returns how many remain.
func (c *conns) closeIdle(grace time.Duration) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for conn, st := range c.m {
		if (st.state == http.StateIdle || st.state == http.StateNew) && now.Sub(st.since) >= grace {
			conn.Close()
			delete(c.m, conn)
		}
	}
	return len(c.m)
}

func (c *conns) closeAll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn := range c.m {
		conn.Close()
		delete(c.m, conn)
	}
}

// drainHandler answers with Connection: close once the worker drains, so a keep-alive client
// moves to another worker after its current response instead of having its connection closed
// under its next request.
//
// It also closes the connection after every request with a chunked body (RFC 9112 section 6.1).
// net/http drops a Content-Length sent beside Transfer-Encoding and reads the body as chunked,
// so a request that carried both (a smuggling attempt, which the fast engine answers 400) cannot
// be told apart from a plain chunked one here. The upstream gets it with net/http's own framing
// (chunked, no Content-Length); closing afterwards makes sure that nothing the client sent after
// the chunked body, such as a second request hidden in a body that a Content-Length front end
// counted, is ever read as a request.
type drainHandler struct {
	next     http.Handler
	draining *atomic.Bool
}

func (h drainHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.next.ServeHTTP(&drainWriter{ResponseWriter: w, draining: h.draining, chunked: len(r.TransferEncoding) > 0}, r)
}

// drainWriter sets Connection: close at the moment the response header is written, so that a
// request which began before the drain still tells its client to reconnect. A 101 (an upgrade
// that ReverseProxy writes on the hijacked connection) never passes here.
type drainWriter struct {
	http.ResponseWriter
	draining *atomic.Bool
	chunked  bool // the request had a chunked body: close after the response
	wrote    bool
}

func (w *drainWriter) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.wrote = true
		if w.chunked || w.draining.Load() {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *drainWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and Hijack underneath.
func (w *drainWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
