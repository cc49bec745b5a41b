package fastpath

import (
	"bytes"
	"net"
	"testing"

	"hcproxy/shm"
)

// BenchmarkProxyRoundTrip is one keep-alive request through the fast path over loopback, between
// a raw client and a raw upstream that allocate nothing, so allocs/op are the proxy's.
func BenchmarkProxyRoundTrip(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	const resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, world\n"
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go rawServe(c, []byte(resp))
		}
	}()
	_, addr := startFast(b, Options{}, servers(b, shm.Up, ln.Addr().String()))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n\r\n")
	buf := make([]byte, 4096)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		got := 0
		for !bytes.HasSuffix(buf[:got], []byte("hello, world\n")) {
			n, err := c.Read(buf[got:])
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
	}
	roundTrip()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		roundTrip()
	}
}

// rawServe answers every request Head on c with resp, reading heads by their blank line.
func rawServe(c net.Conn, resp []byte) {
	defer c.Close()
	buf := make([]byte, 16<<10)
	have := 0
	for {
		if i := bytes.Index(buf[:have], []byte("\r\n\r\n")); i >= 0 {
			copy(buf, buf[i+4:have])
			have -= i + 4
			if _, err := c.Write(resp); err != nil {
				return
			}
			continue
		}
		n, err := c.Read(buf[have:])
		if err != nil {
			return
		}
		have += n
	}
}
