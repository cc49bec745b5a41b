package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// A config is read by the master at start and on every reload, and by -t,
// so reading one must stay fast and small whatever the file holds. The TOML
// decoder's cost grows with the square of the nesting depth of inline
// tables and of the number of parts of a dotted key (10,000 nested inline
// tables, 60 KB, took 20 s and 4 GB), and with the length of a key's full
// name for every key under it. So before the decoder sees a file, a scan
// that is linear in its size checks the bounds below and refuses a file
// past any of them with FILE:LINE, as for every other config error. Each
// bound is far above what a real config needs.
const (
	// MaxFileSize is the largest config file, in bytes (16 MiB; a config
	// listing 100,000 servers as inline tables is under 7 MB).
	MaxFileSize = 16 << 20
	// MaxDepth is how deep arrays and inline tables may nest in one another
	// (hcproxy's own schema needs 3).
	MaxDepth = 32
	// MaxKeyParts is the most parts of one key as written, a dotted key
	// (a.b.c = 1) or a table header ([a.b.c]): hcproxy's schema needs 4.
	MaxKeyParts = 16
	// MaxKeyLen is the longest full name of a key, in bytes of source
	// (quotes included): its table header's parts, the keys of the inline
	// tables around it and its own parts, joined by dots. hcproxy's longest,
	// upstream.NAME.check.headers.HEADER, is about 100 plus the length of
	// the header's name.
	MaxKeyLen = 256
	// MaxItems is the most keys and values in a file, counted as the
	// decoder's work grows. Every value counts 1 (an array once, and each
	// of its elements). A key or table header counts 1 for its first part,
	// 2 for its second and so on (a.b.c counts 6), as the decoder makes a
	// table of each prefix; inside nested inline tables each part counts 1
	// more per inline table around it beyond the first, as the decoder
	// walks them for each key. 100,000 servers as inline tables with an
	// address and a weight count 500,000.
	MaxItems = 1 << 20
	// MaxHandoff is the most bytes the master may hand a worker at start:
	// the validated config as JSON plus the slot map (one entry per server
	// of each upstream). Parse refuses a config whose hand-off could be
	// larger, so a config that passes -t always reaches its workers whole.
	MaxHandoff = 64 << 20
)

// The room the hand-off bound allows besides the config's JSON. The worker
// package's tests hold its payload to them.
const (
	// HandoffBaseBytes is for the payload's own fields (generation, index).
	HandoffBaseBytes = 1024
	// HandoffEntryBytes is for each slot map entry, besides its upstream
	// name and address as JSON strings: field names, separators and a slot
	// number of up to 20 digits.
	HandoffEntryBytes = 64
)

// sizeError is the error for a config file of n bytes, more than
// MaxFileSize; n < 0 when the size is known only to be past the limit.
func sizeError(path string, n int64) error {
	msg := fmt.Sprintf("config is %d bytes, more than the limit of %d (%s)", n, MaxFileSize, formatSize(MaxFileSize))
	if n < 0 {
		msg = fmt.Sprintf("config is more than %d bytes (%s), the limit", MaxFileSize, formatSize(MaxFileSize))
	}
	return Errors{{File: path, Msg: msg}}
}

// checkHandoff refuses c when the payload the master would hand each of its
// workers could exceed MaxHandoff. It encodes c one upstream at a time and
// stops once past the limit, so a huge config costs no more than the limit.
func checkHandoff(c *Config, path string) error {
	top := *c
	top.Upstreams = nil
	b, err := json.Marshal(&top)
	if err != nil {
		return fmt.Errorf("config: marshal: %w", err)
	}
	size := int64(len(b)) + HandoffBaseBytes
	for _, name := range c.UpstreamNames() {
		u := c.Upstreams[name]
		if b, err = json.Marshal(u); err != nil {
			return fmt.Errorf("config: marshal: %w", err)
		}
		size += jsonLen(name) + 2 + int64(len(b)) // "name":{...},
		for _, s := range u.Servers {
			size += HandoffEntryBytes + jsonLen(name) + jsonLen(s.Address)
		}
		if size > MaxHandoff {
			return Errors{{File: path, Msg: fmt.Sprintf(
				"config is too large to hand to the workers: more than %d bytes (%s) as JSON, the limit (upstreams %d, listeners %d, server entries %d)",
				MaxHandoff, formatSize(MaxHandoff), len(c.Upstreams), len(c.Servers), c.serverEntries())}}
		}
	}
	return nil
}

// serverEntries is the number of servers of all upstreams together: the
// entries of the slot map the master hands its workers.
func (c *Config) serverEntries() int {
	n := 0
	for _, u := range c.Upstreams {
		n += len(u.Servers)
	}
	return n
}

// jsonLen is an upper bound on the length of s as a JSON string: an escaped
// byte takes at most 6 bytes (\u00XX).
func jsonLen(s string) int64 {
	n := int64(2)
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' || c >= 0x80 {
			n += 6
		} else {
			n++
		}
	}
	return n
}

// scan reads src, a TOML document, in one pass that is linear in len(src)
// whatever src holds. It refuses src when it passes MaxDepth, MaxKeyParts,
// MaxKeyLen or MaxItems, and otherwise returns the line of each key (see
// lineIndex). It reads strings (basic, literal, multi-line) and comments as
// TOML does, so nothing inside them is counted. On text that is not valid
// TOML it stays linear and quiet where it can (the decoder then reports the
// syntax error), and the lineIndex it returns means nothing.
func scan(src []byte, path string) (lineIndex, error) {
	s := &scanner{src: src, line: 1, ix: newLineIndex(), explicit: map[string]bool{}, aot: map[string]int{}}
	s.document()
	if s.err == nil {
		return s.ix, nil
	}
	s.err.File = path
	return lineIndex{}, Errors{s.err}
}

// scanner is the state of one scan.
type scanner struct {
	src   []byte
	i     int      // next byte
	line  int      // 1-based line of src[i]
	items int      // keys and values seen
	parts [][2]int // src[p[0]:p[1]] is each part p of the current top-level key or header
	err   *Error   // the first bound passed

	ix       lineIndex
	explicit map[string]bool // the keys of ix that were defined explicitly
	aot      map[string]int  // array-of-tables key -> index of its last element
	valKey   string          // the key of the current top-level value, as keyPath formats it
}

func (s *scanner) eof() bool { return s.i >= len(s.src) || s.err != nil }

func (s *scanner) at(c byte) bool { return s.i < len(s.src) && s.src[s.i] == c }

// fail notes the first bound passed, with the line and top-level key.
func (s *scanner) fail(format string, args ...any) {
	if s.err == nil {
		var key []byte
		if n := len(s.parts); n > 0 {
			key = s.src[s.parts[0][0]:s.parts[n-1][1]]
		}
		s.err = &Error{Line: s.line, Key: shortKey(key), Msg: fmt.Sprintf(format, args...)}
	}
}

// add counts n items.
func (s *scanner) add(n int) {
	if s.items += n; s.items > MaxItems {
		s.fail("more than %d keys and values in the file (the limit; see MaxItems)", MaxItems)
	}
}

// document scans the top level: table headers and key = value lines.
func (s *scanner) document() {
	table, prefix := 0, "" // the current table's name: its length as written, and as keyPath formats it
	for {
		s.blank(true)
		if s.eof() {
			return
		}
		start, line := s.i, s.line
		if s.at('[') {
			s.i++
			aot := s.at('[')
			if aot {
				s.i++
			}
			table = s.keyName(0, 0, true)
			prefix = s.header(aot, line)
			s.blank(false)
			for n := 0; n < 2 && s.at(']'); n++ {
				s.i++
			}
		} else {
			n := s.keyName(table, 0, true)
			s.blank(false)
			if s.at('=') {
				s.i++
				s.blank(false)
				s.valKey = s.keyLines(prefix, line)
				s.value(n, 0, 0)
			}
		}
		s.restOfLine()
		if s.i == start { // not TOML; make progress
			s.i++
		}
	}
}

// restOfLine skips blanks and a comment up to the end of the line, and
// anything else there (which the decoder refuses) with them.
func (s *scanner) restOfLine() {
	s.blank(false)
	for !s.eof() && !s.at('\n') {
		s.i++
	}
}

// blank skips spaces, tabs, carriage returns and comments, and newlines
// when nl is set.
func (s *scanner) blank(nl bool) {
	for !s.eof() {
		switch c := s.src[s.i]; {
		case c == ' ' || c == '\t' || c == '\r':
			s.i++
		case c == '\n' && nl:
			s.i++
			s.line++
		case c == '#':
			for s.i < len(s.src) && s.src[s.i] != '\n' {
				s.i++
			}
		default:
			return
		}
	}
}

// keyName scans a dotted key (bare and quoted parts) and returns the length
// of its full name: prefix (the name of the table or inline table that
// holds it; 0 at the top) plus its own parts. Part j of the key counts
// j+extra items (see MaxItems). top marks the key of a top-level line or
// header, whose parts go to s.parts.
func (s *scanner) keyName(prefix, extra int, top bool) int {
	n, parts := prefix, 0
	if top {
		s.parts = s.parts[:0]
	}
	for !s.eof() {
		s.blank(false)
		if s.eof() {
			break
		}
		p := s.i
		switch c := s.src[s.i]; {
		case c == '"' || c == '\'':
			s.lineString(c)
		case isBare(c) || c >= 0x80:
			for s.i < len(s.src) && (isBare(s.src[s.i]) || s.src[s.i] >= 0x80) {
				s.i++
			}
		}
		if s.i == p { // no key here
			break
		}
		parts++
		if n > 0 {
			n++
		}
		n += s.i - p
		if top {
			s.parts = append(s.parts, [2]int{p, s.i})
		}
		s.add(parts + extra)
		switch {
		case parts > MaxKeyParts:
			s.fail("key has more than %d parts (the limit)", MaxKeyParts)
		case n > MaxKeyLen:
			s.fail("full key name is more than %d bytes long (the limit)", MaxKeyLen)
		}
		s.blank(false)
		if !s.at('.') {
			break
		}
		s.i++
	}
	return n
}

// shortKey is a key as written, shortened for an error message.
func shortKey(b []byte) string {
	const max = 64
	b = bytes.TrimSpace(b)
	if len(b) > max {
		return strings.ToValidUTF8(string(b[:max]), "") + "..."
	}
	return strings.ToValidUTF8(string(b), "?")
}

// value scans one value whose key's full name is n bytes long, inside depth
// arrays and inline tables, inl of them inline tables.
func (s *scanner) value(n, depth, inl int) {
	if s.eof() {
		return
	}
	switch c := s.src[s.i]; c {
	case '\n', '#':
		return // no value; the decoder says so
	case '"', '\'':
		s.add(1)
		s.str(c)
	case '[', '{':
		s.add(1)
		if depth+1 > MaxDepth {
			s.fail("arrays and inline tables nest more than %d deep (the limit)", MaxDepth)
			return
		}
		s.i++
		if c == '[' {
			s.array(n, depth+1, inl)
		} else {
			s.inlineTable(n, depth+1, inl+1)
		}
	default: // number, bool, date: up to the next delimiter
		s.add(1)
		for s.i < len(s.src) {
			if c := s.src[s.i]; c == ',' || c == ']' || c == '}' || c == '#' || c == '\n' {
				break
			}
			s.i++
		}
	}
}

// array scans the elements of an array up to its ']'. The line of each
// element of a top-level value's array goes to the lineIndex.
func (s *scanner) array(n, depth, inl int) {
	for {
		s.blank(true)
		if s.eof() {
			return
		}
		switch p := s.i; {
		case s.at(']'):
			s.i++
			return
		case s.at(','):
			s.i++
		default:
			if depth == 1 {
				s.ix.items[s.valKey] = append(s.ix.items[s.valKey], int32(s.line))
			}
			s.value(n, depth, inl)
			if s.i == p { // not TOML; make progress
				s.i++
			}
		}
	}
}

// inlineTable scans the key = value pairs of an inline table up to its '}'
// (across lines, as TOML 1.1 allows).
func (s *scanner) inlineTable(n, depth, inl int) {
	for {
		s.blank(true)
		if s.eof() {
			return
		}
		switch p := s.i; {
		case s.at('}'):
			s.i++
			return
		case s.at(','):
			s.i++
		default:
			k := s.keyName(n, inl-1, false)
			s.blank(false)
			if s.at('=') {
				s.i++
				s.blank(false)
				s.value(k, depth, inl)
			}
			if s.i == p { // not TOML; make progress
				s.i++
			}
		}
	}
}

// str skips a string value of any of TOML's four kinds, starting at its
// quote q.
func (s *scanner) str(q byte) {
	if s.i+2 < len(s.src) && s.src[s.i+1] == q && s.src[s.i+2] == q {
		s.multiLineString(q)
		return
	}
	s.lineString(q)
}

// lineString skips a one-line basic ("...") or literal ('...') string. It
// stops at the end of the line when the string does not end there.
func (s *scanner) lineString(q byte) {
	s.i++
	for s.i < len(s.src) {
		switch c := s.src[s.i]; {
		case c == '\\' && q == '"' && s.i+1 < len(s.src) && s.src[s.i+1] != '\n':
			s.i += 2
		case c == q:
			s.i++
			return
		case c == '\n':
			return
		default:
			s.i++
		}
	}
}

// multiLineString skips a multi-line string, basic or literal (between
// three double or three single quotes), and counts its lines. Up to two
// quotes may end its content just before the closing three.
func (s *scanner) multiLineString(q byte) {
	s.i += 3
	for s.i < len(s.src) {
		switch c := s.src[s.i]; {
		case c == '\\' && q == '"':
			s.i++
			if s.i < len(s.src) {
				if s.src[s.i] == '\n' {
					s.line++
				}
				s.i++
			}
		case c == q && s.i+2 < len(s.src) && s.src[s.i+1] == q && s.src[s.i+2] == q:
			s.i += 3
			for n := 0; n < 2 && s.at(q); n++ {
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
}
