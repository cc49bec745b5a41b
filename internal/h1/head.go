package fastpath

import (
	"bytes"

	"hcproxy/internal/h1"
)

// header is one header field of a parsed head; both slices point into the buffer the head was
// parsed from and are valid until that buffer is reused.
type header struct {
	name, value []byte
}

// head is a parsed request or response head. Every slice points into the buffer it was parsed
// from; reset keeps the backing arrays, so parsing allocates nothing once a head type has seen
// its largest head.
type head struct {
	method, target []byte  // request
	form           h1.Form // request: the target's form
	authority      []byte  // request: the target's authority in absolute-form (the upstream Host)
	status         int     // response
	reason         []byte  // response
	minor          int     // HTTP/1.minor

	headers []header

	contentLength int64 // -1 when absent
	chunked       bool
	connClose     bool     // Connection: close
	connKeepAlive bool     // Connection: keep-alive
	connUpgrade   bool     // Connection: upgrade
	connTokens    [][]byte // other tokens of Connection: the hop-by-hop headers it names
	upgrade       []byte   // the Upgrade header's value, nil when absent
	expect100     bool     // Expect: 100-continue
	teTrailers    bool     // TE names trailers
	host          []byte   // the Host header's value
}

func (h *head) reset() {
	hs, ct := h.headers[:0], h.connTokens[:0]
	*h = head{headers: hs, connTokens: ct, contentLength: -1}
}

// parseError is a malformed head: the status to answer a client with (400, 431, 417, 501) and
// why.
type parseError struct {
	status int
	msg    string
}

func (e *parseError) Error() string { return e.msg }

var (
	errBadRequestLine = &parseError{400, "fastpath: malformed request line"}
	errBadTarget      = &parseError{400, "fastpath: request target refused"}
	errBadHost        = &parseError{400, "fastpath: malformed Host header"}
	errBadMethod      = &parseError{400, "fastpath: invalid method"}
	errBadVersion     = &parseError{400, "fastpath: unsupported HTTP version"}
	errBadHeader      = &parseError{400, "fastpath: malformed header field"}
	errBadCL          = &parseError{400, "fastpath: invalid Content-Length"}
	errDupCL          = &parseError{400, "fastpath: more than one Content-Length"}
	errCLAndTE        = &parseError{400, "fastpath: both Content-Length and Transfer-Encoding"}
	errBadTE          = &parseError{501, "fastpath: unsupported Transfer-Encoding"}
	errTE10           = &parseError{400, "fastpath: Transfer-Encoding in an HTTP/1.0 request"}
	errNoHost         = &parseError{400, "fastpath: missing Host header"}
	errDupHost        = &parseError{400, "fastpath: more than one Host header"}
	errExpect         = &parseError{417, "fastpath: unsupported expectation"}
	errHeadTooLarge   = &parseError{431, "fastpath: request head too large"}
	errBadStatusLine  = &parseError{502, "fastpath: malformed status line"}
	errBadChunk       = &parseError{400, "fastpath: malformed chunked encoding"}
	errConnect        = &parseError{405, "fastpath: CONNECT is not supported"}
)

// headEnd returns the length of the head at the start of b (through the empty line that ends
// it), or -1 when b does not hold all of it. from is where the previous call stopped looking.
func headEnd(b []byte, from int) int {
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

// parseRequest parses the request head b, a whole head as headEnd measured it, into h.
func parseRequest(b []byte, h *head) error {
	h.reset()
	line, rest := nextLine(b)
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return errBadRequestLine
	}
	h.method = line[:sp]
	if !isToken(h.method) {
		return errBadMethod
	}
	line = line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return errBadRequestLine
	}
	h.target = line[:sp] // its bytes are checked by h1.ParseTarget below
	switch v := line[sp+1:]; {
	case string(v) == "HTTP/1.1":
		h.minor = 1
	case string(v) == "HTTP/1.0":
		h.minor = 0
	case len(v) == 8 && string(v[:7]) == "HTTP/1." && '2' <= v[7] && v[7] <= '9':
		// RFC 9112 section 2.3: a higher minor version of a major version the server implements
		// is processed as the highest minor it knows (nginx and HAProxy do the same).
		h.minor = 1
	default:
		return errBadVersion
	}
	if string(h.method) == "CONNECT" {
		return errConnect
	}
	form, auth, err := h1.ParseTarget(h.method, h.target)
	if err != nil {
		return errBadTarget
	}
	h.form, h.authority = form, auth
	if err := parseHeaders(rest, h, true); err != nil {
		return err
	}
	if h.host == nil && h.minor == 1 {
		return errNoHost
	}
	if h.host != nil && !h1.ValidAuthority(h.host) {
		return errBadHost
	}
	if h.chunked && h.minor == 0 {
		return errTE10
	}
	return nil
}

// parseResponse parses the response head b, a whole head as headEnd measured it, into h.
func parseResponse(b []byte, h *head) error {
	h.reset()
	line, rest := nextLine(b)
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return errBadStatusLine
	}
	switch line[7] {
	case '0':
		h.minor = 0
	case '1':
		h.minor = 1
	default:
		return errBadStatusLine
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return errBadStatusLine
		}
		h.status = h.status*10 + int(c-'0')
	}
	if h.status < 100 {
		return errBadStatusLine
	}
	if len(line) > 13 {
		h.reason = line[13:]
	}
	err := parseHeaders(rest, h, false)
	if pe, ok := err.(*parseError); ok && pe.status != 502 {
		return errBadResponseHeader
	}
	return err
}

var errBadResponseHeader = &parseError{502, "fastpath: malformed response header"}

// parseHeaders parses the header fields in b (through the empty line) into h and records the
// fields that frame the message or concern the connection.
//
// Each line is read in one pass: the name byte by byte against the token table up to its colon,
// then the value up to the line's end, checking each byte for control characters as it goes (the
// three scans of IndexByte for the line end and the colon and a check of each part were 2% of a
// worker's CPU under load; a head's lines are short, so the calls cost more than the bytes).
func parseHeaders(b []byte, h *head, request bool) error {
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
			return errBadHeader // also obs-fold, whitespace before the colon, a line cut off
		}
		name := b[start:i]
		i++
		for i < len(b) && (b[i] == ' ' || b[i] == '\t') {
			i++
		}
		vstart := i
		for {
			if i == len(b) {
				return errBadHeader
			}
			c := b[i]
			if valueTable[c] {
				i++
				continue
			}
			if c == '\n' || c == '\r' && i+1 < len(b) && b[i+1] == '\n' {
				break
			}
			return errBadHeader
		}
		value := trimOWS(b[vstart:i])
		if b[i] == '\r' {
			i++
		}
		i++ // the '\n'
		if err := h.field(name, value, request); err != nil {
			return err
		}
	}
	if h.chunked && h.contentLength >= 0 {
		return errCLAndTE
	}
	return nil
}

// field records the header field name: value in h, and the fields that frame the message or
// concern the connection.
func (h *head) field(name, value []byte, request bool) error {
	h.headers = append(h.headers, header{name: name, value: value})
	switch len(name) {
	case 2:
		if equalFold(name, "te") {
			h.teTrailers = h.teTrailers || hasToken(value, "trailers")
		}
	case 4:
		if request && equalFold(name, "host") {
			if h.host != nil {
				return errDupHost
			}
			h.host = value
		}
	case 6:
		if request && equalFold(name, "expect") {
			if !equalFold(value, "100-continue") {
				return errExpect
			}
			h.expect100 = true
		}
	case 7:
		if equalFold(name, "upgrade") {
			h.upgrade = value
		}
	case 10:
		if equalFold(name, "connection") {
			h.connectionTokens(value)
		}
	case 14:
		if equalFold(name, "content-length") {
			if h.contentLength >= 0 {
				return errDupCL
			}
			n, ok := parseDecimal(value)
			if !ok {
				return errBadCL
			}
			h.contentLength = n
		}
	case 17:
		if equalFold(name, "transfer-encoding") {
			if h.chunked || !equalFold(value, "chunked") {
				return errBadTE
			}
			h.chunked = true
		}
	}
	return nil
}

func (h *head) connectionTokens(v []byte) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = trimOWS(v[:i]), v[i+1:]
		} else {
			tok, v = trimOWS(v), nil
		}
		switch {
		case len(tok) == 0:
		case equalFold(tok, "close"):
			h.connClose = true
		case equalFold(tok, "keep-alive"):
			h.connKeepAlive = true
		case equalFold(tok, "upgrade"):
			h.connUpgrade = true
		default:
			h.connTokens = append(h.connTokens, tok)
		}
	}
}

// namedInConnection reports whether the Connection header named the header name.
func (h *head) namedInConnection(name []byte) bool {
	for _, t := range h.connTokens {
		if equalFoldBytes(t, name) {
			return true
		}
	}
	return false
}

// get returns the value of the first header named name (lower case), nil when there is none.
func (h *head) get(name string) []byte {
	for i := range h.headers {
		if equalFold(h.headers[i].name, name) {
			return h.headers[i].value
		}
	}
	return nil
}

func parseDecimal(b []byte) (int64, bool) {
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

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// hasToken reports whether the comma-separated list v holds token (case-insensitive).
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = trimOWS(tok)
		if i := bytes.IndexByte(tok, ';'); i >= 0 {
			tok = trimOWS(tok[:i])
		}
		if equalFold(tok, token) {
			return true
		}
	}
	return false
}

// equalFold reports whether b equals the lower-case ASCII string s, ignoring case in b.
func equalFold(b []byte, s string) bool {
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

func equalFoldBytes(a, b []byte) bool {
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

func isToken(b []byte) bool {
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
