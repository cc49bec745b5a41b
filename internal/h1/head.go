package h1

import (
	"bytes"
)

// Field is one header field of a parsed head; both slices point into the buffer the head was
// parsed from and are valid until that buffer is reused.
type Field struct {
	Name, Value []byte
}

// Head is a parsed request or response head. Every slice points into the buffer it was parsed
// from; Reset keeps the backing arrays, so parsing allocates nothing once a head has seen its
// largest head.
type Head struct {
	Method, Target []byte // request
	Form           Form   // request: the target's form
	Authority      []byte // request: the target's authority in absolute-form (the upstream Host)
	Status         int    // response
	Reason         []byte // response
	Minor          int    // HTTP/1.Minor (a request's 1.2-1.9 is 1)

	Fields []Field

	ContentLength int64 // -1 when absent
	Chunked       bool
	ConnClose     bool     // Connection: close
	ConnKeepAlive bool     // Connection: keep-alive
	ConnUpgrade   bool     // Connection: upgrade
	ConnTokens    [][]byte // other tokens of Connection: the hop-by-hop headers it names
	Upgrade       []byte   // the Upgrade header's value, nil when absent
	Expect100     bool     // Expect: 100-continue
	TETrailers    bool     // TE names trailers
	Host          []byte   // the Host header's value
}

// Reset empties h for the next parse, keeping its slices' backing arrays.
func (h *Head) Reset() {
	hs, ct := h.Fields[:0], h.ConnTokens[:0]
	*h = Head{Fields: hs, ConnTokens: ct, ContentLength: -1}
}

// Error is a malformed head or body: the status to answer a client with (400, 431, 417, 501;
// 502 for a server's response) and why.
type Error struct {
	Status int
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

var (
	ErrBadRequestLine = &Error{400, "h1: malformed request line"}
	ErrBadTarget      = &Error{400, "h1: request target refused"}
	ErrBadHost        = &Error{400, "h1: malformed Host header"}
	ErrBadMethod      = &Error{400, "h1: invalid method"}
	ErrBadVersion     = &Error{400, "h1: unsupported HTTP version"}
	ErrBadHeader      = &Error{400, "h1: malformed header field"}
	ErrBadCL          = &Error{400, "h1: invalid Content-Length"}
	ErrDupCL          = &Error{400, "h1: more than one Content-Length"}
	ErrCLAndTE        = &Error{400, "h1: both Content-Length and Transfer-Encoding"}
	ErrBadTE          = &Error{501, "h1: unsupported Transfer-Encoding"}
	ErrTE10           = &Error{400, "h1: Transfer-Encoding in an HTTP/1.0 request"}
	ErrNoHost         = &Error{400, "h1: missing Host header"}
	ErrDupHost        = &Error{400, "h1: more than one Host header"}
	ErrExpect         = &Error{417, "h1: unsupported expectation"}
	ErrHeadTooLarge   = &Error{431, "h1: request head too large"}
	ErrBadStatusLine  = &Error{502, "h1: malformed status line"}
	ErrBadChunk       = &Error{400, "h1: malformed chunked encoding"}
	ErrConnect        = &Error{405, "h1: CONNECT is not supported"}
)

// HeadEnd returns the length of the head at the start of b (through the empty line that ends
// it), or -1 when b does not hold all of it. from is where the previous call stopped looking.
func HeadEnd(b []byte, from int) int {
	i := max(from-3, 0)
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		if i < len(b) && b[i] == '\n' {
			return i + 1
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			return i + 2
		}
	}
}

// nextLine returns the line at the start of b without its line ending, and the rest after it. b
// must contain a '\n'.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// ParseRequest parses the request head b, a whole head as HeadEnd measured it, into h.
func ParseRequest(b []byte, h *Head) error {
	h.Reset()
	line, rest := nextLine(b)
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return ErrBadRequestLine
	}
	h.Method = line[:sp]
	if !IsToken(h.Method) {
		return ErrBadMethod
	}
	line = line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return ErrBadRequestLine
	}
	h.Target = line[:sp] // its bytes are checked by ParseTarget below
	switch v := line[sp+1:]; {
	case string(v) == "HTTP/1.1":
		h.Minor = 1
	case string(v) == "HTTP/1.0":
		h.Minor = 0
	case len(v) == 8 && string(v[:7]) == "HTTP/1." && '2' <= v[7] && v[7] <= '9':
		// RFC 9112 section 2.3: a higher minor version of a major version the server implements
		// is processed as the highest minor it knows (nginx and HAProxy do the same).
		h.Minor = 1
	default:
		return ErrBadVersion
	}
	if string(h.Method) == "CONNECT" {
		return ErrConnect
	}
	form, auth, err := ParseTarget(h.Method, h.Target)
	if err != nil {
		return ErrBadTarget
	}
	h.Form, h.Authority = form, auth
	if err := ParseFields(rest, h, true); err != nil {
		return err
	}
	if h.Host == nil && h.Minor == 1 {
		return ErrNoHost
	}
	if h.Host != nil && !ValidAuthority(h.Host) {
		return ErrBadHost
	}
	if h.Chunked && h.Minor == 0 {
		return ErrTE10
	}
	return nil
}

// ParseResponse parses the response head b, a whole head as HeadEnd measured it, into h.
func ParseResponse(b []byte, h *Head) error {
	h.Reset()
	line, rest := nextLine(b)
	minor, status, reason, ok := ParseStatusLine(line)
	if !ok {
		return ErrBadStatusLine
	}
	h.Minor, h.Status, h.Reason = minor, status, reason
	err := ParseFields(rest, h, false)
	if pe, ok := err.(*Error); ok && pe.Status != 502 {
		return ErrBadResponseHeader
	}
	return err
}

// ParseStatusLine parses a status line without its line ending: "HTTP/1.x NNN reason" (the
// reason may be empty, and its space too), with a status of 100 to 599 (RFC 9110 section 15:
// all valid status codes are in that range) and a reason of visible characters, space, tab and
// obs-text.
func ParseStatusLine(line []byte) (minor, status int, reason []byte, ok bool) {
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return 0, 0, nil, false
	}
	switch line[7] {
	case '0':
	case '1':
		minor = 1
	default:
		return 0, 0, nil, false
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, nil, false
		}
		status = status*10 + int(c-'0')
	}
	if status < 100 || status > 599 {
		return 0, 0, nil, false
	}
	if len(line) > 13 {
		reason = line[13:]
	}
	for _, c := range reason {
		if !valueTable[c] {
			return 0, 0, nil, false
		}
	}
	return minor, status, reason, true
}

// ContentLength parses a Content-Length field value: one decimal number (RFC 9110 section 8.6).
// A list of identical values ("5, 5", what a field repeated by an intermediary becomes) is an
// error, unless list is set: RFC 9110 lets a recipient either refuse it or take the one value.
// The proxy refuses it (a framing that two readers could read differently); the health-check
// probe, reading one response from a server it checks, takes it.
func ContentLength(value []byte, list bool) (int64, bool) {
	if !list {
		return ParseDecimal(value)
	}
	n := int64(-1)
	for len(value) > 0 {
		var elem []byte
		if i := bytes.IndexByte(value, ','); i >= 0 {
			elem, value = value[:i], value[i+1:]
		} else {
			elem, value = value, nil
		}
		v, ok := ParseDecimal(TrimOWS(elem))
		if !ok || n >= 0 && v != n {
			return 0, false
		}
		n = v
	}
	return n, n >= 0
}

var ErrBadResponseHeader = &Error{502, "h1: malformed response header"}

// ParseFields parses the header fields in b (through the empty line) into h and records the
// fields that frame the message or concern the connection.
//
// Each line is read in one pass: the name byte by byte against the token table up to its colon,
// then the value up to the line's end, checking each byte for control characters as it goes (the
// three scans of IndexByte for the line end and the colon and a check of each part were 2% of a
// worker's CPU under load; a head's lines are short, so the calls cost more than the bytes).
func ParseFields(b []byte, h *Head, request bool) error {
	i := 0
	for {
		// The empty line ends the head.
		if i < len(b) && b[i] == '\n' {
			break
		}
		if i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n' {
			break
		}
		start := i
		for i < len(b) && tokenTable[b[i]] {
			i++
		}
		if i == start || i == len(b) || b[i] != ':' {
			return ErrBadHeader // also obs-fold, whitespace before the colon, a line cut off
		}
		name := b[start:i]
		i++
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		vstart := i
		for {
			if i == len(b) {
				return ErrBadHeader
			}
			c := b[i]
			if valueTable[c] {
				i++
				continue
			}
			if c == '\n' || c == '\r' && i+1 < len(b) && b[i+1] == '\n' {
				break
			}
			return ErrBadHeader
		}
		value := TrimOWS(b[vstart:i])
		if b[i] == '\r' {
			i++
		}
		i++ // the '\n'
		if err := h.field(name, value, request); err != nil {
			return err
		}
	}
	if h.Chunked && h.ContentLength >= 0 {
		return ErrCLAndTE
	}
	return nil
}

// field records the header field name: value in h, and the fields that frame the message or
// concern the connection.
func (h *Head) field(name, value []byte, request bool) error {
	h.Fields = append(h.Fields, Field{Name: name, Value: value})
	switch len(name) {
	case 2:
		if EqualFold(name, "te") {
			h.TETrailers = h.TETrailers || HasToken(value, "trailers")
		}
	case 4:
		if request && EqualFold(name, "host") {
			if h.Host != nil {
				return ErrDupHost
			}
			h.Host = value
		}
	case 6:
		if request && EqualFold(name, "expect") {
			if !EqualFold(value, "100-continue") {
				return ErrExpect
			}
			h.Expect100 = true
		}
	case 7:
		if EqualFold(name, "upgrade") {
			h.Upgrade = value
		}
	case 10:
		if EqualFold(name, "connection") {
			h.connectionTokens(value)
		}
	case 14:
		if EqualFold(name, "content-length") {
			if h.ContentLength >= 0 {
				return ErrDupCL
			}
			n, ok := ContentLength(value, false)
			if !ok {
				return ErrBadCL
			}
			h.ContentLength = n
		}
	case 17:
		if EqualFold(name, "transfer-encoding") {
			if h.Chunked || !EqualFold(value, "chunked") {
				return ErrBadTE
			}
			h.Chunked = true
		}
	}
	return nil
}

func (h *Head) connectionTokens(v []byte) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = TrimOWS(v[:i]), v[i+1:]
		} else {
			tok, v = TrimOWS(v), nil
		}
		switch {
		case len(tok) == 0:
		case EqualFold(tok, "close"):
			h.ConnClose = true
		case EqualFold(tok, "keep-alive"):
			h.ConnKeepAlive = true
		case EqualFold(tok, "upgrade"):
			h.ConnUpgrade = true
		default:
			h.ConnTokens = append(h.ConnTokens, tok)
		}
	}
}

// NamedInConnection reports whether the Connection header named the header name.
func (h *Head) NamedInConnection(name []byte) bool {
	for _, t := range h.ConnTokens {
		if EqualFoldBytes(t, name) {
			return true
		}
	}
	return false
}

// Get returns the value of the first header named name (lower case), nil when there is none.
func (h *Head) Get(name string) []byte {
	for i := range h.Fields {
		if EqualFold(h.Fields[i].Name, name) {
			return h.Fields[i].Value
		}
	}
	return nil
}

// ParseDecimal parses a non-empty run of at most 18 decimal digits.
func ParseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// TrimOWS trims optional white space (spaces and tabs) from both ends of b.
func TrimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// HasToken reports whether the comma-separated list v holds token (case-insensitive).
func HasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = TrimOWS(tok)
		if i := bytes.IndexByte(tok, ';'); i >= 0 {
			tok = TrimOWS(tok[:i])
		}
		if EqualFold(tok, token) {
			return true
		}
	}
	return false
}

// EqualFold reports whether b equals the lower-case ASCII string s, ignoring case in b.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func EqualFoldBytes(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// tokenTable marks the bytes RFC 9110 allows in a token (tchar).
var tokenTable = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// valueTable marks the bytes a field value may hold: visible characters, space, tab and
// obs-text (RFC 9110 section 5.5); not the other controls or DEL.
var valueTable = func() (t [256]bool) {
	for c := range t {
		t[c] = c >= ' ' && c != 0x7f || c == '\t'
	}
	return t
}()

// IsToken reports whether b is a non-empty RFC 9110 token (a method or a field name).
func IsToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenTable[c] {
			return false
		}
	}
	return true
}

// UpstreamHost is the Host of the request a proxy sends on: the target's authority for
// absolute-form (RFC 9112 section 3.2.2: a proxy generates Host from the target), else the
// client's Host (nil when an HTTP/1.0 client sent none).
func (h *Head) UpstreamHost() []byte {
	if h.Form == Absolute {
		return h.Authority
	}
	return h.Host
}

// ValidValue reports whether b holds only what a field value may: visible characters, space, tab
// and obs-text (no other control, no DEL, in particular no bare CR or NUL).
func ValidValue(b []byte) bool {
	for _, c := range b {
		if !valueTable[c] {
			return false
		}
	}
	return true
}
