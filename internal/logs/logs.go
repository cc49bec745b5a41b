// Package logs is the log files of hcproxy's processes: a file reopened on USR1 (for log
// rotation), the slog logger of a log_format and level, and journald priorities when stderr is
// the journal's stream.
package logs

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// File is a log destination that can be reopened (USR1, after logrotate moved the file).
// With an empty path it writes to stderr and Reopen does nothing.
type File struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	journal bool // stderr is systemd's journal stream: lines carry <N> priority prefixes
}

// Open opens path for appending (created 0640), or stderr when path is "". Stderr that is
// systemd's journal stream (JOURNAL_STREAM names its device and inode) gets each line prefixed
// with its syslog priority, <3> to <7> (sd-daemon(3)), so journalctl -p filters by level.
func Open(path string) (*File, error) {
	l := &File{path: path, f: os.Stderr}
	if path == "" {
		l.journal = isJournal(os.Getenv("JOURNAL_STREAM"), os.Stderr)
		return l, nil
	}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// Reopen opens the path again and swaps it in; on error the old file stays in use.
func (l *File) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil && old != os.Stderr {
		old.Close()
	}
	return nil
}

// Write implements io.Writer; one call is one log record.
func (l *File) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(b)
}

// NewLogger returns a slog logger writing text (format "text" or "") or JSON to w. In JSON a
// duration is a number of milliseconds under its key with "_ms" appended ("took_ms": 12.5),
// not slog's raw nanoseconds; text keeps Go's form ("took=12.5ms"). When w is a File on the
// journal stream, each line starts with its syslog priority (see Open).
func NewLogger(format string, w io.Writer, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	lf, _ := w.(*File)
	var pw *prioWriter
	if lf != nil && lf.journal {
		pw = &prioWriter{w: w}
		w = pw
	}
	var h slog.Handler
	if format == "json" {
		opts.ReplaceAttr = durationMs
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	if pw != nil {
		h = &prioHandler{next: h, w: pw}
	}
	return slog.New(h)
}

// durationMs turns a duration attribute into milliseconds under KEY_ms, for JSON logs.
func durationMs(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		return slog.Float64(a.Key+"_ms", float64(a.Value.Duration())/float64(time.Millisecond))
	}
	return a
}

// isJournal reports whether f is the stream that systemd's JOURNAL_STREAM ("DEV:INODE")
// names: only then is it the journal (a child whose stderr was redirected inherits the
// variable, and must not get prefixes).
func isJournal(env string, f *os.File) bool {
	dev, ino, ok := strings.Cut(env, ":")
	if !ok {
		return false
	}
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return false
	}
	return strconv.FormatUint(st.Dev, 10) == dev && strconv.FormatUint(st.Ino, 10) == ino
}

// prioWriter prefixes the next Write with the priority its prioHandler set; the handler holds
// mu around both, and slog's handlers write each record with one Write.
type prioWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
}

func (p *prioWriter) Write(b []byte) (int, error) {
	line := make([]byte, 0, len(p.prefix)+len(b))
	line = append(append(line, p.prefix...), b...)
	if _, err := p.w.Write(line); err != nil {
		return 0, err
	}
	return len(b), nil
}

// prioHandler gives each record its syslog priority on the journal: <7> debug, <6> info,
// <4> warn, <3> error.
type prioHandler struct {
	next slog.Handler
	w    *prioWriter
}

func (h *prioHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *prioHandler) Handle(ctx context.Context, r slog.Record) error {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	h.w.prefix = priority(r.Level)
	return h.next.Handle(ctx, r)
}

func (h *prioHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &prioHandler{next: h.next.WithAttrs(as), w: h.w}
}

func (h *prioHandler) WithGroup(name string) slog.Handler {
	return &prioHandler{next: h.next.WithGroup(name), w: h.w}
}

// priority is the sd-daemon(3) prefix of a level.
func priority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}

// Close closes the file (never stderr).
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil || l.f == os.Stderr {
		return nil
	}
	err := l.f.Close()
	l.f = os.Stderr
	return err
}

// LevelOf maps a log_level setting to its slog level ("info" for anything unknown).
func LevelOf(name string) slog.Level {
	switch name {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}
