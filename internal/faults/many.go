package faults

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Many is a cheap health endpoint on many distinct loopback addresses: one listener per
// address, each bound to its own 127.0.X.Y (never a wildcard address), all served by one
// process. Every request gets 200 "ok" and Connection: close.
type Many struct {
	Addrs []string

	lns      []net.Listener
	requests atomic.Int64
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   bool
}

// StartMany listens on n addresses: ports base, base+1, ... (as many as needed) on the
// loopback addresses 127.0.1.1, 127.0.1.2, ..., perPort addresses per port. A port that is
// taken on one of those addresses is skipped whole.
func StartMany(n, base, perPort int) (*Many, error) {
	m := &Many{conns: map[net.Conn]struct{}{}}
	for port := base; len(m.Addrs) < n; port++ {
		if port > 65535 {
			m.Close()
			return nil, fmt.Errorf("faults: ran out of ports for %d addresses", n)
		}
		var lns []net.Listener
		ok := true
		for i := 0; i < perPort && len(m.Addrs)+len(lns) < n; i++ {
			ip := fmt.Sprintf("127.0.%d.%d", 1+i/250, 1+i%250)
			ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
			if err != nil {
				ok = false
				break
			}
			lns = append(lns, ln)
		}
		if !ok {
			for _, ln := range lns {
				ln.Close()
			}
			continue
		}
		for _, ln := range lns {
			m.lns = append(m.lns, ln)
			m.Addrs = append(m.Addrs, ln.Addr().String())
			m.wg.Add(1)
			go m.serve(ln)
		}
	}
	return m, nil
}

// Requests is how many requests were answered.
func (m *Many) Requests() int64 { return m.requests.Load() }

var okResponse = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")

func (m *Many) serve(ln net.Listener) {
	defer m.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			c.Close()
			return
		}
		m.conns[c] = struct{}{}
		m.mu.Unlock()
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer func() {
				m.mu.Lock()
				delete(m.conns, c)
				m.mu.Unlock()
				c.Close()
			}()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			if readRequest(bufio.NewReaderSize(c, 512)) != nil {
				return
			}
			m.requests.Add(1)
			c.Write(okResponse)
		}()
	}
}

// Close closes every listener and connection and waits for the goroutines.
func (m *Many) Close() error {
	m.mu.Lock()
	m.closed = true
	for c := range m.conns {
		c.Close()
	}
	m.mu.Unlock()
	for _, ln := range m.lns {
		ln.Close()
	}
	m.wg.Wait()
	return nil
}
