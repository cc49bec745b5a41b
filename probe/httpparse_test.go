package probe

import (
	"errors"
	"io"
	"strings"
	"syscall"
	"testing"
	"testing/iotest"
)

func TestParseResponse(t *testing.T) {
	const max = 256
	tests := []struct {
		name       string
		in         string
		wantErr    error // nil, ErrTooLarge, ErrMalformed, ErrEarlyClose
		wantStatus int
		wantBody   string
	}{
		// Valid framings.
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", nil, 200, "hello"},
		{"content-length zero", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", nil, 200, ""},
		{"content-length list of equal values", "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok", nil, 200, "ok"},
		{"trailing bytes ignored", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", nil, 200, "ok"},
		{"close-delimited", "HTTP/1.0 200 OK\r\n\r\nuntil close", nil, 200, "until close"},
		{"close-delimited empty", "HTTP/1.1 200 OK\r\n\r\n", nil, 200, ""},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=\"v\"\r\n!\r\n0\r\n\r\n", nil, 200, "hello!"},
		{"chunked upper hex and trailers", "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\nX-B: 2\r\n\r\n", nil, 200, "0123456789"},
		{"chunked ext after space", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 ;x\r\nab\r\n0\r\n\r\n", nil, 200, "ab"},
		{"bare LF line endings", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", nil, 200, "ok"},
		{"no reason phrase", "HTTP/1.1 200\r\nContent-Length: 2\r\n\r\nok", nil, 200, "ok"},
		{"empty reason phrase", "HTTP/1.1 200 \r\nContent-Length: 2\r\n\r\nok", nil, 200, "ok"},
		{"100 continue skipped", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx", nil, 201, "x"},
		{"several interim responses", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", nil, 200, ""},
		{"101 is final", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nnot http", nil, 101, ""},
		{"204 has no body", "HTTP/1.1 204 No Content\r\nContent-Length: 3\r\n\r\n", nil, 204, ""},
		{"304 has no body", "HTTP/1.1 304 Not Modified\r\nContent-Length: 3\r\n\r\n", nil, 304, ""},
		{"header value with obs-text and tab", "HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\tb\r\nContent-Length: 0\r\n\r\n", nil, 200, ""},
		{"exactly max bytes", "HTTP/1.1 200 OK\r\n\r\n" + strings.Repeat("b", max-19), nil, 200, strings.Repeat("b", max-19)},

		// Size limit.
		{"one byte over max, close-delimited", "HTTP/1.1 200 OK\r\n\r\n" + strings.Repeat("b", max-18), ErrTooLarge, 200, ""},
		{"content-length over max", "HTTP/1.1 200 OK\r\nContent-Length: 300\r\n\r\n", ErrTooLarge, 200, ""},
		{"chunk over max", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfff\r\n", ErrTooLarge, 200, ""},
		{"chunk framing over max", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1\r\nx\r\n", 60), ErrTooLarge, 200, ""},
		{"status line over max", "HTTP/1.1 200 " + strings.Repeat("r", 300), ErrTooLarge, 0, ""},
		{"headers over max", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-A: b\r\n", 40), ErrTooLarge, 200, ""},
		{"huge chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n", ErrTooLarge, 200, ""},

		// Early close.
		{"empty", "", ErrEarlyClose, 0, ""},
		{"partial status line", "HTTP/1.1 20", ErrEarlyClose, 0, ""},
		{"partial headers", "HTTP/1.1 200 OK\r\nContent-Len", ErrEarlyClose, 200, ""},
		{"short content-length body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", ErrEarlyClose, 200, ""},
		{"chunked without last chunk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", ErrEarlyClose, 200, ""},
		{"chunked short data", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab", ErrEarlyClose, 200, ""},
		{"chunked without final CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n", ErrEarlyClose, 200, ""},
		{"only interim", "HTTP/1.1 100 Continue\r\n\r\n", ErrEarlyClose, 0, ""},

		// Malformed status line.
		{"garbage", "hello world\r\n\r\n", ErrMalformed, 0, ""},
		{"http/2", "HTTP/2 200 OK\r\n\r\n", ErrMalformed, 0, ""},
		{"http/1.x letter", "HTTP/1.x 200 OK\r\n\r\n", ErrMalformed, 0, ""},
		{"lower case version", "http/1.1 200 OK\r\n\r\n", ErrMalformed, 0, ""},
		{"two spaces", "HTTP/1.1  200 OK\r\n\r\n", ErrMalformed, 0, ""},
		{"two-digit status", "HTTP/1.1 20 OK\r\n\r\n", ErrMalformed, 0, ""},
		{"four-digit status", "HTTP/1.1 2000 OK\r\n\r\n", ErrMalformed, 0, ""},
		{"status 600", "HTTP/1.1 600 OK\r\n\r\n", ErrMalformed, 0, ""},
		{"status 099", "HTTP/1.1 099 OK\r\n\r\n", ErrMalformed, 0, ""},
		{"control char in reason", "HTTP/1.1 200 O\x00K\r\n\r\n", ErrMalformed, 0, ""},
		{"bare CR in status line", "HTTP/1.1 200 OK\rX\r\n\r\n", ErrMalformed, 0, ""},
		{"bad status in interim position", "HTTP/1.1 100 Continue\r\n\r\nBOGUS\r\n\r\n", ErrMalformed, 0, ""},

		// Malformed headers.
		{"header without colon", "HTTP/1.1 200 OK\r\nNoColon\r\n\r\n", ErrMalformed, 200, ""},
		{"empty header name", "HTTP/1.1 200 OK\r\n: v\r\n\r\n", ErrMalformed, 200, ""},
		{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok", ErrMalformed, 200, ""},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n", ErrMalformed, 200, ""},
		{"obs-fold with tab", "HTTP/1.1 200 OK\r\nX-A: b\r\n\tc\r\n\r\n", ErrMalformed, 200, ""},
		{"NUL in header value", "HTTP/1.1 200 OK\r\nX-A: b\x00c\r\n\r\n", ErrMalformed, 200, ""},
		{"bare CR in header value", "HTTP/1.1 200 OK\r\nX-A: b\rc\r\n\r\n", ErrMalformed, 200, ""},
		{"duplicate differing content-length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", ErrMalformed, 200, ""},
		{"differing content-length list", "HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok", ErrMalformed, 200, ""},
		{"empty content-length", "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n", ErrMalformed, 200, ""},
		{"negative content-length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", ErrMalformed, 200, ""},
		{"plus content-length", "HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", ErrMalformed, 200, ""},
		{"hex content-length", "HTTP/1.1 200 OK\r\nContent-Length: 0x2\r\n\r\nok", ErrMalformed, 200, ""},
		{"overflowing content-length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n", ErrMalformed, 200, ""},
		{"content-length with transfer-encoding", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", ErrMalformed, 200, ""},
		{"transfer-encoding with content-length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n0\r\n\r\n", ErrMalformed, 200, ""},
		{"unsupported transfer coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", ErrMalformed, 200, ""},
		{"chunked not last", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", ErrMalformed, 200, ""},
		{"chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", ErrMalformed, 200, ""},
		{"empty transfer-encoding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n", ErrMalformed, 200, ""},

		// Malformed chunks.
		{"chunk size not hex", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", ErrMalformed, 200, ""},
		{"chunk size empty", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n", ErrMalformed, 200, ""},
		{"chunk size negative", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", ErrMalformed, 200, ""},
		{"chunk size leading space", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n 1\r\nx\r\n0\r\n\r\n", ErrMalformed, 200, ""},
		{"chunk size trailing junk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1x\r\nx\r\n0\r\n\r\n", ErrMalformed, 200, ""},
		{"chunk size overflow", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", ErrMalformed, 200, ""},
		{"chunk data too long", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n", ErrMalformed, 200, ""},
		{"bad trailer", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n", ErrMalformed, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One byte per Read exercises every buffer boundary.
			for _, r := range []io.Reader{strings.NewReader(tt.in), iotest.OneByteReader(strings.NewReader(tt.in))} {
				status, body, n, err := ParseResponse(r, max)
				if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if status != tt.wantStatus || string(body) != tt.wantBody {
					t.Errorf("status %d body %q, want %d %q", status, body, tt.wantStatus, tt.wantBody)
				}
				if n > max+1 || n > int64(len(tt.in)) {
					t.Errorf("n = %d, input %d bytes, max %d", n, len(tt.in), max)
				}
			}
		})
	}
}

// TestParseResponseReadsAtMostMaxPlusOne pins the memory and I/O bound
// against an endless peer.
func TestParseResponseReadsAtMostMaxPlusOne(t *testing.T) {
	for _, head := range []string{
		"HTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n",
		"HTTP/1.1 200 OK\r\nX-Long: ",
		"HTTP/1.1 200 ",
	} {
		for _, max := range []int64{1, 100, 4095, 4096, 4097, 10000} {
			r := &countingReader{r: io.MultiReader(strings.NewReader(head), endless{})}
			_, _, n, err := ParseResponse(r, max)
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("%q max %d: err = %v, want ErrTooLarge", head, max, err)
			}
			if n != r.n || n > max+1 {
				t.Errorf("%q max %d: n = %d, reader gave %d", head, max, n, r.n)
			}
		}
	}
}

// TestParseResponseReadErrors checks that a transport error stays visible
// behind ErrEarlyClose.
func TestParseResponseReadErrors(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"
	r := io.MultiReader(strings.NewReader(in), iotest.ErrReader(syscall.ECONNRESET))
	status, _, n, err := ParseResponse(r, 0)
	if !errors.Is(err, ErrEarlyClose) || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("err = %v, want ErrEarlyClose wrapping ECONNRESET", err)
	}
	if status != 200 || n != int64(len(in)) {
		t.Errorf("status %d n %d", status, n)
	}
	// A close-delimited body ended by a reset is incomplete, not complete.
	r = io.MultiReader(strings.NewReader("HTTP/1.0 200 OK\r\n\r\nab"), iotest.ErrReader(syscall.ECONNRESET))
	if _, _, _, err := ParseResponse(r, 0); !errors.Is(err, ErrEarlyClose) {
		t.Errorf("close-delimited + reset: err = %v", err)
	}
	// A reader that returns data together with io.EOF.
	r = iotest.DataErrReader(strings.NewReader("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	if _, body, _, err := ParseResponse(r, 0); err != nil || string(body) != "ok" {
		t.Errorf("data+EOF reader: body %q err %v", body, err)
	}
}

func TestParseResponseHead(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
	status, body, _, err := parseResponse(strings.NewReader(in), 0, true)
	if err != nil || status != 200 || len(body) != 0 {
		t.Errorf("status %d body %q err %v", status, body, err)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// The probe's side of the rules it shares with the proxy (internal/h1): it takes a
// Content-Length list of one value and chunk lines ending in a bare LF, which RFC 9110/9112 let
// a recipient take and the proxy refuses; it refuses a status above 599, as the proxy does.
func TestProbeLeniencyIsTheDocumentedOne(t *testing.T) {
	for raw, want := range map[string]int{
		"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok":                          200,
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\nok\n0\n\n":          200,
		"HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n":                              0,
		"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok":                          0,
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2 \r\nok\r\n0\r\n\r\n": 0,
	} {
		status, _, _, err := ParseResponse(strings.NewReader(raw), 0)
		if want == 0 {
			if err == nil {
				t.Errorf("%q: accepted (status %d), want refused", raw, status)
			}
			continue
		}
		if err != nil || status != want {
			t.Errorf("%q: %d, %v; want %d", raw, status, err, want)
		}
	}
}
