package h1

import "testing"

// The three rules the proxy and the health-check probe used to read differently, decided once
// here by RFC 9112/9110 (issue 14): the proxy is strict, the probe takes what RFC 9110 allows
// a recipient to take, through an explicit switch (ContentLength's list) or its own line rule.
func TestRulesTheProxyAndTheProbeShare(t *testing.T) {
	// Content-Length: 5, 5 — refused by the proxy, one value for the probe (RFC 9110 8.6).
	if _, ok := ContentLength([]byte("5, 5"), false); ok {
		t.Error(`Content-Length "5, 5" taken without the list switch`)
	}
	if n, ok := ContentLength([]byte("5, 5"), true); !ok || n != 5 {
		t.Errorf(`Content-Length "5, 5" with the list switch: %d, %v; want 5`, n, ok)
	}
	if _, ok := ContentLength([]byte("5, 6"), true); ok {
		t.Error(`Content-Length "5, 6" taken`)
	}
	var h Head
	if err := ParseRequest([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n"), &h); err != ErrBadCL {
		t.Errorf("a request with Content-Length 5, 5: %v, want ErrBadCL", err)
	}
	// Status codes above 599 are invalid (RFC 9110 section 15), for both.
	for line, ok := range map[string]bool{"HTTP/1.1 599 X": true, "HTTP/1.1 600 X": false, "HTTP/1.1 099 X": false, "HTTP/1.0 200": true} {
		if _, _, _, got := ParseStatusLine([]byte(line)); got != ok {
			t.Errorf("status line %q: %v, want %v", line, got, ok)
		}
	}
	if err := ParseResponse([]byte("HTTP/1.1 700 Odd\r\nContent-Length: 0\r\n\r\n"), &h); err != ErrBadStatusLine {
		t.Errorf("a response with status 700: %v, want ErrBadStatusLine", err)
	}
	// A chunk-size line: the same rule; a bare LF ending is refused by the proxy's scanner (it
	// needs CRLF) and left to the caller by ChunkSizeLine (the probe takes it).
	if _, ok := parseChunkSize([]byte("5\n")); ok {
		t.Error("the proxy's chunk scanner took a size line ending in a bare LF")
	}
	if n, ok := ChunkSizeLine([]byte("5")); !ok || n != 5 {
		t.Errorf("ChunkSizeLine(5) = %d, %v", n, ok)
	}
	for _, bad := range []string{"5 ", "0x5", "+5", "ffffffffffffffff"} {
		if _, ok := ChunkSizeLine([]byte(bad)); ok {
			t.Errorf("ChunkSizeLine(%q) taken", bad)
		}
	}
}
