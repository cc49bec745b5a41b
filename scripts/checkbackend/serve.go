package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Layout is how server indexes map to loopback addresses: PortsPerIP consecutive servers share
// one address, on ports Port, Port+1, ...; addresses run 127.0.1.1 .. 127.0.1.250, then
// 127.0.2.1 and on, so no ephemeral port range and no single address is crowded.
type Layout struct {
	Port       int
	PortsPerIP int
}

// maxServers bounds a layout (the third octet stops at 250).
func (l Layout) maxServers() int { return 250 * 250 * l.PortsPerIP }

func (l Layout) validate(first, count int) error {
	switch {
	case l.Port < 1 || l.PortsPerIP < 1 || l.Port+l.PortsPerIP-1 > 65535:
		return fmt.Errorf("port, ports-per-ip: ports %d..%d are not all in 1..65535", l.Port, l.Port+l.PortsPerIP-1)
	case first < 0 || count < 1:
		return fmt.Errorf("first, n: want first >= 0 and n >= 1 (got %d, %d)", first, count)
	case first+count > l.maxServers():
		return fmt.Errorf("n: %d servers from %d pass this layout's %d (raise ports-per-ip)", count, first, l.maxServers())
	}
	return nil
}

// Addr returns the address of server i.
func (l Layout) Addr(i int) netip.AddrPort {
	k := i / l.PortsPerIP
	ip := netip.AddrFrom4([4]byte{127, 0, byte(1 + k/250), byte(1 + k%250)})
	return netip.AddrPortFrom(ip, uint16(l.Port+i%l.PortsPerIP))
}

// backend is one process's servers: a listener per server, all answering GET /health with 200.
type backend struct {
	rec     *recorder
	servers []*http.Server
	ctl     *http.Server
	ctlAddr string
	errs    *log.Logger
	wg      sync.WaitGroup
}

// fdReserve is what a backend keeps free beside its listeners: the control port, stdio, the
// runtime, and one connection per server (a keep-alive checker holds one open per server).
const fdReserve = 64

// startBackend listens on servers first..first+count-1 of the layout and on ctlListen (the
// control port), and serves them until Close. It refuses more listeners than its descriptor
// limit holds with a connection each.
func startBackend(l Layout, first, count int, ctlListen string, errs io.Writer) (*backend, error) {
	if err := l.validate(first, count); err != nil {
		return nil, err
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && uint64(2*count+fdReserve) > lim.Cur {
		return nil, fmt.Errorf("n: %d servers need %d descriptors (a listener and a connection each), the limit is %d: spread them over more processes", count, 2*count+fdReserve, lim.Cur)
	}
	b := &backend{rec: newRecorder(count, nil), errs: log.New(errs, "checkbackend: ", 0)}
	lns := make([]net.Listener, 0, count)
	for i := range count {
		ln, err := net.Listen("tcp", l.Addr(first+i).String())
		if err != nil {
			for _, ln := range lns {
				ln.Close()
			}
			return nil, fmt.Errorf("listen: %w", err)
		}
		lns = append(lns, ln)
	}
	ctlLn, err := net.Listen("tcp", ctlListen)
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return nil, fmt.Errorf("ctl: %w", err)
	}
	b.ctlAddr = ctlLn.Addr().String()
	for i, ln := range lns {
		srv := &http.Server{
			Handler:           probeHandler{b.rec, i},
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute, // longer than any check interval: keep-alive checks keep their connection
			MaxHeaderBytes:    16 << 10,
			ConnState: func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					b.rec.Conn()
				}
			},
			ErrorLog: b.errs,
		}
		b.servers = append(b.servers, srv)
		b.serve(srv, ln)
	}
	b.ctl = &http.Server{Handler: b.control(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: b.errs}
	b.serve(b.ctl, ctlLn)
	return b, nil
}

func (b *backend) serve(srv *http.Server, ln net.Listener) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.errs.Printf("serve %s: %v", ln.Addr(), err)
		}
	}()
}

// Close stops every server and waits for them.
func (b *backend) Close() {
	for _, srv := range append(b.servers, b.ctl) {
		srv.Close()
	}
	b.wg.Wait()
}

// probeHandler is server i: GET /health is a probe, anything else a 404 counted as "other".
type probeHandler struct {
	rec *recorder
	i   int
}

func (h probeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/health" {
		h.rec.Other()
		http.NotFound(w, r)
		return
	}
	h.rec.Probe(h.i)
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, "ok\n")
}

// control serves GET /stats (the window so far), GET /servers (per server) and POST /reset
// (start a new window).
func (b *backend) control() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, b.rec.Snapshot()) })
	mux.HandleFunc("GET /servers", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, b.rec.Servers()) })
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		b.rec.Reset()
		io.WriteString(w, "ok\n")
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(v); err != nil {
		log.Printf("checkbackend: control: %v", err)
	}
}

// writeFileAtomic writes data to path through a temporary file and a rename, so a reader polling
// for path never sees it half written.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ctl-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// serveUntil runs a backend until ctx ends, printing its summary line to out on each signal from
// usr1 and once at the end.
func serveUntil(ctx context.Context, b *backend, usr1 <-chan os.Signal, interval time.Duration, out io.Writer) {
	print := func() {
		if s, err := Summarize(b.rec.Snapshot(), interval); err == nil {
			fmt.Fprintf(out, "checkbackend ctl=%s %s\n", b.ctlAddr, s)
		}
	}
	for {
		select {
		case <-ctx.Done():
			print()
			return
		case <-usr1:
			print()
		}
	}
}
