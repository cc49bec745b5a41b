package probe

import (
	"bufio"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// lineEcho is a real line-protocol peer: it greets, then answers each line
// "PING" with "+PONG" and "QUIT" by closing.
func lineEcho(c net.Conn, done <-chan struct{}) {
	c.Write([]byte("220 hello\r\n"))
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		switch strings.TrimSpace(line) {
		case "PING":
			c.Write([]byte("+PONG\r\n"))
		case "BIN":
			c.Write([]byte{0x00, 0x01, 0xfe, 0xff})
		case "QUIT":
			return
		}
	}
}

func TestTCPSequence(t *testing.T) {
	echo := serveConns(t, lineEcho)
	sub := func(s string) Step { return Step{Expect: []byte(s)} }
	send := func(s string) Step { return Step{Send: []byte(s)} }
	tests := []struct {
		name       string
		addr       string
		seq        []Step
		max        int64
		want       Reason
		wantDetail string
	}{
		{"connect only", echo, nil, 0, OK, ""},
		{"banner then ping", echo, []Step{sub("220"), send("PING\r\n"), sub("+PONG"), send("QUIT\r\n")}, 0, OK, ""},
		{"exact", echo, []Step{{Expect: []byte("220 hello\r\n"), Match: MatchExact}}, 0, OK, ""},
		{"exact mismatch", echo, []Step{{Expect: []byte("221"), Match: MatchExact}}, 0, Unexpected, `step 1: got "220 hello`},
		{"regex", echo, []Step{sub("\n"), send("PING\r\n"), {Regexp: regexp.MustCompile(`^\+P[O]NG`), Match: MatchRegexp}}, 0, OK, ""},
		{"binary", echo, []Step{sub("\n"), send("BIN\n"), {Expect: []byte{0x00, 0x01, 0xfe, 0xff}, Match: MatchExact}}, 0, OK, ""},
		{"substring never comes, peer silent", echo, []Step{sub("ready")}, 0, Unexpected, `step 1: got "220 hello\r\n", want "ready"`},
		{"refused", closedPort(t), []Step{sub("x")}, 0, ConnectRefused, ""},
		{"peer closes at once", serveConns(t, func(c net.Conn, _ <-chan struct{}) {}), []Step{sub("220")}, 0, EarlyClose, "step 1"},
		{"stall", serveConns(t, stall), []Step{sub("220")}, 0, Timeout, "step 1"},
		{"oversized", serveConns(t, func(c net.Conn, done <-chan struct{}) { writeForever(c, done, "xxxxxxxx") }), []Step{sub("220")}, 100, TooLarge, "step 1"},
		{"half reply then close", serveConns(t, replyWith("+PO")), []Step{sub("+PONG")}, 0, Unexpected, `got "+PO"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewTCPSequence(TCPOptions{Sequence: tt.seq, MaxResponse: tt.max})
			got := probeCtx(t, p, tt.addr, 500*time.Millisecond)
			checkResult(t, got, tt.want, 0, tt.wantDetail)
			if tt.max > 0 && int64(got.Bytes) > tt.max {
				t.Errorf("read %d bytes, max %d", got.Bytes, tt.max)
			}
		})
	}
}

func TestMatchStep(t *testing.T) {
	tests := []struct {
		st          Step
		buf         string
		final       bool
		ok, decided bool
		used        int
	}{
		{Step{Expect: []byte("abc"), Match: MatchExact}, "ab", false, false, false, 0}, // needs more
		{Step{Expect: []byte("abc"), Match: MatchExact}, "ab", true, false, true, 0},   // no more will come
		{Step{Expect: []byte("abc"), Match: MatchExact}, "ax", false, false, true, 0},  // diverged early
		{Step{Expect: []byte("abc"), Match: MatchExact}, "abcd", false, true, true, 3}, // rest carries over
		{Step{Expect: []byte("bc")}, "abcd", false, true, true, 3},                     // substring consumes to its end
		{Step{Expect: []byte("zz")}, "abcd", false, false, false, 0},                   // may still come
		{Step{Regexp: regexp.MustCompile(`c+`), Match: MatchRegexp}, "abccd", false, true, true, 4},
		{Step{Match: MatchRegexp}, "abc", false, false, true, 0}, // no regexp never matches
	}
	for i, tt := range tests {
		ok, used, decided := MatchStep(tt.st, []byte(tt.buf), tt.final)
		if ok != tt.ok || used != tt.used || decided != tt.decided {
			t.Errorf("%d: MatchStep(%q, final %v) = %v, %d, %v; want %v, %d, %v", i, tt.buf, tt.final, ok, used, decided, tt.ok, tt.used, tt.decided)
		}
	}
}
