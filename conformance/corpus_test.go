package conformance

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// A corpus file holds cases, each the raw bytes a client sends on one fresh connection:
//
//	# a comment line
//	=== NAME
//	source: where the bytes come from (required)
//	note: anything worth knowing (optional, repeatable)
//	raw: ESCAPED BYTES
//	repeat: COUNT ESCAPED BYTES
//
// The bytes of the raw and repeat lines of a case are concatenated in order ("repeat: N S"
// appends S N times), with no line ending added. Escapes: \r \n \t \0 \\ and \xHH; every other
// byte stands for itself. A raw line may not end in a space or a tab (write \x20 or \t), so
// that an editor that strips trailing blanks cannot change a case. Names are unique across the
// corpus and are made of letters, digits and "-_./+".

// testCase is one corpus entry.
type testCase struct {
	Name   string
	Source string
	Notes  []string
	Raw    []byte
	File   string // base name of its corpus file
	Line   int    // line of its "===" in that file
}

var caseName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/+-]*$`)

// maxRepeat bounds one repeat line, so a typo cannot ask for gigabytes.
const maxRepeat = 4 << 20

// errCorpus is wrapped by every corpus syntax error.
var errCorpus = errors.New("conformance: corpus")

// parseCorpus reads the cases of one corpus file; file names it in errors.
func parseCorpus(file string, r io.Reader) ([]testCase, error) {
	var (
		cases []testCase
		cur   *testCase
	)
	fail := func(line int, format string, args ...any) error {
		return fmt.Errorf("%w: %s:%d: %s", errCorpus, file, line, fmt.Sprintf(format, args...))
	}
	finish := func() error {
		if cur == nil {
			return nil
		}
		if cur.Source == "" {
			return fail(cur.Line, "case %s has no source line", cur.Name)
		}
		if len(cur.Raw) == 0 {
			return fail(cur.Line, "case %s has no bytes", cur.Name)
		}
		cases = append(cases, *cur)
		cur = nil
		return nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if name, ok := strings.CutPrefix(line, "=== "); ok {
			if err := finish(); err != nil {
				return nil, err
			}
			if !caseName.MatchString(name) {
				return nil, fail(n, "bad case name %q", name)
			}
			cur = &testCase{Name: name, File: filepath.Base(file), Line: n}
			continue
		}
		if cur == nil {
			return nil, fail(n, "line outside a case: %q", line)
		}
		key, val, ok := strings.Cut(line, ": ")
		if !ok {
			return nil, fail(n, "want KEY: VALUE, got %q", line)
		}
		if err := cur.set(key, val); err != nil {
			return nil, fail(n, "%v", err)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", errCorpus, file, err)
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return cases, nil
}

// set applies one KEY: VALUE line to the case.
func (c *testCase) set(key, val string) error {
	switch key {
	case "source":
		c.Source = val
	case "note":
		c.Notes = append(c.Notes, val)
	case "raw":
		b, err := unescape(val)
		if err != nil {
			return err
		}
		c.Raw = append(c.Raw, b...)
	case "repeat":
		count, rest, ok := strings.Cut(val, " ")
		n, err := strconv.Atoi(count)
		if !ok || err != nil || n < 1 || n > maxRepeat {
			return fmt.Errorf("want repeat: COUNT BYTES with COUNT 1..%d, got %q", maxRepeat, val)
		}
		b, err := unescape(rest)
		if err != nil {
			return err
		}
		c.Raw = append(c.Raw, bytes.Repeat(b, n)...)
	default:
		return fmt.Errorf("unknown key %q", key)
	}
	return nil
}

// unescape decodes the escapes of a raw line.
func unescape(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty bytes")
	}
	if last := s[len(s)-1]; last == ' ' || last == '\t' {
		return nil, errors.New(`bytes end in a blank (write \x20 or \t)`)
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 == len(s) {
			return nil, errors.New("lone backslash at the end")
		}
		i++
		switch s[i] {
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case '0':
			out = append(out, 0)
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, errors.New(`\x needs two hex digits`)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf(`\x needs two hex digits: %w`, err)
			}
			out = append(out, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf(`unknown escape \%c`, s[i])
		}
	}
	return out, nil
}

// loadCorpus reads every *.txt corpus file of dir but allow.txt and checks that the names are
// unique.
func loadCorpus(dir string) ([]testCase, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.txt"))
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	var all []testCase
	seen := map[string]string{}
	for _, f := range files {
		if filepath.Base(f) == allowFile {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", errCorpus, err)
		}
		cases, err := parseCorpus(f, bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		for _, c := range cases {
			if prev, dup := seen[c.Name]; dup {
				return nil, fmt.Errorf("%w: %s:%d: case %s already in %s", errCorpus, c.File, c.Line, c.Name, prev)
			}
			seen[c.Name] = c.File
		}
		all = append(all, cases...)
	}
	return all, nil
}

func TestCorpusFormat(t *testing.T) {
	in := "# comment\n=== a-1\nsource: here\nnote: n\nraw: GET / HTTP/1.1\\r\\nX: \\x41\\t\\0\\\\\\r\\n\nrepeat: 3 ab\nraw: \\r\\n\n=== b\nsource: s\nraw: x\n"
	cases, err := parseCorpus("t.txt", strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) != 2 {
		t.Fatalf("got %d cases, want 2", len(cases))
	}
	want := "GET / HTTP/1.1\r\nX: A\t\x00\\\r\nababab\r\n"
	if c := cases[0]; string(c.Raw) != want || c.Name != "a-1" || c.Source != "here" || len(c.Notes) != 1 || c.Line != 2 {
		t.Errorf("got %+v, want raw %q", c, want)
	}
	for _, bad := range []string{
		"raw: x\n",                               // outside a case
		"=== a\nraw: x\n",                        // no source
		"=== a\nsource: s\n",                     // no bytes
		"=== a b\nsource: s\nraw: x\n",           // bad name
		"=== a\nsource: s\nraw: x \n",            // trailing blank
		"=== a\nsource: s\nraw: \\q\n",           // unknown escape
		"=== a\nsource: s\nraw: \\x4\n",          // short hex
		"=== a\nsource: s\nrepeat: 0 x\n",        // bad count
		"=== a\nsource: s\nrepeat: 99999999 x\n", // too many
		"=== a\nsource: s\nfoo: x\n",             // unknown key
	} {
		if _, err := parseCorpus("bad.txt", strings.NewReader(bad)); !errors.Is(err, errCorpus) {
			t.Errorf("%q: got %v, want a corpus error", bad, err)
		}
	}
}

// The corpus in testdata loads, its names are unique, and it is as large as the issue asks.
func TestCorpusLoads(t *testing.T) {
	cases, err := loadCorpus("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) < 400 {
		t.Errorf("corpus has %d cases, want several hundred", len(cases))
	}
	seen := map[string]string{}
	for _, c := range cases {
		if prev, dup := seen[string(c.Raw)]; dup {
			t.Errorf("%s: same bytes as %s", c.Name, prev)
		}
		seen[string(c.Raw)] = c.Name
	}
}
