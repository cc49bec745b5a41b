package config

import (
	"strconv"
	"strings"
)

// BurntSushi/toml keeps the position of each key to itself (it only reports
// positions in syntax errors), so scan (bounds.go) finds them again in the
// source text as it checks the bounds. The index is used only for text that
// the TOML parser has accepted, and it is best effort: a key it cannot place
// gets line 0.

// lineIndex maps a key, formatted as keyPath formats it (arrays of tables
// and array items carry an index: "server[1].listen",
// "upstream.app.servers[0]"), to the 1-based line where it is defined.
// The items of a top-level value's array are kept apart, as one slice of
// lines per array: a map entry per item would repeat the array's key for
// each of them, and a 2 MB file with a long key and a million short items
// then took about 1 GiB.
type lineIndex struct {
	keys  map[string]int
	items map[string][]int32 // key of an array value -> line of each item
}

func newLineIndex() lineIndex {
	return lineIndex{keys: map[string]int{}, items: map[string][]int32{}}
}

// line returns the line of key, or of its nearest enclosing key or table
// that has one (a key inside an inline table gets the line of the table),
// or 0.
func (ix lineIndex) line(key string) int {
	for key != "" {
		if l, ok := ix.item(key); ok {
			return l
		}
		if l, ok := ix.keys[key]; ok {
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

// item returns the line of key if it names an item of an indexed array
// ("upstream.app.servers[0]").
func (ix lineIndex) item(key string) (int, bool) {
	if !strings.HasSuffix(key, "]") {
		return 0, false
	}
	i := strings.LastIndexByte(key, '[')
	if i < 0 {
		return 0, false
	}
	lines, ok := ix.items[key[:i]]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(key[i+1 : len(key)-1])
	if err != nil || n < 0 || n >= len(lines) {
		return 0, false
	}
	return int(lines[n]), true
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

// keyLines records the line of the current top-level key, below the table
// prefix, and of each of its prefixes, and returns the key.
func (s *scanner) keyLines(prefix string, line int) string {
	key := prefix
	for j, p := range s.parts {
		key = keyJoin(key, s.partName(p))
		s.record(key, line, j == len(s.parts)-1)
	}
	return key
}

// header records the line of the current [table] or [[array.of.tables]]
// header and returns the key prefix for the keys below it.
func (s *scanner) header(aot bool, line int) string {
	key := ""
	for j, p := range s.parts {
		key = keyJoin(key, s.partName(p))
		last := j == len(s.parts)-1
		if last && aot {
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

// partName is the name that key part p spells: bare, basic ("...") or
// literal ('...').
func (s *scanner) partName(p [2]int) string {
	raw := string(s.src[p[0]:p[1]])
	switch raw[0] {
	case '\'':
		return strings.Trim(raw, "'")
	case '"':
		if u, err := strconv.Unquote(raw); err == nil {
			return u
		}
		return strings.Trim(raw, `"`)
	}
	return raw
}

// record notes that key is defined on line. An implicit definition (a
// prefix of a dotted key or header) never replaces an earlier one; an
// explicit one replaces an implicit one.
func (s *scanner) record(key string, line int, explicit bool) {
	if _, ok := s.ix.keys[key]; ok && (!explicit || s.explicit[key]) {
		return
	}
	s.ix.keys[key] = line
	s.explicit[key] = explicit
}
