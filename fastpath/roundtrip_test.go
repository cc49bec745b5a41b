package fastpath

import (
	"bytes"
	"net"
	"testing"
	"time"

	"hcproxy/shm"
)

// BenchmarkProxyRoundTrip is one keep-alive request through the fast path over loopback, between
// a raw client and a raw upstream that allocate nothing, so allocs/op are the proxy's.
func BenchmarkProxyRoundTrip(b *testing.B) {
	roundTrip, _ := rawRoundTrip(b)
	roundTrip()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		roundTrip()
	}
}

// TestProxyRoundTripAllocatesNothing keeps BenchmarkProxyRoundTrip's promise as a test: a
// proxied keep-alive request allocates nothing, with its request metrics counted (one status
// class, one histogram bucket, its bytes) in the server's slot.
func TestProxyRoundTripAllocatesNothing(t *testing.T) {
	roundTrip, slot := rawRoundTrip(t)
	roundTrip()
	if allocs := testing.AllocsPerRun(500, roundTrip); allocs != 0 {
		t.Errorf("%.2f allocations per proxied request, want 0", allocs)
	}
	eventually(t, "every request counted", 5*time.Second, func() bool {
		return slot.RequestStats().Classes[1] == 502 // the first, the warm-up run and 500
	})
	r := slot.RequestStats()
	var inBuckets uint64
	for _, n := range r.DurBuckets {
		inBuckets += n
	}
	if r.Responses() != 502 || inBuckets != 502 || r.BytesOut != 502*13 || r.Own != [3]uint64{} || r.Retries != 0 {
		t.Errorf("request metrics %+v, want 502 2xx responses of 13 bytes in the histogram", r)
	}
}

// rawRoundTrip starts a fast path in front of a raw upstream and returns a function that sends
// one keep-alive request through it from a raw client, and the upstream's slot.
func rawRoundTrip(tb testing.TB) (func(), shm.Slot) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
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
	ss := servers(tb, shm.Up, ln.Addr().String())
	_, addr := startFast(tb, Options{}, ss)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: wrk\r\n\r\n")
	buf := make([]byte, 4096)
	return func() {
		if _, err := c.Write(req); err != nil {
			tb.Fatal(err)
		}
		got := 0
		for !bytes.HasSuffix(buf[:got], []byte("hello, world\n")) {
			n, err := c.Read(buf[got:])
			if err != nil {
				tb.Fatal(err)
			}
			got += n
		}
	}, ss[0].Slot
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

// A request no server can take (every server down) is answered 503 on a kept-alive connection
// and counted in the upstream's home slot, allocating nothing.
func TestNoServerRoundTripAllocatesNothing(t *testing.T) {
	ss := servers(t, shm.Down, closedAddr(t), closedAddr(t))
	_, addr := startFast(t, Options{}, ss)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\n\r\n")
	const want = "Service Unavailable\n"
	buf := make([]byte, 4096)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		got := 0
		for !bytes.HasSuffix(buf[:got], []byte(want)) {
			n, err := c.Read(buf[got:])
			if err != nil {
				t.Fatalf("after %q: %v", buf[:got], err)
			}
			got += n
		}
		if !bytes.HasPrefix(buf[:got], []byte("HTTP/1.1 503 ")) {
			t.Fatalf("response %q, want a 503", buf[:got])
		}
	}
	roundTrip()
	if allocs := testing.AllocsPerRun(200, roundTrip); allocs != 0 {
		t.Errorf("%.2f allocations per refused request, want 0", allocs)
	}
	eventually(t, "every 503 counted", 5*time.Second, func() bool { return ss[0].Slot.RequestStats().NoServer == 202 })
	if n := ss[1].Slot.RequestStats().NoServer; n != 0 {
		t.Errorf("the second server's slot counted %d, want 0 (one home slot per upstream)", n)
	}
}
