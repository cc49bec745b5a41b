package h1

import "errors"

// Form is the form of a request target (RFC 9112 section 3.2).
type Form uint8

// The four forms. A proxy in front of origin servers forwards origin-form and absolute-form,
// and asterisk-form for OPTIONS; authority-form belongs to CONNECT, which hcproxy refuses.
const (
	Origin    Form = iota // "/path?query"
	Absolute              // "http://authority/path?query"
	Asterisk              // "*" (OPTIONS only)
	Authority             // "host:port" (CONNECT only)
)

// Errors of ParseTarget. Each is a 400 to the client.
var (
	ErrTarget         = errors.New("h1: malformed request target")
	ErrTargetScheme   = errors.New("h1: request target scheme is not http or https")
	ErrTargetUserinfo = errors.New("h1: userinfo in the request target")
	ErrTargetForm     = errors.New("h1: request target form not allowed for the method")
	ErrTargetEscape   = errors.New("h1: malformed percent-escape in the request target")
	ErrHost           = errors.New("h1: malformed Host")
)

// ParseTarget checks the request target t of a request with method m and returns its form and,
// for absolute-form, its authority (a slice of t). The rules, those of nginx and HAProxy:
//   - origin-form starts with "/";
//   - absolute-form is "http://" or "https://" (any case), a non-empty authority with no
//     userinfo (RFC 9110 section 4.2.4: a recipient should treat it as an error), then a path,
//     a query or nothing;
//   - asterisk-form ("*") only with OPTIONS; authority-form only with CONNECT;
//   - anything else ("rl", "t:80", "ftp://h/") is refused.
//
// Every byte is visible ASCII (RFC 3986 has no others: controls, space, DEL and bytes above 0x7e
// are refused, as HAProxy refuses them) and every "%" starts a two-digit hex escape.
func ParseTarget(m, t []byte) (Form, []byte, error) {
	if len(t) == 0 {
		return 0, nil, ErrTarget
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if c <= ' ' || c >= 0x7f {
			return 0, nil, ErrTarget
		}
		if c == '%' && (i+2 >= len(t) || !isHex(t[i+1]) || !isHex(t[i+2])) {
			return 0, nil, ErrTargetEscape
		}
	}
	if string(m) == "CONNECT" {
		if !ValidAuthority(t) {
			return 0, nil, ErrTarget
		}
		return Authority, t, nil
	}
	switch t[0] {
	case '/':
		return Origin, nil, nil
	case '*':
		if len(t) == 1 && string(m) == "OPTIONS" {
			return Asterisk, nil, nil
		}
		return 0, nil, ErrTargetForm
	}
	var rest []byte
	switch {
	case len(t) >= 7 && EqualFold(t[:7], "http://"):
		rest = t[7:]
	case len(t) >= 8 && EqualFold(t[:8], "https://"):
		rest = t[8:]
	default:
		if hasSchemePrefix(t) {
			return 0, nil, ErrTargetScheme
		}
		return 0, nil, ErrTarget
	}
	end := len(rest)
	for i, c := range rest {
		if c == '/' || c == '?' || c == '#' {
			end = i
			break
		}
	}
	auth := rest[:end]
	for _, c := range auth {
		if c == '@' {
			return 0, nil, ErrTargetUserinfo
		}
	}
	if len(auth) == 0 || !ValidAuthority(auth) {
		return 0, nil, ErrTarget
	}
	return Absolute, auth, nil
}

// OriginForm returns the path and query of a target of form f: t itself for origin-form, "*"
// for asterisk-form, and for absolute-form what follows the authority ("/" when that is empty,
// "/?q" when only a query follows). It allocates only for the last case.
func OriginForm(f Form, t []byte) []byte {
	if f != Absolute {
		return t
	}
	i := 0
	if EqualFold(t[:7], "http://") {
		i = 7
	} else {
		i = 8
	}
	for ; i < len(t); i++ {
		switch t[i] {
		case '/':
			return t[i:]
		case '?':
			return append([]byte("/"), t[i:]...)
		case '#':
			return []byte("/")
		}
	}
	return []byte("/")
}

// ValidAuthority reports whether a is a Host value a proxy may forward: a reg-name or IPv4
// address (RFC 3986 unreserved, sub-delims and pct-encoded bytes), or an IPv6 literal in
// brackets, then optionally ":" and a port of digits. An empty value is valid (RFC 9110 section
// 7.2: an empty Host when the target has no authority). What is refused: controls, space, "/",
// "\\", "@", "?", "#", a second ":" outside brackets, a port that is not digits.
func ValidAuthority(a []byte) bool {
	i := 0
	if len(a) > 0 && a[0] == '[' {
		j := 1
		for j < len(a) && a[j] != ']' {
			c := a[j]
			if !(isHex(c) || c == ':' || c == '.' || c == '%' || c == 'v' || c == 'V' || unreserved(c) || subDelim(c)) {
				return false
			}
			j++
		}
		if j == len(a) || j == 1 {
			return false
		}
		i = j + 1
	} else {
		for i < len(a) && a[i] != ':' {
			c := a[i]
			if !(unreserved(c) || subDelim(c) || c == '%') {
				return false
			}
			i++
		}
	}
	if i == len(a) {
		return true
	}
	if a[i] != ':' {
		return false
	}
	for _, c := range a[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func unreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func subDelim(c byte) bool {
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=':
		return true
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// hasSchemePrefix reports whether t starts with scheme "://" (RFC 3986 scheme characters).
func hasSchemePrefix(t []byte) bool {
	for i, c := range t {
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		case c == ':' && i > 0:
			return len(t) >= i+3 && t[i+1] == '/' && t[i+2] == '/'
		default:
			return false
		}
	}
	return false
}
