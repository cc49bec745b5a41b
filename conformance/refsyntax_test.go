package conformance

import "strings"

// The reference reader's lexical rules (RFC 9110 section 5.6): digits, tokens, whitespace,
// and the Host field's grammar.

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool { return isDigit(c) || (c|0x20) >= 'a' && (c|0x20) <= 'f' }

// isTchar reports whether c may appear in a token (RFC 9110 5.6.2).
func isTchar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || isDigit(c) {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func tokenPrefix(s string) int {
	i := 0
	for i < len(s) && isTchar(s[i]) {
		i++
	}
	return i
}

func isToken(s string) bool { return s != "" && tokenPrefix(s) == len(s) }

func trimOWS(s string) string { return strings.Trim(s, " \t") }

// validHost checks uri-host [ ":" port ] (RFC 9110 7.2): a reg-name, an IPv4 address or an
// IP-literal in brackets, and a port of digits.
func validHost(h string) bool {
	if h == "" {
		return true // an empty Host is allowed when the target has no authority
	}
	host, port := h, ""
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 {
			return false
		}
		host, port = h[:end+1], h[end+1:]
		if port != "" && port[0] != ':' {
			return false
		}
		for _, c := range []byte(host[1:end]) {
			if !isHex(c) && c != ':' && c != '.' {
				return false
			}
		}
	} else if i := strings.IndexByte(h, ':'); i >= 0 {
		host, port = h[:i], h[i:]
	}
	if port != "" {
		for _, c := range []byte(port[1:]) {
			if !isDigit(c) {
				return false
			}
		}
	}
	if host == "" {
		return false
	}
	if host[0] == '[' {
		return true
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if isDigit(c) || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("-._~!$&'()*+,;=%", c) >= 0 {
			continue
		}
		return false
	}
	return true
}
