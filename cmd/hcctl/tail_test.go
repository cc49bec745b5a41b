package main

import (
	"context"
	"encoding/json"
	"fmt"
	"hcproxy/internal/syncbuf"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"hcproxy/probe"
	"hcproxy/shm"
	"hcproxy/status"
)

// syncBuffer collects output written while the test reads it.
type syncBuffer = syncbuf.Buffer

// eventTable creates a table that the test keeps open read-write, to append events to while
// hcctl reads it.
func eventTable(t *testing.T) (string, *shm.Table) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hc.table")
	tab, err := shm.OpenMaster(path, 8)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Close() })
	return path, tab
}

// healthEvent is app 127.0.0.1:<9100+i> going up -> down for a bad status, appended by pid 100+i.
func healthEvent(i int) shm.Event {
	return shm.Event{Kind: shm.EventHealth, Address: fmt.Sprintf("127.0.0.1:%d", 9100+i), Label: "app",
		Old: uint8(shm.Up), New: uint8(shm.Down), Reason: uint8(probe.BadStatus), Pid: 100 + i}
}

// tailing runs hcctl with args in the background until stop is called, which returns its exit
// status and stderr.
func tailing(t *testing.T, out *syncBuffer, args ...string) (stop func() (int, string)) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var errb syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, out, &errb) }()
	return func() (int, string) {
		cancel()
		select {
		case code := <-done:
			return code, errb.String()
		case <-time.After(5 * time.Second):
			t.Fatal("tail did not stop within 5s of its context being cancelled")
			return 0, ""
		}
	}
}

// waitFor polls until out holds want, or fails after a deadline.
func waitFor(t *testing.T, out fmt.Stringer, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			got := out.String()
			if len(got) > 2000 {
				got = "..." + got[len(got)-2000:]
			}
			t.Fatalf("output lacks %q after 5s:\n%s", want, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTailLastNThenFollow(t *testing.T) {
	path, tab := eventTable(t)
	for i := range 15 {
		tab.AppendEvent(healthEvent(i))
	}
	var out syncBuffer
	stop := tailing(t, &out, "--table", path, "tail", "-n", "3")
	waitFor(t, &out, "127.0.0.1:9114")
	got := out.String()
	if n := strings.Count(got, "\n"); n != 3 {
		t.Errorf("tail -n 3 printed %d lines:\n%s", n, got)
	}
	for i := range 15 {
		if want := fmt.Sprintf("127.0.0.1:%d ", 9100+i); strings.Contains(got, want) != (i >= 12) {
			t.Errorf("event %d shown: %v, want %v:\n%s", i, !(i >= 12), i >= 12, got)
		}
	}
	line := strings.Split(got, "\n")[0]
	if _, rest, ok := strings.Cut(line, " "); !ok || rest != "health  app  127.0.0.1:9112  up -> down  reason=bad_status  pid=112" {
		t.Errorf("line = %q", line)
	}
	if _, err := time.Parse("2006-01-02T15:04:05.000Z", strings.Fields(line)[0]); err != nil {
		t.Errorf("line %q: time: %v", line, err)
	}

	// A new event shows up while tail follows.
	tab.AppendEvent(shm.Event{Kind: shm.EventAdmin, Address: "127.0.0.1:9200", Label: "app,web",
		Old: uint8(shm.Ready), New: uint8(shm.Drain), Pid: 7})
	waitFor(t, &out, "admin  app,web  127.0.0.1:9200  ready -> drain  pid=7\n")
	code, errs := stop()
	if code != 0 || errs != "" {
		t.Errorf("interrupted tail: exit %d, stderr %q; want 0 and nothing", code, errs)
	}
}

func TestTailJSON(t *testing.T) {
	path, tab := eventTable(t)
	tab.AppendEvent(healthEvent(0))
	tab.AppendEvent(shm.Event{Kind: shm.EventAdmin, Slot: 1, Address: "10.0.0.1:80", Label: "app", Old: uint8(shm.Ready), New: uint8(shm.Maint), Pid: 9})
	tab.AppendEvent(shm.Event{Kind: shm.EventOwner, Slot: 1, Address: "10.0.0.1:80", Label: "app", Pid: 4243, Extra: 4242})
	tab.AppendEvent(shm.Event{Kind: shm.EventPassive, Address: "10.0.0.1:80", Label: "app", Old: uint8(shm.Up), New: uint8(shm.Down), Reason: uint8(probe.ConnectRefused), Pid: 4243})
	code, out, errs := runHcctl("--table", path, "tail", "--json", "--no-follow")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	var got []status.Event
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var e status.Event
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		got = append(got, e)
	}
	if len(got) != 4 {
		t.Fatalf("%d events, want 4:\n%s", len(got), out)
	}
	now := time.Now().UnixMilli()
	for i, e := range got {
		if e.Seq != uint64(i) || e.TimeUnixMs < now-60_000 || e.TimeUnixMs > now {
			t.Errorf("event %d: seq %d, time %d (now %d)", i, e.Seq, e.TimeUnixMs, now)
		}
	}
	for i, want := range []string{
		"health app 127.0.0.1:9100 up down bad_status 100 0",
		"admin app 10.0.0.1:80 ready maint  9 0",
		"owner app 10.0.0.1:80 4242 4243  4243 4242",
		"passive app 10.0.0.1:80 up down connect_refused 4243 0",
	} {
		e := got[i]
		if s := fmt.Sprintf("%s %s %s %s %s %s %d %d", e.Kind, e.Upstream, e.Address, e.Old, e.New, e.Reason, e.Pid, e.Extra); s != want {
			t.Errorf("event %d = %q, want %q", i, s, want)
		}
	}
	for _, key := range []string{"seq", "time_unix_ms", "kind", "upstream", "address", "old", "new", "reason", "pid", "extra"} {
		if !strings.Contains(out, `"`+key+`":`) {
			t.Errorf("JSON lacks %q: %s", key, out)
		}
	}
}

// gateWriter takes the first write, reports it on wrote and blocks it until gate is closed: a
// reader stalled on a slow terminal.
type gateWriter struct {
	syncBuffer
	once  sync.Once
	wrote chan struct{}
	gate  chan struct{}
}

func (g *gateWriter) Write(p []byte) (int, error) {
	n, err := g.syncBuffer.Write(p)
	g.once.Do(func() {
		close(g.wrote)
		<-g.gate
	})
	return n, err
}

// A tail that fell more than a ring behind is told how many events it missed, then goes on
// with the oldest event the ring still holds.
func TestTailFellBehind(t *testing.T) {
	for _, mode := range []struct{ flag, missed string }{{"--json=false", "hcctl: missed 5 events\n"}, {"--json", "{\"missed\":5}\n"}} {
		t.Run(mode.flag, func(t *testing.T) {
			path, tab := eventTable(t)
			tab.AppendEvent(healthEvent(0))
			out := &gateWriter{wrote: make(chan struct{}), gate: make(chan struct{})}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan int, 1)
			var errb syncBuffer
			go func() { done <- run(ctx, []string{"--table", path, "tail", "-n", "1", mode.flag}, out, &errb) }()
			select {
			case <-out.wrote: // tail printed event 0 and is stuck writing it
			case <-time.After(5 * time.Second):
				t.Fatal("tail printed nothing in 5s")
			}
			for i := 1; i <= shm.EventCap+5; i++ {
				tab.AppendEvent(healthEvent(i % 100))
			}
			close(out.gate)
			waitFor(t, out, mode.missed)
			// Then the rest of the ring: events 6 to EventCap+5.
			deadline := time.Now().Add(5 * time.Second)
			for strings.Count(out.String(), "\n") < 1+1+shm.EventCap && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			cancel()
			if code := <-done; code != 0 {
				t.Errorf("exit %d, stderr %q", code, errb.String())
			}
			got := out.String()
			if n := strings.Count(got, "\n"); n != 1+1+shm.EventCap {
				t.Errorf("%d lines, want the first event, the missed line and %d events", n, shm.EventCap)
			}
			if i := strings.Index(got, mode.missed); i != strings.Index(got, "\n")+1 {
				t.Errorf("missed line at %d, want right after the first event", i)
			}
		})
	}
}

func TestTailSince(t *testing.T) {
	path, tab := eventTable(t)
	now := time.Now()
	for i, age := range []time.Duration{3 * time.Hour, 90 * time.Minute, 30 * time.Minute, 10 * time.Second, time.Second} {
		ev := healthEvent(i)
		ev.TimeMs = now.Add(-age).UnixMilli()
		tab.AppendEvent(ev)
	}
	for _, tc := range []struct {
		since string
		want  []int
	}{
		{"1m", []int{3, 4}},
		{"1h", []int{2, 3, 4}},
		{"2h", []int{1, 2, 3, 4}},
		{"24h", []int{0, 1, 2, 3, 4}},
		{"500ms", nil},
	} {
		code, out, errs := runHcctl("--table", path, "tail", "--since", tc.since, "--no-follow")
		if code != 0 || errs != "" {
			t.Errorf("--since %s: exit %d, stderr %q", tc.since, code, errs)
			continue
		}
		var want strings.Builder
		for _, i := range tc.want {
			fmt.Fprintf(&want, "127.0.0.1:%d;", 9100+i)
		}
		var got strings.Builder
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) > 3 {
				got.WriteString(f[3] + ";")
			}
		}
		if got.String() != want.String() {
			t.Errorf("--since %s: got %s, want %s", tc.since, got.String(), want.String())
		}
	}
	// -n 0 --no-follow prints nothing; -n larger than the ring is fine.
	if code, out, _ := runHcctl("--table", path, "tail", "-n", "0", "--no-follow"); code != 0 || out != "" {
		t.Errorf("-n 0: exit %d, %q", code, out)
	}
	if code, out, _ := runHcctl("--table", path, "tail", "-n", "100000", "--no-follow"); code != 0 || strings.Count(out, "\n") != 5 {
		t.Errorf("-n 100000: exit %d, %q", code, out)
	}
}

func TestTailUsage(t *testing.T) {
	path, _ := eventTable(t)
	for _, tc := range []struct {
		args []string
		code int
		errs string
	}{
		{[]string{"tail", "-n", "3", "--since", "1m"}, 2, "not both"},
		{[]string{"tail", "-n", "-1"}, 2, "must not be negative"},
		{[]string{"tail", "--since", "0s"}, 2, "must be positive"},
		{[]string{"tail", "--since", "soon"}, 2, "invalid value"},
		{[]string{"tail", "now"}, 2, `unexpected argument "now"`},
	} {
		code, _, errs := runHcctl(append([]string{"--table", path}, tc.args...)...)
		if code != tc.code || !strings.Contains(errs, tc.errs) {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", tc.args, code, errs, tc.code, tc.errs)
		}
	}
	code, out, _ := runHcctl("tail", "--help")
	if code != 0 || !strings.Contains(out, "--since DURATION") || !strings.Contains(out, "missed N events") {
		t.Errorf("tail --help: exit %d:\n%s", code, out)
	}
}
