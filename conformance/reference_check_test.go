package conformance

import (
	"strings"
	"testing"
)

// The reference reader gives RFC 9112's reading of each request, or none where the RFC leaves
// two; these pin the readings the conformance verdicts rest on.
func TestReferenceReader(t *testing.T) {
	const smuggled = "GET /SMUGGLED HTTP/1.1\r\nHost: t\r\n\r\n"
	for _, tc := range []struct {
		name, in string
		n        int    // messages read
		body     string // body of the first, when it has a clear framing
		complete bool   // the first is complete
		unclear  bool   // the first has no single framing
		invalid  string // a reason the first must carry ("" for none required)
	}{
		{"plain", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", 1, "", true, false, ""},
		{"pipelined", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n", 2, "", true, false, ""},
		{"length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 1, "hello", true, false, ""},
		{"length short", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9\r\n\r\nhello", 1, "hello", false, false, ""},
		{"chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;x=\"y\"\r\nhello\r\n0\r\nT: v\r\n\r\n", 1, "hello", true, false, ""},
		{"chunked after gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 1, "", true, false, ""},
		{"cl.te closes", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, 1, "", true, false, ""},
		{"hop-by-hop content-length", "POST /hop HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\nContent-Length: 35\r\n\r\n" + smuggled, 1, smuggled, true, false, ""},
		{"repeated equal lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 1, "hello", true, false, ""},
		{"differing lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 1, "", false, true, "Content-Length values differ"},
		{"signed length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 1, "", false, true, "Content-Length is not 1*DIGIT"},
		{"xchunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", 1, "", false, true, "chunked is not the final transfer coding"},
		{"chunked identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", 1, "", false, true, ""},
		{"te ows", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\t chunked \r\n\r\n0\r\n\r\n", 1, "", true, false, ""},
		{"te vtab", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \vchunked\r\n\r\n0\r\n\r\n", 1, "", false, true, ""},
		{"te in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1, "", false, true, ""},
		{"te twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 1, "", false, true, "chunked applied more than once"},
		{"obs-fold te", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n", 1, "", false, true, "obs-fold"},
		{"obs-fold ordinary", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 1, "", true, false, "obs-fold"},
		{"space before colon", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\nhello", 1, "", false, true, ""},
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", 1, "", true, false, ""},
		{"bare CR", "GET / HTTP/1.1\r\nHost: a\r\nX: a\rContent-Length: 5\r\n\r\nhello", 1, "", false, true, "bare CR in a field line"},
		{"chunk size space", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n", 1, "", false, true, ""},
		{"chunk size 0x", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 1, "", false, true, ""},
		{"chunk size huge", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nhello\r\n0\r\n\r\n", 1, "", false, true, ""},
		{"chunk size zeros", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0000000000000000005\r\nhello\r\n0\r\n\r\n", 1, "hello", true, false, ""},
		{"trailer no colon", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n" + smuggled, 1, "", false, true, "trailer line that is not a field"},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 1, "", true, false, "HTTP/1.1 request without Host"},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 1, "", true, false, "more than one Host"},
		{"http/0.9", "GET /\r\n", 1, "", false, true, ""},
		{"1.0 closes", "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\n\r\n", 1, "", true, false, ""},
		{"leading CRLF", "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 1, "", true, false, ""},
		{"incomplete head", "GET / HTTP/1.1\r\nHost: a\r\n", 1, "", false, false, ""},
		{"trailing blank line", "GET / HTTP/1.1\r\nHost: a\r\n\r\n\r\n", 1, "", true, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := readMessages([]byte(tc.in))
			if len(msgs) != tc.n {
				t.Fatalf("read %d messages, want %d: %+v", len(msgs), tc.n, msgs)
			}
			m := msgs[0]
			if (m.unclear != "") != tc.unclear {
				t.Errorf("unclear = %q, want unclear %v", m.unclear, tc.unclear)
			}
			if m.complete != tc.complete {
				t.Errorf("complete = %v, want %v (unclear %q)", m.complete, tc.complete, m.unclear)
			}
			if !tc.unclear && string(m.body) != tc.body {
				t.Errorf("body %q, want %q", m.body, tc.body)
			}
			if tc.invalid != "" && !strings.Contains(strings.Join(m.invalid, "|"), tc.invalid) {
				t.Errorf("invalid %q, want it to hold %q", m.invalid, tc.invalid)
			}
		})
	}
}
