package conformance

import (
	"bytes"
	"strconv"
	"strings"
)

// The reference reader: how RFC 9112 frames request bytes. It serves twice: on the client's
// bytes it says what a proxy accepted (how many requests, and each body as its framing says),
// and on the bytes a backend receives it splits them into requests. It is written for this test
// alone, apart from both engines' parsers, so that it cannot share their mistakes.
//
// It reads leniently where the RFC gives one reading (a bare LF as a line end, obs-fold in an
// ordinary field, repeated equal Content-Length values) and notes each such point; where the
// bytes allow two readings of a body's length (RFC 9112 section 6.3: an invalid Content-Length,
// Transfer-Encoding not ending in chunked, a bare CR, a malformed chunk line or trailer field)
// it gives none (message.unclear) and stops, since no framing can be checked against it.

// framing is how a message's body length is decided.
type framing uint8

const (
	noBody   framing = iota // neither Content-Length nor Transfer-Encoding: no body
	byLength                // Content-Length
	byChunks                // Transfer-Encoding ending in chunked
)

// field is one header or trailer field line.
type field struct{ name, value string }

// message is one request as the reference reader sees it.
type message struct {
	method, target, version string
	fields                  []field
	host                    string // the first Host field's value
	hosts                   int    // Host field lines
	framing                 framing
	body                    []byte   // the body as its framing says, chunked coding removed (as much as arrived)
	headDone                bool     // the head is complete
	complete                bool     // the head and the whole body arrived
	closes                  bool     // the connection ends after this request (Connection: close, HTTP/1.0, CL with TE)
	both                    bool     // Content-Length and Transfer-Encoding
	expect100               bool     // Expect: 100-continue
	length                  int64    // the Content-Length (byLength)
	unclear                 string   // why the body's length has no single reading; "" when it has one
	invalid                 []string // what RFC 9112/9110 says a server must reject or must not accept
	notes                   []string // what else it noticed: deviations it read past, choices the RFC leaves
	size                    int      // bytes this message took, leading empty lines included (when complete)
}

func (m *message) bad(why string)  { m.invalid = appendOnce(m.invalid, why) }
func (m *message) note(why string) { m.notes = appendOnce(m.notes, why) }
func (m *message) ambiguous(why string) {
	m.bad(why)
	if m.unclear == "" {
		m.unclear = why
	}
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// readMessages reads requests from b until one is incomplete, has no clear framing or ends the
// connection.
func readMessages(b []byte) []message {
	var msgs []message
	for len(b) > 0 {
		m := readMessage(b)
		if m.size == 0 && !m.headDone && isBlank(b) {
			break // only empty lines left
		}
		msgs = append(msgs, m)
		if !m.complete || m.unclear != "" || m.closes {
			break
		}
		b = b[m.size:]
	}
	return msgs
}

// isBlank reports whether b holds nothing but CR and LF.
func isBlank(b []byte) bool {
	return len(bytes.Trim(b, "\r\n")) == 0
}

// line returns the line of b starting at off without its line end, the offset after it, and
// whether it ended in a bare LF; ok is false when no LF came yet.
func line(b []byte, off int) (l []byte, next int, bareLF, ok bool) {
	i := bytes.IndexByte(b[off:], '\n')
	if i < 0 {
		return nil, len(b), false, false
	}
	l = b[off : off+i]
	if n := len(l); n > 0 && l[n-1] == '\r' {
		return l[:n-1], off + i + 1, false, true
	}
	return l, off + i + 1, true, true
}

// readMessage reads one request at the start of b (after any empty lines).
func readMessage(b []byte) message {
	var m message
	off := 0
	for off < len(b) && (b[off] == '\r' || b[off] == '\n') { // RFC 9112 2.2: empty lines before a request
		if b[off] == '\r' && (off+1 == len(b) || b[off+1] != '\n') {
			break
		}
		m.note("empty lines before the request line")
		off++
	}
	l, next, bareLF, ok := line(b, off)
	if !ok {
		return m
	}
	if bareLF {
		m.note("bare LF line end")
	}
	m.requestLine(l)
	off = next
	for {
		l, next, bareLF, ok = line(b, off)
		if !ok {
			return m
		}
		off = next
		if bareLF {
			m.note("bare LF line end")
		}
		if len(l) == 0 {
			break
		}
		m.fieldLine(l)
	}
	m.headDone = true
	m.checkHead()
	if m.unclear != "" {
		return m
	}
	m.decideFraming()
	if m.unclear != "" {
		return m
	}
	end, done := m.readBody(b, off)
	if done {
		m.complete = true
		m.size = end
	}
	return m
}

func (m *message) requestLine(l []byte) {
	if bytes.IndexByte(l, '\r') >= 0 {
		m.ambiguous("bare CR in the request line")
		return
	}
	parts := strings.Split(string(l), " ")
	if len(parts) != 3 {
		m.bad("request line is not METHOD SP TARGET SP VERSION")
		parts = strings.FieldsFunc(string(l), func(r rune) bool { return r == ' ' || r == '\t' || r == '\v' || r == '\f' })
	}
	switch len(parts) {
	case 0:
		m.ambiguous("empty request line")
		return
	case 1, 2:
		m.ambiguous("no HTTP version in the request line (HTTP/0.9 or garbage)")
		if len(parts) == 2 {
			m.method, m.target = parts[0], parts[1]
		}
		return
	}
	m.method, m.target, m.version = parts[0], parts[1], parts[len(parts)-1]
	if !isToken(m.method) {
		m.bad("method is not a token")
	}
	for i := 0; i < len(m.target); i++ {
		if c := m.target[i]; c <= ' ' || c >= 0x7f {
			m.bad("control, space or non-ASCII byte in the request target")
			break
		}
	}
	v := m.version
	if len(v) != 8 || v[:5] != "HTTP/" || !isDigit(v[5]) || v[6] != '.' || !isDigit(v[7]) {
		m.bad("version is not HTTP/DIGIT.DIGIT")
		return
	}
	if v[5] != '1' {
		m.bad("HTTP major version is not 1")
	}
}

// isVersion1 reports whether v is HTTP/1.x.
func isVersion1(v string) bool {
	return len(v) == 8 && v[:7] == "HTTP/1." && isDigit(v[7])
}

// framingLike reports whether s names a framing field in any spelling a lenient parser might
// accept, so that dropping or taking the line changes the body's length.
func framingLike(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "content-length") || strings.Contains(s, "transfer-encoding") ||
		strings.Contains(s, "content_length") || strings.Contains(s, "transfer_encoding")
}

func isFramingName(name string) bool {
	return strings.EqualFold(name, "Content-Length") || strings.EqualFold(name, "Transfer-Encoding")
}

func (m *message) fieldLine(l []byte) {
	s := string(l)
	if strings.IndexByte(s, '\r') >= 0 {
		m.ambiguous("bare CR in a field line")
		return
	}
	if s[0] == ' ' || s[0] == '\t' {
		if len(m.fields) == 0 {
			m.bad("whitespace before the first field line")
			if framingLike(s) {
				m.ambiguous("a framing field after whitespace before the first field line")
			}
			return
		}
		prev := &m.fields[len(m.fields)-1]
		m.bad("obs-fold")
		m.note("obs-fold")
		if isFramingName(prev.name) || strings.EqualFold(prev.name, "Host") {
			m.ambiguous("obs-fold in " + prev.name)
		}
		prev.value = strings.TrimRight(prev.value+" "+trimOWS(s), " \t")
		return
	}
	name, value, ok := strings.Cut(s, ":")
	switch {
	case !ok:
		m.bad("field line without a colon")
		if framingLike(s) {
			m.ambiguous("a framing field without a colon")
		}
		return
	case name == "":
		m.bad("empty field name")
		return
	case strings.TrimRight(name, " \t") != name:
		m.bad("whitespace between field name and colon")
		if framingLike(name) || strings.EqualFold(strings.TrimSpace(name), "Host") {
			m.ambiguous("whitespace between " + strings.TrimSpace(name) + " and its colon")
		}
		return
	case !isToken(name):
		m.bad("field name is not a token")
		if framingLike(name) {
			m.ambiguous("a framing field name with bytes outside token")
		}
		return
	}
	value = trimOWS(value)
	for i := 0; i < len(value); i++ {
		c := value[i]
		if c == 0 || (c < ' ' && c != '\t') || c == 0x7f {
			what := "control character in a field value"
			if c == 0 {
				what = "NUL in a field value"
			}
			m.bad(what)
			if isFramingName(name) || strings.EqualFold(name, "Host") {
				m.ambiguous(what + " of " + name)
			}
			break
		}
	}
	m.fields = append(m.fields, field{name, value})
}

// checkHead applies the rules about Host and the version that do not need the body.
func (m *message) checkHead() {
	for _, f := range m.fields {
		if strings.EqualFold(f.name, "Host") {
			if m.hosts == 0 {
				m.host = f.value
			}
			m.hosts++
		}
		if strings.EqualFold(f.name, "Expect") {
			if strings.EqualFold(f.value, "100-continue") {
				m.expect100 = true
			} else {
				m.note("an expectation other than 100-continue (a server may answer 417)")
			}
		}
	}
	v10 := m.version == "HTTP/1.0"
	switch {
	case m.hosts == 0 && !v10:
		m.bad("HTTP/1.1 request without Host")
	case m.hosts > 1:
		m.bad("more than one Host")
	case m.hosts == 1 && !validHost(m.host):
		m.bad("invalid Host")
	}
	tokens := m.list("Connection")
	switch {
	case hasToken(tokens, "close"):
		m.closes = true
	case v10 && !hasToken(tokens, "keep-alive"):
		m.closes = true
	case !isVersion1(m.version):
		m.closes = true // a version the reference cannot place: expect nothing after it
	}
}

// list returns the elements of every field named name, trimmed, empty ones left out
// (RFC 9110 5.6.1).
func (m *message) list(name string) []string {
	var out []string
	for _, f := range m.fields {
		if !strings.EqualFold(f.name, name) {
			continue
		}
		for _, e := range strings.Split(f.value, ",") {
			if e = trimOWS(e); e != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

func (m *message) count(name string) int {
	n := 0
	for _, f := range m.fields {
		if strings.EqualFold(f.name, name) {
			n++
		}
	}
	return n
}

func hasToken(list []string, t string) bool {
	for _, e := range list {
		if strings.EqualFold(e, t) {
			return true
		}
	}
	return false
}

// decideFraming applies RFC 9112 section 6.3 to a request: Transfer-Encoding, if present,
// decides; else Content-Length; else there is no body.
func (m *message) decideFraming() {
	switch {
	case m.count("Transfer-Encoding") > 0:
		m.byCodings(m.count("Content-Length") > 0)
	case m.count("Content-Length") > 0:
		m.byContentLength()
	}
}

// byCodings frames by Transfer-Encoding: its list must end in chunked, once.
func (m *message) byCodings(withLength bool) {
	if m.version == "HTTP/1.0" {
		m.ambiguous("Transfer-Encoding in an HTTP/1.0 request")
		return
	}
	codings := m.list("Transfer-Encoding")
	if len(codings) == 0 {
		m.ambiguous("empty Transfer-Encoding")
		return
	}
	chunked := 0
	for _, c := range codings {
		name, _, _ := strings.Cut(c, ";")
		name = trimOWS(name)
		switch {
		case !isToken(name):
			m.ambiguous("transfer coding is not a token")
			return
		case strings.EqualFold(name, "chunked") && name != c:
			m.ambiguous("chunked with parameters")
			return
		case strings.EqualFold(name, "chunked"):
			chunked++
		}
	}
	if !strings.EqualFold(codings[len(codings)-1], "chunked") {
		m.ambiguous("chunked is not the final transfer coding")
		return
	}
	if chunked > 1 {
		m.ambiguous("chunked applied more than once")
		return
	}
	if withLength {
		m.both, m.closes = true, true
		m.note("Content-Length with Transfer-Encoding (a server may refuse it, else must close after it)")
	}
	m.framing = byChunks
}

// byContentLength frames by Content-Length: every value the same 1*DIGIT.
func (m *message) byContentLength() {
	values := m.list("Content-Length")
	if len(values) == 0 {
		m.ambiguous("empty Content-Length")
		return
	}
	for _, v := range values {
		if v != values[0] {
			m.ambiguous("Content-Length values differ")
			return
		}
		for i := 0; i < len(v); i++ {
			if !isDigit(v[i]) {
				m.ambiguous("Content-Length is not 1*DIGIT")
				return
			}
		}
	}
	if len(values) > 1 {
		m.note("repeated Content-Length value")
	}
	if len(values[0]) > 1 && values[0][0] == '0' {
		m.note("Content-Length with leading zeros")
	}
	n, err := strconv.ParseInt(values[0], 10, 64)
	if err != nil || n > 1<<50 {
		m.ambiguous("Content-Length out of range")
		return
	}
	m.framing, m.length = byLength, n
}
