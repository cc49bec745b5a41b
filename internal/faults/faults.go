// Package faults has misbehaving backends for the chaos suite: each listens on loopback and
// fails in one precise way (refuses, never answers, never accepts, answers slowly, resets
// mid-response, never ends its response, answers garbage), so a test can check what the proxy's
// clients see and how its health checks classify the fault. Every backend counts the
// connections it accepted and stops, with every connection it holds, on Close.
package faults

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Kind names one way of failing.
type Kind string

const (
	Refused   Kind = "refused"    // nothing listens: connections are refused
	BlackHole Kind = "black_hole" // accepts, reads the request, never answers
	NoAccept  Kind = "no_accept"  // listens with a backlog of 1 that is kept full, never accepts
	Slow      Kind = "slow"       // answers 200 "ok" after Delay
	Reset     Kind = "reset"      // sends a header and part of the body, then resets (RST)
	Endless   Kind = "endless"    // sends a 200 header and a body that never ends
	Garbage   Kind = "garbage"    // answers bytes that are not HTTP, then closes
)

// Backend is one faulty backend.
type Backend struct {
	Kind  Kind
	Addr  string        // host:port
	Delay time.Duration // Slow only

	ln       net.Listener
	fillers  []net.Conn // NoAccept: the connections that keep the backlog full
	accepted atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	closed   chan struct{}
	wg       sync.WaitGroup
}

// Start starts a backend of kind k on a free port of 127.0.0.1. delay is used by Slow.
func Start(k Kind, delay time.Duration) (*Backend, error) {
	b := &Backend{Kind: k, Delay: delay, conns: map[net.Conn]struct{}{}, closed: make(chan struct{})}
	switch k {
	case Refused:
		// Take a free port, then let it go: nobody listens there any more.
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		b.Addr = ln.Addr().String()
		ln.Close()
		return b, nil
	case NoAccept:
		ln, err := listenBacklog1()
		if err != nil {
			return nil, err
		}
		b.ln, b.Addr = ln, ln.Addr().String()
		// Fill the accept queue (backlog 1 holds 2 on Linux) and the handshake queue behind
		// it; connections that do not complete in 200ms mean the queue is full.
		for i := 0; i < 8; i++ {
			c, err := net.DialTimeout("tcp", b.Addr, 200*time.Millisecond)
			if err != nil {
				break
			}
			b.fillers = append(b.fillers, c)
		}
		return b, nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b.ln, b.Addr = ln, ln.Addr().String()
	b.wg.Add(1)
	go b.serve()
	return b, nil
}

// listenBacklog1 listens on a free port of 127.0.0.1 with listen(2)'s backlog 1 (net.Listen
// always uses somaxconn).
func listenBacklog1() (net.Listener, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Listen(fd, 1); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "backlog1")
	defer f.Close()
	return net.FileListener(f)
}

// Accepted is how many connections the backend accepted.
func (b *Backend) Accepted() int64 { return b.accepted.Load() }

func (b *Backend) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		b.accepted.Add(1)
		b.mu.Lock()
		select {
		case <-b.closed:
			b.mu.Unlock()
			c.Close()
			return
		default:
		}
		b.conns[c] = struct{}{}
		b.mu.Unlock()
		b.wg.Add(1)
		go func() {
			defer b.wg.Done()
			defer func() {
				b.mu.Lock()
				delete(b.conns, c)
				b.mu.Unlock()
				c.Close()
			}()
			b.handle(c)
		}()
	}
}

// readRequest reads one request head (up to the blank line), so a response is never sent before
// the request arrived.
func readRequest(br *bufio.Reader) error {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.TrimRight(line, "\r\n") == "" {
			return nil
		}
	}
}

func (b *Backend) handle(c net.Conn) {
	br := bufio.NewReader(c)
	for {
		if err := readRequest(br); err != nil {
			return
		}
		switch b.Kind {
		case BlackHole:
			<-b.closed
			return
		case Slow:
			select {
			case <-time.After(b.Delay):
			case <-b.closed:
				return
			}
			if _, err := fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"); err != nil {
				return
			}
			continue // keep-alive
		case Reset:
			fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nok, and then")
			if tc, ok := c.(*net.TCPConn); ok {
				tc.SetLinger(0) // Close sends RST
			}
			return
		case Endless:
			if _, err := fmt.Fprint(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"); err != nil {
				return
			}
			chunk := []byte(strings.Repeat("ok ", 1365) + "\n")
			for {
				select {
				case <-b.closed:
					return
				default:
				}
				c.SetWriteDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write(chunk); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
					return
				}
			}
		case Garbage:
			fmt.Fprint(c, "\x00\x01garbage, not HTTP at all\r\n\r\n\xff\xfe")
			return
		default:
			return
		}
	}
}

// Close stops the backend and closes every connection it holds.
func (b *Backend) Close() error {
	select {
	case <-b.closed:
		return nil
	default:
	}
	b.mu.Lock()
	close(b.closed)
	for c := range b.conns {
		c.Close()
	}
	b.mu.Unlock()
	for _, c := range b.fillers {
		c.Close()
	}
	if b.ln != nil {
		b.ln.Close()
	}
	b.wg.Wait()
	return nil
}
