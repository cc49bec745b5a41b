package h1

import (
	"bytes"
	"reflect"
	"testing"
)

// parseHeadersByLine is the line-by-line scan of the header fields that ParseFields replaced
// (IndexByte for each line's end and colon, then a check of each part), kept as the oracle of
// FuzzParseHeaders: the two must agree on every head, in error and in every field they record.
func parseHeadersByLine(b []byte, h *Head, request bool) error {
	for {
		line, rest := nextLine(b)
		b = rest
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !IsToken(line[:colon]) {
			return ErrBadHeader
		}
		name, value := line[:colon], TrimOWS(line[colon+1:])
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return ErrBadHeader
			}
		}
		if err := h.field(name, value, request); err != nil {
			return err
		}
	}
	if h.Chunked && h.ContentLength >= 0 {
		return ErrCLAndTE
	}
	return nil
}

var headerSeeds = []string{
	"Host: a\r\n\r\n",
	"Host: a\nX:  b \t\n\n",
	"Host:\r\nX-Empty:\t\r\n\r\n",
	"Content-Length: 12\r\nConnection: keep-alive, X-A , upgrade\r\nUpgrade: websocket\r\nTE: trailers;q=1\r\n\r\n",
	"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
	"Expect: 100-continue\r\nHost: a\r\nHost: b\r\n\r\n",
	" folded\r\n\r\n",
	"X : y\r\n\r\n",
	"X: a\rb\r\n\r\n",
	"X: a\r\r\n\r\n",
	"X: \x7f\r\n\r\n",
	"X: caf\xc3\xa9\r\n\r\n",
	"\r\r\n\r\n",
	":v\r\n\r\n",
}

// FuzzParseHeaders checks ParseFields against parseHeadersByLine, for requests and responses.
func FuzzParseHeaders(f *testing.F) {
	for _, s := range headerSeeds {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, request bool) {
		// A head as HeadEnd measures it: the fields through the empty line. HeadEnd needs a
		// line before the fields; b begins with the fields, so measure it behind one.
		n := HeadEnd(append([]byte("L\r\n"), b...), 0)
		if n < 0 {
			return
		}
		b = b[:n-3]
		var got, want Head
		got.Reset()
		want.Reset()
		gerr := ParseFields(b, &got, request)
		werr := parseHeadersByLine(b, &want, request)
		if gerr != werr {
			t.Fatalf("%q: error %v, the line-by-line parser says %v", b, gerr, werr)
		}
		if gerr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: parsed\n%+v\nthe line-by-line parser\n%+v", b, got, want)
		}
	})
}

var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n",
	"HTTP/1.0 204\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
	"HTTP/1.1 099 Low\r\n\r\n",
	"HTTP/1.2 200 OK\r\n\r\n",
	"HTTP/1.1 2000 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
	"ICY 200 OK\r\n\r\n",
}

// FuzzParseResponseHead feeds upstream response heads to ParseResponse: any failure is a
// *Error that answers 502 (a bad upstream is the upstream's fault, never the client's),
// and what it accepts has a status line and fields a proxy can forward.
func FuzzParseResponseHead(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n := HeadEnd(b, 0)
		if n < 0 {
			return
		}
		var h Head
		h.Reset()
		if err := ParseResponse(b[:n], &h); err != nil {
			if pe, ok := err.(*Error); !ok || pe.Status != 502 {
				t.Fatalf("%q: error %v, want a 502 Error", b[:n], err)
			}
			return
		}
		if h.Status < 100 || h.Status > 999 || (h.Minor != 0 && h.Minor != 1) {
			t.Fatalf("%q: accepted status %d, minor %d", b[:n], h.Status, h.Minor)
		}
		if h.Chunked && h.ContentLength >= 0 {
			t.Fatalf("accepted both framings: %q", b[:n])
		}
		for _, hd := range h.Fields {
			if !IsToken(hd.Name) || bytes.ContainsAny(hd.Value, "\r\n\x00\x7f") {
				t.Fatalf("accepted a bad field %q: %q", hd.Name, hd.Value)
			}
		}
	})
}

// FuzzChunkScanner feeds a chunked body to the scanner whole and then in two pieces split at
// every point the fuzzer picks: both must consume the same bytes, find the same end, decode the
// same data and refuse the same input, and neither may consume more than it was given.
func FuzzChunkScanner(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"10;x=y\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\nNEXT",
		"5\r\nhel",
		"g\r\n",
		"5\nhello\r\n0\r\n\r\n",
		"5\r\nhelloXX0\r\n\r\n",
		"ffffffffffffffff\r\n",
		"0\r\nT: 1\n\r\n",
	} {
		f.Add([]byte(s), uint16(3))
	}
	f.Fuzz(func(t *testing.T, body []byte, split uint16) {
		whole := scanAll(t, body, len(body))
		pieces := scanAll(t, body, int(split)%(len(body)+1))
		if whole != pieces {
			t.Fatalf("%q: whole %+v, split at %d %+v", body, whole, split, pieces)
		}
	})
}

type scanResult struct {
	consumed int
	done     bool
	failed   bool
	data     string
}

// scanAll scans body as a reader would see it: the first split bytes, then the rest appended
// to what the scanner left unconsumed.
func scanAll(t *testing.T, body []byte, split int) scanResult {
	var c ChunkScanner
	var r scanResult
	var out []byte
	buf := append([]byte(nil), body[:split]...)
	rest := body[split:]
	for {
		n, o, err := c.Scan(buf, ChunkDecode, out)
		if n < 0 || n > len(buf) {
			t.Fatalf("consumed %d of %d bytes", n, len(buf))
		}
		out, r.consumed, buf = o, r.consumed+n, buf[n:]
		if err != nil {
			if err != ErrBadChunk {
				t.Fatalf("error %v, want ErrBadChunk", err)
			}
			r.failed = true
			break
		}
		if c.Done() || len(rest) == 0 {
			break
		}
		buf, rest = append(buf, rest...), nil
	}
	r.done, r.data = c.Done(), string(out)
	return r
}

// BenchmarkParseHeaders parses the fields of a typical response head (nginx's) and a browser's
// request head, with ParseFields and with the line-by-line parser it replaced.
func BenchmarkParseHeaders(b *testing.B) {
	heads := map[string]string{
		"response": "Server: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 03:00:00 GMT\r\nContent-Type: application/octet-stream\r\n" +
			"Content-Length: 6\r\nConnection: keep-alive\r\n\r\n",
		"request": "Host: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0\r\n" +
			"Accept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n" +
			"Connection: keep-alive\r\nCookie: session=abc; theme=dark\r\nCache-Control: max-age=0\r\n\r\n",
	}
	parsers := []struct {
		name  string
		parse func([]byte, *Head, bool) error
	}{{"onepass", ParseFields}, {"bylines", parseHeadersByLine}}
	for _, kind := range []string{"response", "request"} {
		raw := []byte(heads[kind])
		for _, p := range parsers {
			b.Run(kind+"/"+p.name, func(b *testing.B) {
				var h Head
				b.ReportAllocs()
				b.SetBytes(int64(len(raw)))
				for b.Loop() {
					h.Reset()
					if err := p.parse(raw, &h, kind == "request"); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
