package probe

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// connect's raw path gives a working net.Conn: the bytes both ways, the addresses, io.EOF when
// the peer closes, timeouts at the deadline, Close waking a blocked Read; and no descriptor
// is left open.
func TestConnectRaw(t *testing.T) {
	for _, network := range []string{"tcp4", "tcp6"} {
		t.Run(network, func(t *testing.T) {
			host := "127.0.0.1:0"
			if network == "tcp6" {
				host = "[::1]:0"
			}
			ln, err := net.Listen(network, host)
			if err != nil {
				t.Skipf("no %s loopback: %v", network, err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						buf := make([]byte, 5)
						if _, err := io.ReadFull(c, buf); err == nil {
							c.Write(append([]byte("got "), buf...))
						}
						c.Close()
					}()
				}
			}()
			fds := openFDs(t)
			var c0 net.Conn
			for i := 0; i < 50; i++ {
				c, err := connect(context.Background(), ln.Addr().String(), time.Now().Add(5*time.Second), nil)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := c.(*tcpConn); !ok {
					t.Fatalf("an IP literal should get the raw path, got %T", c)
				}
				if c.RemoteAddr().String() != ln.Addr().String() {
					t.Fatalf("RemoteAddr %v, want %v", c.RemoteAddr(), ln.Addr())
				}
				if la, ok := c.LocalAddr().(*net.TCPAddr); !ok || la.Port == 0 {
					t.Fatalf("LocalAddr %v", c.LocalAddr())
				}
				if _, err := c.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
				got, err := io.ReadAll(c)
				if err != nil || string(got) != "got hello" {
					t.Fatalf("read %q, %v (want the answer, then io.EOF)", got, err)
				}
				c.Close()
				if c0 == nil {
					c0 = c
				}
			}
			// Descriptors are closed in batches a few milliseconds after Close (closer.go).
			deadline := time.Now().Add(2 * time.Second)
			for n := openFDs(t); n > fds+2; n = openFDs(t) {
				if time.Now().After(deadline) {
					t.Fatalf("%d descriptors open 2s after 50 connections were closed, %d before", n, fds)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := c0.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("read after Close: %v, want net.ErrClosed", err)
			}
			if _, err := c0.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
				t.Errorf("write after Close: %v, want net.ErrClosed", err)
			}
			if err := c0.Close(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("second Close: %v, want net.ErrClosed", err)
			}
		})
	}
}

func TestConnectRawDeadlineAndClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accepts and never answers
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	c, err := connect(context.Background(), ln.Addr().String(), time.Now().Add(5*time.Second), nil)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
		t.Fatalf("read past the deadline: %v, want a timeout", err)
	}
	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a Read cut by Close returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not wake a blocked Read")
	}
}

// A refused connection, a cancelled context and a name (not an IP literal) are classified as
// with net.Dialer.
func TestConnectErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx := context.Background()
	_, err = connect(ctx, addr, time.Now().Add(time.Second), nil)
	if err == nil || dialReason(ctx, err) != ConnectRefused {
		t.Fatalf("connect to a closed port: %v, want refused", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := connect(cctx, addr, time.Now().Add(time.Second), nil); err == nil || dialReason(cctx, err) != ConnectTimeout {
		t.Fatalf("connect with a cancelled context: %v, want a timeout", err)
	}
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	_, port, _ := net.SplitHostPort(ln2.Addr().String())
	c, err := connect(ctx, "localhost:"+port, time.Now().Add(time.Second), nil)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) {
			t.Skipf("localhost does not resolve to 127.0.0.1 here: %v", err)
		}
		t.Fatal(err)
	}
	if _, ok := c.(*tcpConn); ok {
		t.Fatal("a name should go through net.Dialer")
	}
	c.Close()
}

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}
