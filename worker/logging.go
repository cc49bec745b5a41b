package worker

import (
	"io"
	"log/slog"
	"os"
	"sync"
)

// LogFile is a log destination that can be reopened (USR1, after logrotate moved the file).
// With an empty path it writes to stderr and Reopen does nothing.
type LogFile struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

// OpenLog opens path for appending (created 0640), or stderr when path is "".
func OpenLog(path string) (*LogFile, error) {
	l := &LogFile{path: path, f: os.Stderr}
	if path == "" {
		return l, nil
	}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// Reopen opens the path again and swaps it in; on error the old file stays in use.
func (l *LogFile) Reopen() error {
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
func (l *LogFile) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(b)
}

// NewLogger returns a slog logger writing text (format "text" or "") or JSON to w.
func NewLogger(format string, w io.Writer, level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// Close closes the file (never stderr).
func (l *LogFile) Close() error {
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
