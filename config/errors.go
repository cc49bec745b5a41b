package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrInvalid is wrapped by every error that Parse, Load and Unmarshal return
// for a config that is not valid, so callers can tell a bad config from an
// I/O error with errors.Is(err, config.ErrInvalid).
var ErrInvalid = errors.New("config: invalid")

// Error is one problem in a config file. Line is 0 when the problem has no
// single place in the source (a missing key, a config passed as JSON).
type Error struct {
	File string // the config file's path as given to Load or Parse
	Line int    // 1-based line, 0 when unknown
	Key  string // full dotted key, e.g. "upstream.app.check.interval"; "" for syntax errors
	Msg  string // what is wrong, e.g. `must be at least 100ms (got "50ms")`
}

// Error formats e as "FILE:LINE: KEY: MSG", leaving out the parts that are
// unknown.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *Error) Unwrap() error { return ErrInvalid }

// Errors is every problem found in one config, sorted by line (problems
// without a line last) and otherwise in the order they were found. Its
// Error method gives one problem per line.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the individual problems for errors.Is and errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// reporter collects problems for one config. loc finds the line of a key and
// may be nil (then every line is unknown).
type reporter struct {
	file string
	loc  func(key string) int
	errs Errors
}

func (r *reporter) addf(key, format string, args ...any) {
	line := 0
	if r.loc != nil {
		line = r.loc(key)
	}
	r.errs = append(r.errs, &Error{File: r.file, Line: line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// err returns the problems found, sorted, or nil when there are none.
func (r *reporter) err() error {
	if len(r.errs) == 0 {
		return nil
	}
	es := append(Errors(nil), r.errs...)
	sort.SliceStable(es, func(i, j int) bool {
		li, lj := es[i].Line, es[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
	return es
}
