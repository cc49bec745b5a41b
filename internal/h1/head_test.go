package h1

import (
	"bytes"
	"testing"
)

func TestParseRequest(t *testing.T) {
	raw := "POST /p?q=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\nConnection: keep-alive, X-A\r\nUpgrade: websocket\r\nExpect: 100-continue\r\nTE: trailers\r\n\r\n"
	var h Head
	n := HeadEnd([]byte(raw), 0)
	if n != len(raw) {
		t.Fatalf("HeadEnd %d, want %d", n, len(raw))
	}
	if err := ParseRequest([]byte(raw), &h); err != nil {
		t.Fatal(err)
	}
	if string(h.Method) != "POST" || string(h.Target) != "/p?q=1" || h.Minor != 1 || string(h.Host) != "h" || h.ContentLength != 12 ||
		!h.ConnKeepAlive || h.ConnClose || string(h.Upgrade) != "websocket" || !h.Expect100 || !h.TETrailers || len(h.Fields) != 6 ||
		!h.NamedInConnection([]byte("x-a")) {
		t.Errorf("parsed %+v", h)
	}
	if HeadEnd([]byte("GET / HTTP/1.1\r\nHost: h\r\n"), 0) != -1 {
		t.Error("an unfinished Head measured as complete")
	}
	if n := HeadEnd([]byte("GET / HTTP/1.1\nHost: h\n\nbody"), 0); n != 24 {
		t.Errorf("bare-LF Head: %d", n)
	}
}

func TestChunkScannerPieces(t *testing.T) {
	body := "5\r\nhello\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\nNEXT"
	// Fed in every split, the scanner must find the same end and the same data.
	for split := 0; split <= len(body); split++ {
		var c ChunkScanner
		var out []byte
		buf := []byte(body[:split])
		rest := body[split:]
		consumed := 0
		for !c.Done() {
			n, o, err := c.Scan(buf, ChunkDecode, out)
			if err != nil {
				t.Fatalf("split %d: %v", split, err)
			}
			out, consumed, buf = o, consumed+n, buf[n:]
			if c.Done() {
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
		n := HeadEnd(b, 0)
		if n < 0 {
			return
		}
		var h Head
		if err := ParseRequest(b[:n], &h); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error of the wrong type: %v", err)
			}
			return
		}
		if !IsToken(h.Method) || len(h.Target) == 0 || (h.Minor != 0 && h.Minor != 1) {
			t.Fatalf("accepted a bad request line: %q", b[:n])
		}
		if h.Chunked && h.ContentLength >= 0 {
			t.Fatalf("accepted both framings: %q", b[:n])
		}
		if h.Minor == 1 && h.Host == nil {
			t.Fatalf("accepted HTTP/1.1 without Host: %q", b[:n])
		}
		for _, hd := range h.Fields {
			if !IsToken(hd.Name) || bytes.ContainsAny(hd.Value, "\r\n\x00") {
				t.Fatalf("accepted a bad field %q: %q", hd.Name, hd.Value)
			}
		}
	})
}

func BenchmarkParseRequest(b *testing.B) {
	raw := []byte("GET /index.html?x=1 HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
		"Connection: keep-alive\r\nCookie: session=abc; theme=dark\r\nCache-Control: max-age=0\r\n\r\n")
	var h Head
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		n := HeadEnd(raw, 0)
		if err := ParseRequest(raw[:n], &h); err != nil {
			b.Fatal(err)
		}
	}
}
