package probe

import (
	"bufio"
	"bytes"
	"regexp"
	"testing"
)

// fuzzSession is a session reading in under a budget of max bytes (no
// connection: the parsers under test only read).
func fuzzSession(in []byte, max int64) *session {
	if max <= 0 {
		max = DefaultMaxResponse
	}
	lim := &budgetReader{r: bytes.NewReader(in), left: max}
	return &session{lim: lim, r: bufio.NewReaderSize(lim, 512), max: max}
}

// checkBudget fails if the parser read more than its budget.
func checkBudget(t *testing.T, s *session) {
	t.Helper()
	if int64(s.read()) > s.max {
		t.Fatalf("read %d bytes, budget %d", s.read(), s.max)
	}
}

// FuzzMatchStep: the tcp sequence matcher never panics, never consumes more
// than it was given, and always decides when told no more bytes will come.
func FuzzMatchStep(f *testing.F) {
	f.Add([]byte("220 hello\r\n"), []byte("220"), uint8(0), false)    // substring found
	f.Add([]byte("22"), []byte("220"), uint8(1), false)               // exact, needs more
	f.Add([]byte("22"), []byte("220"), uint8(1), true)                // exact, no more will come
	f.Add([]byte("\x00\x01\xfe"), []byte("\x00\x01"), uint8(1), true) // binary exact
	f.Add([]byte("+PONG\r\n"), []byte(`^\+P.NG`), uint8(2), false)    // regex
	f.Add([]byte(""), []byte(""), uint8(0), true)                     // empty expectation
	f.Fuzz(func(t *testing.T, buf, expect []byte, mode uint8, final bool) {
		st := Step{Expect: expect, Match: Match(mode % 3)}
		if st.Match == MatchRegexp {
			re, err := regexp.Compile(string(expect))
			if err != nil {
				return
			}
			st.Regexp = re
		}
		ok, used, decided := MatchStep(st, buf, final)
		if used < 0 || used > len(buf) || (!ok && used != 0) {
			t.Fatalf("used %d of %d (ok %v)", used, len(buf), ok)
		}
		if final && !decided {
			t.Fatal("undecided with final set")
		}
		if ok && !decided {
			t.Fatal("ok but undecided")
		}
	})
}

// FuzzRESP: the redis reply parser stays within its budget and never panics.
func FuzzRESP(f *testing.F) {
	f.Add([]byte("+PONG\r\n"), uint16(0))                            // simple string
	f.Add([]byte("-NOAUTH Authentication required.\r\n"), uint16(0)) // error
	f.Add([]byte("*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"), uint16(0))   // ROLE reply
	f.Add([]byte("$-1\r\n"), uint16(0))                              // null bulk
	f.Add([]byte("$99999999999\r\nxx"), uint16(64))                  // lying bulk length
	f.Add([]byte("*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*0\r\n"), uint16(0)) // too deep
	f.Add([]byte("+PONG\n"), uint16(0))                              // bare LF
	f.Fuzz(func(t *testing.T, in []byte, max uint16) {
		s := fuzzSession(in, int64(max))
		v, err := readRESP(s.r, 0)
		checkBudget(t, s)
		if err == nil && v.kind == '$' && !v.null && int64(len(v.str)) > s.max {
			t.Fatalf("bulk of %d bytes from a budget of %d", len(v.str), s.max)
		}
	})
}

// FuzzMySQLHandshake: packet framing and the handshake parser.
func FuzzMySQLHandshake(f *testing.F) {
	f.Add([]byte(myPacket(0, myHandshake())), uint16(0))                      // MariaDB handshake
	f.Add([]byte(myPacket(0, "\xff\x10\x04Too many connections")), uint16(0)) // error packet
	f.Add([]byte(myPacket(0, "\x0a5.7\x00\x01")), uint16(0))                  // truncated
	f.Add([]byte("\xff\xff\xff\x00"), uint16(100))                            // huge length
	f.Add([]byte("SSH-2.0-OpenSSH\r\n"), uint16(0))                           // not MySQL
	f.Fuzz(func(t *testing.T, in []byte, max uint16) {
		s := fuzzSession(in, int64(max))
		payload, _, err := readMySQLPacket(s, 0)
		checkBudget(t, s)
		if err != nil {
			return
		}
		ParseMySQLHandshake(payload)
		if len(payload) > 0 && payload[0] == 0xff {
			if e := parseMySQLError(payload); len(e.Message) > 100 {
				t.Fatalf("message of %d bytes", len(e.Message))
			}
		}
	})
}

// FuzzPostgresMessages: startup-phase messages and ErrorResponse fields.
func FuzzPostgresMessages(f *testing.F) {
	f.Add([]byte(pgMsg('R', "\x00\x00\x00\x0a")+"SCRAM-SHA-256\x00\x00"), uint16(0))                    // SASL request
	f.Add([]byte(pgMsg('E', "SFATAL\x00C28P01\x00Mpassword authentication failed\x00\x00")), uint16(0)) // error
	f.Add([]byte(pgMsg('R', "\x00\x00\x00\x00")+pgMsg('Z', "I")), uint16(0))                            // trust
	f.Add([]byte("R\x7f\xff\xff\xff"), uint16(100))                                                     // huge length
	f.Add([]byte("R\x00\x00\x00\x02"), uint16(0))                                                       // length below 4
	f.Add([]byte(pgMsg('E', "Sunterminated")), uint16(0))                                               // field without NUL
	f.Fuzz(func(t *testing.T, in []byte, max uint16) {
		s := fuzzSession(in, int64(max))
		for range 8 {
			typ, payload, err := readPGMessage(s)
			checkBudget(t, s)
			if err != nil {
				return
			}
			if typ == 'E' {
				e := ParsePGError(payload)
				if len(e.Message) > 100 {
					t.Fatalf("message of %d bytes", len(e.Message))
				}
			}
		}
	})
}

// FuzzSMTPReply: multi-line replies under a budget.
func FuzzSMTPReply(f *testing.F) {
	f.Add([]byte("220 mail.test ESMTP\r\n"), uint16(0))               // banner
	f.Add([]byte("250-a\r\n250-b\r\n250 c\r\n"), uint16(0))           // multi-line
	f.Add([]byte("220-a\r\n250 b\r\n"), uint16(0))                    // code changes
	f.Add([]byte("220"), uint16(0))                                   // no line end
	f.Add([]byte("220-more\r\n220-more\r\n220-more\r\n"), uint16(24)) // over budget
	f.Add([]byte("2x0 nope\r\n"), uint16(0))                          // not a code
	f.Fuzz(func(t *testing.T, in []byte, max uint16) {
		s := fuzzSession(in, int64(max))
		code, _, err := readSMTPReply(s)
		checkBudget(t, s)
		if err == nil && (code < 200 || code > 599) {
			t.Fatalf("code %d without error", code)
		}
	})
}

// FuzzFastCGI: record framing and the CGI response split.
func FuzzFastCGI(f *testing.F) {
	f.Add([]byte(fcgiReply([2]string{"\x06", "Content-type: text/plain\r\n\r\npong"}, [2]string{"\x03", "\x00\x00\x00\x00\x00\x00\x00\x00"})), uint16(0)) // pong
	f.Add([]byte(fcgiReply([2]string{"\x07", "Primary script unknown"}, [2]string{"\x06", "Status: 404\n\n"}, [2]string{"\x03", "\x00\x00\x00\x00\x00\x00\x00\x00"})), uint16(0))
	f.Add([]byte(fcgiReply([2]string{"\x03", "\x00\x00\x00\x00\x02\x00\x00\x00"})), uint16(0)) // overloaded
	f.Add([]byte("\x01\x06\x00\x01\xff\xff\xff\x00"), uint16(200))                             // record bigger than the budget
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\n"), uint16(0))                                        // not FastCGI
	f.Fuzz(func(t *testing.T, in []byte, max uint16) {
		s := fuzzSession(in, int64(max))
		stdout, _, err := readFastCGI(s)
		checkBudget(t, s)
		if err != nil {
			return
		}
		if int64(len(stdout)) > s.max {
			t.Fatalf("stdout %d bytes, budget %d", len(stdout), s.max)
		}
		status, body, err := ParseCGIResponse(stdout)
		if err == nil && (status < 100 || status > 599 || len(body) > len(stdout)) {
			t.Fatalf("status %d, body %d of %d", status, len(body), len(stdout))
		}
	})
}

// FuzzAgentLine: the agent line parser, and that a parsed reply formats to
// a line that parses back to the same reply.
func FuzzAgentLine(f *testing.F) {
	for _, s := range []string{
		"up 75%",                       // weight
		"drain",                        // admin state
		"down#disk full",               // state with a reason
		"ready,50%,maxconn:30",         // commas
		"up 900%",                      // weight out of range
		"",                             // empty
		"stopped # maintenance window", // spaces around the reason
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseAgentLine(line)
		if err != nil {
			return
		}
		if r.Weight > 256 || len(r.Why) > 80 {
			t.Fatalf("reply %+v out of range", r)
		}
		again, err := ParseAgentLine([]byte(r.String()))
		if err != nil || again != r {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", line, r, r.String(), again, err)
		}
	})
}

// FuzzGRPCHealth: the hand-written protobuf decoding of the health reply.
func FuzzGRPCHealth(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 2, 0x08, 0x01})                                                        // SERVING
	f.Add([]byte{0, 0, 0, 0, 5, 0x12, 0x01, 'x', 0x08, 0x02})                                       // unknown field, NOT_SERVING
	f.Add([]byte{0, 0, 0, 0, 3, 0x12, 0x7f, 0x00})                                                  // length past the end
	f.Add([]byte{0, 0, 0, 0, 11, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}) // huge varint
	f.Fuzz(func(t *testing.T, in []byte) {
		ParseGRPCHealth(in)
	})
}
