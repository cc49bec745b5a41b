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
	big := make([]byte, 64<<20) // made before the deadline is set: zeroing 64 MiB on a busy machine can take longer than it
	a.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	n, err := s.Write(big)
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

// echoOnce answers on c, once it has read a request of n bytes, with answer.
func echoOnce(t *testing.T, c net.Conn, n int, answer string) <-chan []byte {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, n)
		if _, err := io.ReadFull(c, buf); err != nil {
			got <- nil
			return
		}
		c.Write([]byte(answer))
		got <- buf
	}()
	return got
}

// Exchange on a quiet connection sends the request and returns the start of the answer; with
// allocations none.
func TestSockIOExchange(t *testing.T) {
	a, b := tcpPair(t)
	var s sockIO
	s.init(a)
	req := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	buf := make([]byte, 256)
	for i := 0; i < 3; i++ {
		got := echoOnce(t, b, len(req), "HTTP/1.1 200 OK\r\n\r\n")
		a.SetReadDeadline(time.Now().Add(5 * time.Second))
		sent, n, err := s.Exchange(req, buf)
		if err != nil || sent != len(req) || string(buf[:n]) != "HTTP/1.1 200 OK\r\n\r\n"[:n] || n == 0 {
			t.Fatalf("Exchange: sent %d, read %q, %v", sent, buf[:n], err)
		}
		if string(<-got) != string(req) {
			t.Fatal("the server did not get the request")
		}
		for n < len("HTTP/1.1 200 OK\r\n\r\n") { // the rest, if it came in two parts
			m, err := s.Read(buf[n:])
			if err != nil {
				t.Fatal(err)
			}
			n += m
		}
	}
	// 0 allocations: the server answers every request as it comes.
	go func() {
		rb, answer := make([]byte, len(req)), []byte("HTTP/1.1 200 OK\r\n\r\n")
		for {
			if _, err := io.ReadFull(b, rb); err != nil {
				return
			}
			b.Write(answer)
		}
	}()
	allocs := testing.AllocsPerRun(200, func() {
		_, n, err := s.Exchange(req, buf)
		for err == nil && n < 19 {
			var m int
			m, err = s.Read(buf[n:])
			n += m
		}
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per exchange, want 0", allocs)
	}
}

// Exchange on a connection that is not quiet (bytes the server sent unasked, its FIN, a reset)
// sends nothing and says errUnsolicited.
func TestSockIOExchangeRefusesNoisyConnection(t *testing.T) {
	req := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, tc := range []struct {
		name string
		make func(b net.Conn)
	}{
		{"unasked bytes", func(b net.Conn) { b.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\ninjected")) }},
		{"FIN", func(b net.Conn) { b.(*net.TCPConn).CloseWrite() }},
		{"reset", func(b net.Conn) { b.(*net.TCPConn).SetLinger(0); b.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPair(t)
			var s sockIO
			s.init(a)
			tc.make(b)
			time.Sleep(50 * time.Millisecond) // on loopback, it has arrived by now
			sent, _, err := s.Exchange(req, make([]byte, 256))
			if err == nil || sent != 0 {
				t.Fatalf("Exchange on a noisy connection: sent %d, %v; want nothing sent and an error", sent, err)
			}
			if tc.name != "reset" && err != errUnsolicited {
				t.Fatalf("err = %v, want errUnsolicited", err)
			}
			if tc.name == "reset" {
				return
			}
			b.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			if n, _ := b.Read(make([]byte, 64)); n != 0 {
				t.Fatalf("the server got %d bytes of a request that should not have been sent", n)
			}
		})
	}
}

// A request larger than the socket's buffers: Exchange sends what fits without waiting and
// returns; the rest goes with Write, and the answer is read after.
func TestSockIOExchangeLargeRequest(t *testing.T) {
	a, b := tcpPair(t)
	var s sockIO
	s.init(a)
	req := bytes.Repeat([]byte("x"), 16<<20)
	got := echoOnce(t, b, len(req), "ok")
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	sent, n, err := s.Exchange(req, make([]byte, 16))
	if err != nil || n != 0 || sent >= len(req) {
		t.Fatalf("Exchange of 16 MiB: sent %d, read %d, %v; want part sent, nothing read, no error", sent, n, err)
	}
	if _, err := s.Write(req[sent:]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(&s, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("answer %q, %v", buf, err)
	}
	if r := <-got; !bytes.Equal(r, req) {
		t.Fatal("the server did not get the whole request")
	}
}
