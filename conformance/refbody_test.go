package conformance

import (
	"strconv"
	"strings"
)

// The reference reader's body rules: Content-Length bodies and the chunked coding
// (RFC 9112 section 7.1), with its size lines, extensions and trailer section.

// readBody reads the body from b[off:]; it returns the offset after the message and whether
// all of it arrived.
func (m *message) readBody(b []byte, off int) (int, bool) {
	switch m.framing {
	case byLength:
		if int64(len(b)-off) < m.length {
			m.body = append([]byte(nil), b[off:]...)
			return 0, false
		}
		n := int(m.length)
		m.body = append([]byte(nil), b[off:off+n]...)
		return off + n, true
	case byChunks:
		return m.readChunks(b, off)
	}
	return off, true
}

func (m *message) readChunks(b []byte, off int) (int, bool) {
	for {
		l, next, bareLF, ok := line(b, off)
		if !ok {
			return 0, false
		}
		if bareLF {
			m.note("bare LF in the chunked coding")
		}
		size, ok := m.chunkSize(l)
		if !ok {
			return 0, false
		}
		off = next
		if size == 0 {
			return m.readTrailers(b, off)
		}
		if int64(len(b)-off) < size {
			m.body = append(m.body, b[off:]...)
			return 0, false
		}
		m.body = append(m.body, b[off:off+int(size)]...)
		off += int(size)
		switch {
		case len(b)-off >= 2 && b[off] == '\r' && b[off+1] == '\n':
			off += 2
		case len(b)-off >= 1 && b[off] == '\n':
			m.note("bare LF in the chunked coding")
			m.bad("chunk data not followed by CRLF")
			off++
		case len(b)-off == 0 || (len(b)-off == 1 && b[off] == '\r'):
			return 0, false
		default:
			m.ambiguous("chunk data not followed by CRLF")
			return 0, false
		}
	}
}

// chunkSize parses a chunk size line: 1*HEXDIG, then optionally BWS ";" extensions
// (RFC 9112 7.1.1). Anything else has no single reading.
func (m *message) chunkSize(l []byte) (int64, bool) {
	i, zeros := 0, 0
	for i < len(l) && isHex(l[i]) {
		if l[i] == '0' && zeros == i {
			zeros++
		}
		i++
	}
	if zeros > 1 || zeros == 1 && i > 1 {
		m.note("chunk size with leading zeros")
	}
	if i == 0 {
		m.ambiguous("chunk size is not hexadecimal")
		return 0, false
	}
	if i-zeros > 15 {
		m.ambiguous("chunk size out of range")
		return 0, false
	}
	size, _ := strconv.ParseInt(string(l[zeros:i]), 16, 64) // "" (all zeros) is 0
	rest := l[i:]
	j := 0
	for j < len(rest) && (rest[j] == ' ' || rest[j] == '\t') {
		j++
	}
	switch {
	case j == len(rest) && j > 0:
		m.ambiguous("whitespace after the chunk size")
		return 0, false
	case j == len(rest):
	case rest[j] != ';':
		m.ambiguous("chunk size followed by something other than an extension")
		return 0, false
	default:
		for _, c := range rest[j:] {
			if c == '\r' || c == 0 || (c < ' ' && c != '\t') || c == 0x7f {
				m.ambiguous("control character in a chunk extension")
				return 0, false
			}
		}
		if !validChunkExt(string(rest[j:])) {
			m.bad("malformed chunk extension")
		}
	}
	return size, true
}

// validChunkExt checks *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).
func validChunkExt(s string) bool {
	for s != "" {
		s = strings.TrimLeft(s, " \t")
		if s == "" || s[0] != ';' {
			return false
		}
		s = strings.TrimLeft(s[1:], " \t")
		n := tokenPrefix(s)
		if n == 0 {
			return false
		}
		s = strings.TrimLeft(s[n:], " \t")
		if s == "" || s[0] != '=' {
			continue
		}
		s = strings.TrimLeft(s[1:], " \t")
		if s != "" && s[0] == '"' {
			end := 1
			for end < len(s) && s[end] != '"' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(s) {
				return false
			}
			s = s[end+1:]
			continue
		}
		if n = tokenPrefix(s); n == 0 {
			return false
		}
		s = s[n:]
	}
	return true
}

func (m *message) readTrailers(b []byte, off int) (int, bool) {
	for {
		l, next, bareLF, ok := line(b, off)
		if !ok {
			return 0, false
		}
		off = next
		if bareLF {
			m.note("bare LF in the chunked coding")
		}
		if len(l) == 0 {
			return off, true
		}
		s := string(l)
		name, value, ok := strings.Cut(s, ":")
		switch {
		case strings.IndexByte(s, '\r') >= 0:
			m.ambiguous("bare CR in a trailer field")
		case s[0] == ' ' || s[0] == '\t':
			m.ambiguous("obs-fold in the trailer section")
		case !ok || !isToken(name):
			m.ambiguous("trailer line that is not a field")
		case strings.ContainsFunc(value, func(r rune) bool { return r == 0 || (r < ' ' && r != '\t') || r == 0x7f }):
			m.ambiguous("control character in a trailer field")
		default:
			continue
		}
		return 0, false
	}
}
