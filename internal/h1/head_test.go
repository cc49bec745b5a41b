package fastpath

import (
	"bytes"
	"net"
	"testing"

	"hcproxy/shm"
)

func TestParseRequest(t *testing.T) {
	raw := "POST /p?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nConnection: keep-alive, X-A\r\nUpgrade: websocket\r\nExpect: 100-continue\r\nTE: trailers\r\n\r\n"
	var h head
	n := headEnd([]byte(raw), 0)
	if n != len(raw) {
		t.Fatalf("headEnd %d, want %d", n, len(raw))
	}
	if err := parseRequest([]byte(raw), &h); err != nil {
		t.Fatal(err)
	}
	if string(h.method) != "POST" || string(h.target) != "/p?q=1" || h.minor != 1 || string(h.host) != "h" || h.contentLength != 12 ||
		!h.connKeepAlive || h.connClose || string(h.upgrade) != "websocket" || !h.expect100 || !h.teTrailers || len(h.headers) != 6 ||
		!h.namedInConnection([]byte("x-a")) {
		t.Errorf("parsed %+v", h)
	}
	if headEnd([]byte("GET / HTTP/1.1\r\nHost: h\r\n"), 0) != -1 {
		t.Error("an unfinished head measured as complete")
	}
	if n := headEnd([]byte("GET / HTTP/1.1\nHost: h\n\nbody"), 0); n != 24 {
		t.Errorf("bare-LF head: %d", n)
	}
}

func TestChunkScannerPieces(t *testing.T) {
	body := "5\r\nhello\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\nNEXT"
	// Fed in every split, the scanner must find the same end and the same data.
	for split := 0; split <= len(body); split++ {
		var c chunkScanner
		var out []byte
		buf := []byte(body[:split])
		rest := body[split:]
		consumed := 0
		for !c.done() {
			n, o, err := c.scan(buf, chunkDecode, out)
			if err != nil {
				t.Fatalf("split %d: %v", split, err)
			}
			out, consumed, buf = o, consumed+n, buf[n:]
			if c.done() {
				break
			}
			if rest == "" {
				t.Fatalf("split %d: not done at the end", split)
			}
			buf = append(buf, rest[0])
			rest = rest[1:]
		}
		if string(out) != "hello0123456789abcdef" || consumed != len(body)-4 {
			t.Fatalf("split %d: out %q consumed %d", split, out, consumed)
		}
	}
}

// The seed corpus: valid heads of each shape and the attacks the parser must refuse.
var requestSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a\r\n\r\n",                                                     // minimal
	"GET /a?b HTTP/1.0\r\n\r\n",                                                             // HTTP/1.0 without Host
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",                            // a body
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", // chunked
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", // CL+TE smuggling
	"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",          // two CLs
	"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",            // unsupported TE
	"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X\r\nUpgrade: websocket\r\n\r\n",     // upgrade
	"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",                                          // obs-fold
	"GET / HTTP/1.1\nHost: a\n\n",                                                           // bare LF
	"G\x00T / HTTP/1.1\r\n\r\n",                                                             // bad method
	"GET  / HTTP/1.1\r\n\r\n",                                                               // two spaces
	"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n",        // expect
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range requestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := headEnd(b, 0)
		if n < 0 {
			return
		}
		var h head
		if err := parseRequest(b[:n], &h); err != nil {
			if _, ok := err.(*parseError); !ok {
				t.Fatalf("error of the wrong type: %v", err)
			}
			return
		}
		if !isToken(h.method) || len(h.target) == 0 || (h.minor != 0 && h.minor != 1) {
			t.Fatalf("accepted a bad request line: %q", b[:n])
		}
		if h.chunked && h.contentLength >= 0 {
			t.Fatalf("accepted both framings: %q", b[:n])
		}
		if h.minor == 1 && h.host == nil {
			t.Fatalf("accepted HTTP/1.1 without Host: %q", b[:n])
		}
		for _, hd := range h.headers {
			if !isToken(hd.name) || bytes.ContainsAny(hd.value, "\r\n\x00") {
				t.Fatalf("accepted a bad field %q: %q", hd.name, hd.value)
			}
		}
	})
}

func BenchmarkParseRequest(b *testing.B) {
	raw := []byte("GET /index.html?x=1 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Connection: keep-alive\r\nCookie: session=abc; theme=dark\r\nCache-Control: max-age=0\r\n\r\n")
	var h head
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		n := headEnd(raw, 0)
		if err := parseRequest(raw[:n], &h); err != nil {
			b.Fatal(err)
		}
	}
}

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

// rawServe answers every request head on c with resp, reading heads by their blank line.
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
