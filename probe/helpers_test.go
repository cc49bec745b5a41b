package probe

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// rawServer is a loopback TCP server that reads one request head per
// connection, records it, and hands the connection to a handler that writes
// exact bytes.
type rawServer struct {
	addr string
	reqs chan string // request heads received, in order
}

// newRawServer starts a rawServer; t.Cleanup stops it and waits for every
// goroutine it started. handle must return once done is closed.
func newRawServer(t *testing.T, handle func(c net.Conn, done <-chan struct{})) *rawServer {
	t.Helper()
	s := &rawServer{reqs: make(chan string, 64)}
	s.addr = acceptLoop(t, func(c net.Conn, done <-chan struct{}) {
		head, err := readHead(c)
		if err != nil {
			return
		}
		select {
		case s.reqs <- head:
		default:
		}
		handle(c, done)
	})
	return s
}

// lastRequest returns the request head the server received, waiting up to a
// few seconds for it.
func (s *rawServer) lastRequest(t *testing.T) string {
	t.Helper()
	select {
	case r := <-s.reqs:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("server received no request")
		return ""
	}
}

// readHead reads a request head up to and including the empty line.
func readHead(c net.Conn) (string, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	var sb strings.Builder
	b := make([]byte, 1) // byte by byte: no read-ahead past the head
	for !strings.HasSuffix(sb.String(), "\r\n\r\n") {
		if _, err := io.ReadFull(c, b); err != nil {
			return sb.String(), err
		}
		sb.WriteByte(b[0])
	}
	return sb.String(), nil
}

// closedPort returns a loopback address on which nothing listens.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// writeForever writes p to c until a write fails or done is closed.
func writeForever(c net.Conn, done <-chan struct{}, p string) {
	for {
		select {
		case <-done:
			return
		default:
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte(p)); err != nil {
			return
		}
	}
}
