package config

import (
	"strconv"
	"strings"
)

// BurntSushi/toml keeps the position of each key to itself (it only reports
// positions in syntax errors), so lineIndex finds them again in the source
// text. It runs only on text that the TOML parser has accepted, and it is
// best effort: a key it cannot place gets line 0, never a wrong panic.

// lineIndex maps a key, formatted as keyPath formats it (arrays of tables
// and array items carry an index: "server[1].listen",
// "upstream.app.servers[0]"), to the 1-based line where it is defined.
type lineIndex map[string]int

// line returns the line of key, or of its nearest enclosing key or table
// that has one (a key inside an inline table gets the line of the table),
// or 0.
func (ix lineIndex) line(key string) int {
	for key != "" {
		if l, ok := ix[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// keyPart formats one component of a dotted key: bare when TOML allows it
// bare, quoted otherwise.
func keyPart(s string) string {
	if s == "" {
		return `""`
	}
	for i := 0; i < len(s); i++ {
		if !isBare(s[i]) {
			return strconv.Quote(s)
		}
	}
	return s
}

// keyJoin appends the component part to the dotted key prefix.
func keyJoin(prefix, part string) string {
	if prefix == "" {
		return keyPart(part)
	}
	return prefix + "." + keyPart(part)
}

// keyIndex appends an array index to key.
func keyIndex(key string, i int) string {
	return key + "[" + strconv.Itoa(i) + "]"
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

type lineScanner struct {
	src      string
	i        int
	line     int
	ix       lineIndex
	explicit map[string]bool
	aot      map[string]int // array-of-tables path -> index of its last element
}

// indexLines builds the lineIndex of src.
func indexLines(src string) lineIndex {
	s := &lineScanner{src: src, line: 1, ix: lineIndex{}, explicit: map[string]bool{}, aot: map[string]int{}}
	prefix := ""
	for {
		s.skipBlank(true)
		if s.eof() {
			return s.ix
		}
		start, line := s.i, s.line
		if s.src[s.i] == '[' {
			isAOT := s.peek(1) == '['
			s.i++
			if isAOT {
				s.i++
			}
			parts := s.keyParts()
			prefix = s.header(parts, isAOT, line)
		} else {
			parts := s.keyParts()
			s.skipBlank(false)
			if len(parts) > 0 && !s.eof() && s.src[s.i] == '=' {
				s.i++
				key := prefix
				for j, p := range parts {
					key = keyJoin(key, p)
					s.record(key, line, j == len(parts)-1)
				}
				s.skipValue(key)
			}
		}
		s.skipLine()
		if s.i == start { // cannot happen on valid TOML; never loop forever
			s.i++
		}
	}
}

func (s *lineScanner) eof() bool { return s.i >= len(s.src) }

func (s *lineScanner) peek(n int) byte {
	if s.i+n < len(s.src) {
		return s.src[s.i+n]
	}
	return 0
}

// record notes that key is defined on line. An implicit definition (a
// prefix of a dotted key or header) never replaces an earlier one; an
// explicit one replaces an implicit one.
func (s *lineScanner) record(key string, line int, explicit bool) {
	if _, ok := s.ix[key]; ok && (!explicit || s.explicit[key]) {
		return
	}
	s.ix[key] = line
	s.explicit[key] = explicit
}

// header records a [table] or [[array.of.tables]] header and returns the
// key prefix for the keys below it.
func (s *lineScanner) header(parts []string, isAOT bool, line int) string {
	key := ""
	for j, p := range parts {
		key = keyJoin(key, p)
		last := j == len(parts)-1
		if last && isAOT {
			n, ok := s.aot[key]
			if ok {
				n++
			}
			s.aot[key] = n
			s.record(key, line, false)
			key = keyIndex(key, n)
		} else if n, ok := s.aot[key]; ok {
			key = keyIndex(key, n)
		}
		s.record(key, line, last)
	}
	return key
}

// skipBlank skips spaces, tabs and comments, and newlines when nl is set.
func (s *lineScanner) skipBlank(nl bool) {
	for !s.eof() {
		switch c := s.src[s.i]; {
		case c == ' ' || c == '\t' || c == '\r':
			s.i++
		case c == '\n' && nl:
			s.i++
			s.line++
		case c == '#':
			for !s.eof() && s.src[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

// skipLine skips to just after the next newline.
func (s *lineScanner) skipLine() {
	for !s.eof() {
		c := s.src[s.i]
		s.i++
		if c == '\n' {
			s.line++
			return
		}
	}
}

// keyParts reads a dotted key (bare and quoted components) and returns its
// components.
func (s *lineScanner) keyParts() []string {
	var parts []string
	for {
		s.skipBlank(false)
		if s.eof() {
			return parts
		}
		switch c := s.src[s.i]; {
		case c == '"' || c == '\'':
			start := s.i
			s.skipString()
			raw := s.src[start:s.i]
			if c == '\'' {
				parts = append(parts, strings.Trim(raw, "'"))
			} else if u, err := strconv.Unquote(raw); err == nil {
				parts = append(parts, u)
			} else {
				parts = append(parts, strings.Trim(raw, `"`))
			}
		case isBare(c):
			start := s.i
			for !s.eof() && isBare(s.src[s.i]) {
				s.i++
			}
			parts = append(parts, s.src[start:s.i])
		default:
			return parts
		}
		s.skipBlank(false)
		if s.eof() || s.src[s.i] != '.' {
			return parts
		}
		s.i++
	}
}

// skipString skips one string of any of TOML's four kinds, counting the
// newlines inside multi-line strings.
func (s *lineScanner) skipString() {
	q := s.src[s.i]
	if s.peek(1) == q && s.peek(2) == q {
		s.i += 3
		for !s.eof() {
			c := s.src[s.i]
			switch {
			case c == '\\' && q == '"':
				s.i++
				if !s.eof() && s.src[s.i] == '\n' {
					s.line++
				}
				s.i++
			case c == q && s.peek(1) == q && s.peek(2) == q:
				s.i += 3
				for n := 0; n < 2 && !s.eof() && s.src[s.i] == q; n++ {
					s.i++
				}
				return
			case c == '\n':
				s.line++
				s.i++
			default:
				s.i++
			}
		}
		return
	}
	s.i++
	for !s.eof() {
		c := s.src[s.i]
		switch {
		case c == '\\' && q == '"':
			s.i += 2
		case c == q:
			s.i++
			return
		case c == '\n': // not valid TOML; stop at the line's end
			return
		default:
			s.i++
		}
	}
}

// skipValue skips the value of key up to the end of its (last) line,
// recording the line where each item of a top-level array starts.
func (s *lineScanner) skipValue(key string) {
	depth, item := 0, 0
	isArray, want := false, false
	for !s.eof() {
		c := s.src[s.i]
		if depth == 1 && isArray && want && c != ' ' && c != '\t' && c != '\r' && c != '\n' && c != '#' && c != ']' && c != ',' {
			s.record(keyIndex(key, item), s.line, true)
			want = false
		}
		switch c {
		case '\n':
			if depth == 0 {
				return
			}
			s.line++
			s.i++
		case '#':
			for !s.eof() && s.src[s.i] != '\n' {
				s.i++
			}
		case '"', '\'':
			s.skipString()
		case '[', '{':
			if depth == 0 && c == '[' {
				isArray, want = true, true
			}
			depth++
			s.i++
		case ']', '}':
			if depth > 0 {
				depth--
			}
			s.i++
		case ',':
			if depth == 1 && isArray {
				item++
				want = true
			}
			s.i++
		default:
			s.i++
		}
	}
}
