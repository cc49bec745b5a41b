package fastpath

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns both ends of a real TCP connection on 127.0.0.1.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// A write far larger than the socket buffers goes out whole (partial writes and waits for
// writability), and the reader gets every byte in order, then io.EOF.
func TestSockIOMovesLargeWrites(t *testing.T) {
	a, b := tcpPair(t)
	var wa, rb sockIO
	wa.init(a)
	rb.init(b)
	if wa.rc == nil || rb.rc == nil {
		t.Fatal("a TCP connection should use raw system calls")
	}
	want := make([]byte, 8<<20)
	for i := range want {
		want[i] = byte(i * 7)
	}
	errc := make(chan error, 1)
	go func() {
		n, err := wa.Write(want)
		if err == nil && n != len(want) {
			err = errors.New("short write")
		}
		a.(*net.TCPConn).CloseWrite()
		errc <- err
	}()
	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	for {
		n, err := rb.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatal("Read returned 0 bytes and no error")
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Fatalf("read %d bytes, not the %d written (or out of order)", got.Len(), len(want))
	}
}

// Deadlines work as on net.Conn: a read with nothing to read returns a timeout error at the
// deadline, and a write to a peer that never reads returns a timeout once the buffers are full.
func TestSockIODeadlines(t *testing.T) {
	a, b := tcpPair(t)
	var s sockIO
	s.init(a)
	a.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	_, err := s.Read(make([]byte, 10))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	a.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := s.Write(make([]byte, 64<<20))
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("write to a peer that does not read: %d, %v, want a timeout", n, err)
	}
	if n == 0 || n >= 64<<20 {
		t.Fatalf("wrote %d bytes before the timeout, want some but not all", n)
	}
	_ = b
}

// A write to a peer that closed fails with an error (EPIPE or ECONNRESET), never a signal, and a
// read from a reset connection fails too.
func TestSockIOPeerGone(t *testing.T) {
	a, b := tcpPair(t)
	var s sockIO
	s.init(a)
	b.(*net.TCPConn).SetLinger(0)
	b.Close()
	time.Sleep(20 * time.Millisecond)
	var err error
	for range 10 {
		if _, err = s.Write([]byte("hello")); err != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("write to a closed peer: %v, want EPIPE or ECONNRESET", err)
	}
	if _, err := s.Read(make([]byte, 10)); err == nil {
		t.Fatal("read from a reset connection succeeded")
	}
}

// Close from another goroutine wakes a blocked Read, as with net.Conn.
func TestSockIOCloseWakesRead(t *testing.T) {
	a, _ := tcpPair(t)
	var s sockIO
	s.init(a)
	done := make(chan error, 1)
	go func() {
		_, err := s.Read(make([]byte, 10))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	a.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a blocked Read")
	}
}

// A read or write that can proceed allocates nothing.
func TestSockIOAllocs(t *testing.T) {
	a, b := tcpPair(t)
	var wa, rb sockIO
	wa.init(a)
	rb.init(b)
	msg := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	buf := make([]byte, 256)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := wa.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := 0
		for got < len(msg) {
			n, err := rb.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got += n
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per write and read, want 0", allocs)
	}
	// WriteRead: a request to b, b's echo back to a.
	go func() {
		for {
			n, err := rb.Read(buf)
			if err != nil {
				return
			}
			if _, err := rb.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	q := make([]byte, 256)
	allocs = testing.AllocsPerRun(1000, func() {
		got := 0
		_, n, err := wa.WriteRead(msg, q)
		for got += n; err == nil && got < len(msg); got += n {
			n, err = wa.Read(q)
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per WriteRead, want 0", allocs)
	}
}

// A connection that is not TCP keeps its own Read and Write.
func TestSockIOFallback(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var s sockIO
	s.init(a)
	if s.rc != nil {
		t.Fatal("a pipe has no raw connection")
	}
	go b.Write([]byte("hi"))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(&s, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q, %v", buf, err)
	}
}

// WriteRead sends a request and returns its answer, however soon the answer comes: at once
// (a peer that answers as fast as it can, many times, where a lost wake-up would show as a
// timeout) or after a pause (the wait must end when it arrives, not before and not at the
// deadline).
func TestSockIOWriteReadGetsEveryAnswer(t *testing.T) {
	a, b := tcpPair(t)
	var s sockIO
	s.init(a)
	go func() { // an echo server that answers each request as it comes
		buf := make([]byte, 64)
		for {
			n, err := b.Read(buf)
			if err != nil {
				return
			}
			if buf[0] == 'p' {
				time.Sleep(50 * time.Millisecond)
			}
			if _, err := b.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	a.SetReadDeadline(time.Now().Add(20 * time.Second))
	q := make([]byte, 64)
	for i := range 20000 {
		req := []byte("request " + string(rune('a'+i%26)))
		wrote, n, err := s.WriteRead(req, q)
		if err != nil || wrote != len(req) || string(q[:n]) != string(req) {
			t.Fatalf("round %d: WriteRead = %d, %d (%q), %v", i, wrote, n, q[:n], err)
		}
	}
	start := time.Now()
	wrote, n, err := s.WriteRead([]byte("pause"), q)
	if err != nil || wrote != 5 || string(q[:n]) != "pause" {
		t.Fatalf("after a pause: WriteRead = %d, %d (%q), %v", wrote, n, q[:n], err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("answered in %v, before the peer wrote", d)
	}
}

// A request larger than the socket buffers, to a peer that reads nothing: WriteRead stops when
// the buffers fill, saying how much went and reading nothing, and the caller's Write sends the
// rest once the peer reads; a peer that is gone gives the write's error.
func TestSockIOWriteReadPartialAndFailedWrites(t *testing.T) {
	a, b := tcpPair(t)
	var s sockIO
	s.init(a)
	big := make([]byte, 32<<20)
	wrote, n, err := s.WriteRead(big, make([]byte, 64))
	if err != nil || n != 0 || wrote == 0 || wrote >= len(big) {
		t.Fatalf("WriteRead of %d bytes to a peer that reads nothing = %d, %d, %v; want a partial write, no read, no error", len(big), wrote, n, err)
	}
	done := make(chan int64)
	go func() {
		k, _ := io.Copy(io.Discard, b)
		done <- k
	}()
	if _, err := s.Write(big[wrote:]); err != nil {
		t.Fatal(err)
	}
	a.(*net.TCPConn).CloseWrite()
	if k := <-done; k != int64(len(big)) {
		t.Fatalf("peer got %d bytes, want %d", k, len(big))
	}

	c, d := tcpPair(t)
	d.(*net.TCPConn).SetLinger(0)
	d.Close() // a reset: the next writes fail
	var s2 sockIO
	s2.init(c)
	time.Sleep(20 * time.Millisecond)
	var werr error
	for range 10 {
		if _, n, werr = s2.WriteRead([]byte("request"), make([]byte, 64)); werr != nil {
			break
		}
		if n != 0 {
			t.Fatalf("read %d bytes from a reset connection", n)
		}
	}
	var op *net.OpError
	if !errors.As(werr, &op) || !errors.Is(werr, syscall.ECONNRESET) && !errors.Is(werr, syscall.EPIPE) {
		t.Fatalf("WriteRead to a reset peer: %v, want ECONNRESET or EPIPE", werr)
	}
}

// A connection that is not TCP (net.Pipe) writes, then reads, through net.Conn.
func TestSockIOWriteReadOverPipe(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var s sockIO
	s.init(a)
	go func() {
		buf := make([]byte, 16)
		n, _ := b.Read(buf)
		b.Write(buf[:n])
	}()
	q := make([]byte, 16)
	wrote, n, err := s.WriteRead([]byte("ping"), q)
	if err != nil || wrote != 4 || string(q[:n]) != "ping" {
		t.Fatalf("WriteRead over a pipe = %d, %d (%q), %v", wrote, n, q[:n], err)
	}
}
