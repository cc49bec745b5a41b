package probe

import (
	"bytes"
	"io"
	"testing"
	"testing/iotest"
)

// FuzzParseResponse feeds arbitrary bytes to ParseResponse under an arbitrary
// limit. It asserts that the parser never panics, never reads more than
// max+4096 bytes (the promise; the implementation reads at most max+1), and
// only succeeds with a real status code and a body within the limit.
func FuzzParseResponse(f *testing.F) {
	seeds := []struct {
		in  string
		max uint16
	}{
		// Valid: every framing.
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 0},                                                                     // Content-Length
		{"HTTP/1.0 200 OK\r\n\r\nuntil close", 0},                                                                                    // close-delimited
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: v\r\n\r\n", 0},                              // chunked + trailer
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", 0},                                                          // interim then bodiless
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", 0},                                                                // bodiless with length
		{"HTTP/1.1 200\nContent-Length: 2\n\nok", 0},                                                                                 // bare LF, no reason
		{"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nok", 0},                                                                     // length list
		{"HTTP/1.1 200 OK\r\n\r\n" + string(bytes.Repeat([]byte("b"), 100)), 119},                                                    // exactly max
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + string(bytes.Repeat([]byte("1\r\nx\r\n"), 20)) + "0\r\n\r\n", 64}, // many chunks
		// Too large.
		{"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", 100},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n", 100},
		// Broken: status line, headers, lengths, chunks, truncation.
		{"", 0},
		{"SSH-2.0-OpenSSH_9.6\r\n", 0},
		{"HTTP/1.1 999 Nope\r\n\r\n", 0},
		{"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", 0}, // obs-fold
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok", 0},          // conflicting lengths
		{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nok", 0}, // CL + TE
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", 0},                                // negative
		{"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", 0},              // overflow
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n", 0},   // chunk overflow
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n0\r\n\r\n", 0},    // chunk too long
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab", 0},                 // truncated chunk
		{"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhalf", 0},                            // truncated body
		{"HTTP/1.1 100 Continue\r\n\r\n", 0},                                                // only interim
	}
	for _, s := range seeds {
		f.Add([]byte(s.in), s.max, false)
	}
	f.Add([]byte(seeds[2].in), uint16(0), true) // one byte per Read

	f.Fuzz(func(t *testing.T, in []byte, max16 uint16, oneByte bool) {
		max := int64(max16)
		if max == 0 {
			max = DefaultMaxResponse
		}
		r := &countingReader{r: bytes.NewReader(in)}
		var rd io.Reader = r
		if oneByte {
			rd = iotest.OneByteReader(r)
		}
		status, body, n, err := ParseResponse(rd, int64(max16))
		if n > max+4096 || n != r.n {
			t.Fatalf("n = %d, reader gave %d, max %d", n, r.n, max)
		}
		if err != nil {
			if body != nil {
				t.Fatalf("body %q with error %v", body, err)
			}
			return
		}
		if status < 100 || status > 599 {
			t.Fatalf("status %d without error", status)
		}
		if int64(len(body)) > max || n < int64(len(body)) {
			t.Fatalf("body %d bytes, n %d, max %d", len(body), n, max)
		}
	})
}
