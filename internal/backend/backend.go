// Package backend is a real HTTP backend for tests and the demo: it listens on loopback, answers
// traffic with its name, answers health checks (GET /health) with 200 "ok" or, when told to
// fail, 503, and records the time of every health check it receives so tests can count them.
// On request (Record) it also keeps the raw bytes its connections send, so a test can check what
// a proxy forwarded byte for byte.
package backend

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is one running backend.
type Backend struct {
	Name string
	Addr string // host:port it listens on

	srv     *http.Server
	ln      net.Listener
	failing atomic.Bool
	hits    atomic.Int64
	conns   atomic.Int64

	recording atomic.Bool

	mu       sync.Mutex
	probes   []time.Time
	recorded []*recordedConn
}

// maxRecorded bounds the bytes Record keeps of one connection.
const maxRecorded = 64 << 10

// Start starts a backend on addr ("127.0.0.1:0" for any free port).
func Start(name, addr string) (*Backend, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	b := &Backend{Name: name, Addr: ln.Addr().String(), ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", b.health)
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		h := r.Header.Clone()
		h.Set("Host", r.Host)
		json.NewEncoder(w).Encode(h)
	})
	mux.HandleFunc("/ws", b.websocket)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		fmt.Fprintf(w, "hello from %s\n", b.Name)
	})
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			b.conns.Add(1)
		}
	}}
	go b.srv.Serve(recordingListener{Listener: ln, b: b})
	return b, nil
}

// Record makes the backend keep the first 64 KiB that each connection it accepts from now on
// sends it, health checks included.
func (b *Backend) Record() { b.recording.Store(true) }

// Received returns the raw bytes each recorded connection sent so far, in accept order.
func (b *Backend) Received() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]string, len(b.recorded))
	for i, c := range b.recorded {
		c.mu.Lock()
		out[i] = string(c.got)
		c.mu.Unlock()
	}
	return out
}

type recordingListener struct {
	net.Listener
	b *Backend
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil || !l.b.recording.Load() {
		return c, err
	}
	rc := &recordedConn{Conn: c}
	l.b.mu.Lock()
	l.b.recorded = append(l.b.recorded, rc)
	l.b.mu.Unlock()
	return rc, nil
}

// recordedConn keeps what is read from it, up to maxRecorded bytes.
type recordedConn struct {
	net.Conn
	mu  sync.Mutex
	got []byte
}

func (c *recordedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.got = append(c.got, p[:min(n, max(maxRecorded-len(c.got), 0))]...)
	c.mu.Unlock()
	return n, err
}

func (b *Backend) health(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.probes = append(b.probes, time.Now())
	b.mu.Unlock()
	if b.failing.Load() {
		http.Error(w, "failing on purpose", http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, "ok")
}

// websocket answers an Upgrade: websocket request with 101 and then echoes every byte back until
// the client closes (enough to prove a proxy passes an upgraded connection through both ways).
func (b *Backend) websocket(w http.ResponseWriter, r *http.Request) {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "want an upgrade", http.StatusBadRequest)
		return
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	rw.Flush()
	io.Copy(conn, rw)
}

// Conns returns how many connections it accepted.
func (b *Backend) Conns() int64 { return b.conns.Load() }

// SetFailing makes health checks fail (503) or pass.
func (b *Backend) SetFailing(v bool) { b.failing.Store(v) }

// Hits returns how many traffic (non-health) requests it served.
func (b *Backend) Hits() int64 { return b.hits.Load() }

// Probes returns the times of the health checks it received.
func (b *Backend) Probes() []time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]time.Time(nil), b.probes...)
}

// Close stops the backend.
func (b *Backend) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return b.srv.Shutdown(ctx)
}
