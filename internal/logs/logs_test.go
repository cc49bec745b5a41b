package logs

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestJSONLogDurationsInMilliseconds pins that a JSON log line gave a duration as slog's raw
// nanoseconds ("took":1500000); it is now milliseconds under KEY_ms. Text keeps Go's form.
func TestJSONLogDurationsInMilliseconds(t *testing.T) {
	var b strings.Builder
	NewLogger("json", &b, slog.LevelInfo).Info("reloaded", "took", 1500*time.Microsecond, "workers", 2)
	if got := b.String(); !strings.Contains(got, `"took_ms":1.5,`) || strings.Contains(got, `"took":`) {
		t.Errorf("json line %q: want \"took_ms\":1.5", got)
	}
	b.Reset()
	NewLogger("text", &b, slog.LevelInfo).Info("reloaded", "took", 1500*time.Microsecond)
	if got := b.String(); !strings.Contains(got, "took=1.5ms") {
		t.Errorf("text line %q: want took=1.5ms", got)
	}
}

// On the journal's stream each line starts with its syslog priority, so journalctl -p works;
// anywhere else (a stream JOURNAL_STREAM does not name) lines are as they were.
func TestJournalPriorities(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stream"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	env := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	if !isJournal(env, f) || isJournal(fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), f) || isJournal("", f) || isJournal("x", f) {
		t.Fatalf("isJournal(%q) does not tell the stream from others", env)
	}
	for _, format := range []string{"text", "json"} {
		f.Truncate(0)
		f.Seek(0, 0)
		log := NewLogger(format, &File{f: f, journal: true}, slog.LevelDebug).With("pid", 1)
		log.Debug("d")
		log.Info("i")
		log.Warn("w")
		log.Error("e")
		b, _ := os.ReadFile(f.Name())
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		want := []string{"<7>", "<6>", "<4>", "<3>"}
		if len(lines) != len(want) {
			t.Fatalf("%s: %d lines: %q", format, len(lines), b)
		}
		for i, l := range lines {
			if !strings.HasPrefix(l, want[i]) || strings.Count(l, "<") != 1 {
				t.Errorf("%s line %d %q: want prefix %s", format, i, l, want[i])
			}
		}
	}
	var b strings.Builder
	NewLogger("text", &b, slog.LevelInfo).Warn("w")
	if strings.HasPrefix(b.String(), "<") {
		t.Errorf("a plain writer got a priority prefix: %q", b.String())
	}
}
