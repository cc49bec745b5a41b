package status

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"hcproxy/probe"
	"hcproxy/shm"
)

// waitFor bounds every wait for a stream message.
const waitFor = 5 * time.Second

// sseMsg is one Server-Sent Events message, or a comment (Comment set, the rest empty).
type sseMsg struct {
	ID, Event, Data, Comment string
}

// openStream connects to the event stream at path with the extra request headers (name, value
// pairs) and returns the response and a channel of its lines. The stream is closed when the test
// ends.
func openStream(t *testing.T, url string, header ...string) (*http.Response, <-chan string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return resp, lines
}

// nextLine returns the next line of a stream, failing the test after waitFor or at its end.
func nextLine(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("stream ended")
		}
		return l
	case <-time.After(waitFor):
		t.Fatal("no line from the stream within", waitFor)
	}
	return ""
}

// nextMsg reads the next SSE message (or comment) from a stream.
func nextMsg(t *testing.T, lines <-chan string) sseMsg {
	t.Helper()
	var m sseMsg
	for {
		l := nextLine(t, lines)
		switch {
		case l == "":
			if m != (sseMsg{}) {
				return m
			}
		case strings.HasPrefix(l, ":"):
			m.Comment = strings.TrimSpace(l[1:])
		default:
			k, v, _ := strings.Cut(l, ": ")
			switch k {
			case "id":
				m.ID = v
			case "event":
				m.Event = v
			case "data":
				m.Data = v
			default:
				t.Fatalf("unexpected line %q", l)
			}
		}
	}
}

func healthEvent(i int) shm.Event {
	return shm.Event{Kind: shm.EventHealth, Slot: 1, Address: "10.0.0.2:80", Label: "app",
		Old: uint8(shm.Up), New: uint8(shm.Down), Reason: uint8(probe.BadStatus), Pid: 100 + i, Extra: uint64(i)}
}

func TestEventsSSEBacklogThenLive(t *testing.T) {
	f := newFixture(t)
	for i := range 5 {
		f.tab.AppendEvent(healthEvent(i))
	}
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	t.Cleanup(srv.Close) // after the streams, which openStream closes in its own cleanup

	resp, lines := openStream(t, srv.URL+"/status/events?n=2")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, ct)
	}
	for _, want := range []string{"3", "4"} {
		m := nextMsg(t, lines)
		if m.ID != want || m.Event != "health" {
			t.Fatalf("message %+v, want id %s event health", m, want)
		}
		var e Event
		if err := json.Unmarshal([]byte(m.Data), &e); err != nil {
			t.Fatal(err)
		}
		if e.Seq != 3 && e.Seq != 4 || e.Kind != "health" || e.Upstream != "app" || e.Address != "10.0.0.2:80" ||
			e.Old != "up" || e.New != "down" || e.Reason != "bad_status" || e.Pid != 100+int(e.Seq) ||
			e.Extra != e.Seq || e.TimeUnixMs == 0 {
			t.Errorf("event %+v", e)
		}
	}
	// A new event reaches the connected client promptly.
	f.tab.AppendEvent(shm.Event{Kind: shm.EventAdmin, Address: "10.0.0.9:81", Label: "api", Old: uint8(shm.Ready), New: uint8(shm.Maint), Pid: 9})
	m := nextMsg(t, lines)
	var e Event
	if err := json.Unmarshal([]byte(m.Data), &e); err != nil {
		t.Fatal(err)
	}
	if m.ID != "5" || m.Event != "admin" || e.Old != "ready" || e.New != "maint" || e.Reason != "" || e.Upstream != "api" {
		t.Errorf("live message %+v, event %+v", m, e)
	}
	// Owner events name pids.
	f.tab.AppendEvent(shm.Event{Kind: shm.EventOwner, Address: "10.0.0.9:81", Label: "api", Pid: 4243, Extra: 4242})
	if err := json.Unmarshal([]byte(nextMsg(t, lines).Data), &e); err != nil || e.Old != "4242" || e.New != "4243" {
		t.Errorf("owner event %+v (%v)", e, err)
	}
}

// A client that resumes further back than the ring holds is told how many events it missed.
func TestEventsMissed(t *testing.T) {
	f := newFixture(t)
	for i := range shm.EventCap + 10 {
		f.tab.AppendEvent(healthEvent(i))
	}
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	t.Cleanup(srv.Close) // after the streams, which openStream closes in its own cleanup

	// Last-Event-ID 0: the client has seen event 0, so 1..9 are gone (the ring holds 10..EventCap+9).
	_, lines := openStream(t, srv.URL+"/status/events", "Last-Event-ID", "0")
	m := nextMsg(t, lines)
	var missed struct{ Missed int }
	if m.Event != "missed" || json.Unmarshal([]byte(m.Data), &missed) != nil || missed.Missed != 9 {
		t.Fatalf("first message %+v, want a missed event of 9", m)
	}
	if m := nextMsg(t, lines); m.ID != "10" {
		t.Fatalf("after the gap: %+v, want id 10", m)
	}

	_, lines = openStream(t, srv.URL+"/status/events?format=text", "Last-Event-ID", "4")
	if l := nextLine(t, lines); l != "missed 5 events" {
		t.Fatalf("text stream starts with %q", l)
	}
}

// Resuming from a Last-Event-ID in the ring continues right after it, without a backlog.
func TestEventsResume(t *testing.T) {
	f := newFixture(t)
	for i := range 30 {
		f.tab.AppendEvent(healthEvent(i))
	}
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	t.Cleanup(srv.Close) // after the streams, which openStream closes in its own cleanup
	_, lines := openStream(t, srv.URL+"/status/events?n=1", "Last-Event-ID", "25")
	for _, want := range []string{"26", "27", "28", "29"} {
		if m := nextMsg(t, lines); m.ID != want {
			t.Fatalf("got %+v, want id %s", m, want)
		}
	}
}

func TestEventsText(t *testing.T) {
	f := newFixture(t)
	f.tab.AppendEvent(healthEvent(0))
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	t.Cleanup(srv.Close) // after the streams, which openStream closes in its own cleanup
	resp, lines := openStream(t, srv.URL+"/status/events?format=text")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("content type %q", ct)
	}
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z health app 10\.0\.0\.2:80 up->down reason=bad_status pid=100$`)
	if l := nextLine(t, lines); !re.MatchString(l) {
		t.Fatalf("line %q", l)
	}
	f.tab.AppendEvent(shm.Event{Kind: shm.EventAdmin, Address: "10.0.0.9:81", Old: uint8(shm.Drain), New: uint8(shm.Ready), Pid: 7})
	if l := nextLine(t, lines); !strings.HasSuffix(l, " admin - 10.0.0.9:81 drain->ready pid=7") {
		t.Fatalf("line %q", l)
	}
}

// An idle stream sends a heartbeat comment.
func TestEventsHeartbeat(t *testing.T) {
	f := newFixture(t)
	h := Handler(f.tab, Options{}).(*handler)
	h.heartbeat = 50 * time.Millisecond
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close) // after the streams, which openStream closes in its own cleanup
	_, lines := openStream(t, srv.URL+"/status/events")
	if m := nextMsg(t, lines); !strings.HasPrefix(m.Comment, "heartbeat ") {
		t.Fatalf("got %+v, want a heartbeat comment", m)
	}
	_, lines = openStream(t, srv.URL+"/status/events?format=text")
	if l := nextLine(t, lines); !strings.HasPrefix(l, "# heartbeat ") {
		t.Fatalf("got %q, want a heartbeat line", l)
	}
}

// A stream's handler returns when its client goes away, and when the worker serving it drains.
func TestEventsStreamEnds(t *testing.T) {
	f := newFixture(t)
	returned := make(chan struct{}, 1)
	h := Handler(f.tab, Options{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		returned <- struct{}{}
	}))
	t.Cleanup(srv.Close) // after the streams, which openStream closes in its own cleanup

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/status/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	resp.Body.Close()
	select {
	case <-returned:
	case <-time.After(waitFor):
		t.Fatal("handler still streaming after the client went away")
	}

	// This process becomes a worker of the table; when the master marks it draining, its
	// streams end.
	wi, err := f.tab.ReserveWorker(3)
	if err != nil {
		t.Fatal(err)
	}
	f.tab.Register(wi, os.Getpid())
	f.tab.SetWorkerState(wi, shm.WorkerReady)
	resp, lines := openStream(t, srv.URL+"/status/events?format=text&n=0")
	defer resp.Body.Close()
	f.tab.SetWorkerState(wi, shm.WorkerDraining)
	select {
	case <-returned:
	case <-time.After(waitFor):
		t.Fatal("handler still streaming after its worker started draining")
	}
	select {
	case l, ok := <-lines:
		if ok {
			t.Fatalf("line %q after the drain", l)
		}
	case <-time.After(waitFor):
		t.Fatal("client stream not ended")
	}
}

func TestEventsBadRequest(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	t.Cleanup(srv.Close) // after the streams, which openStream closes in its own cleanup
	for _, q := range []string{"n=-1", fmt.Sprintf("n=%d", shm.EventCap+1), "n=x", "format=json"} {
		resp, body := get(t, srv.URL+"/status/events?"+q)
		if resp.StatusCode != 400 || strings.Count(body, "\n") != 1 {
			t.Errorf("?%s = %d %q", q, resp.StatusCode, body)
		}
	}
	req, _ := http.NewRequest("POST", srv.URL+"/status/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET" {
		t.Errorf("POST = %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// TestEventsHTMLIsALiveList: ?format=html is a page whose list grows with each event appended
// after it opened (one escaped line per event, flushed), not Server-Sent Events text.
func TestEventsHTMLIsALiveList(t *testing.T) {
	f := newFixture(t)
	f.tab.AppendEvent(healthEvent(1))
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	t.Cleanup(srv.Close) // after the stream's cleanup: Close waits for the stream to end
	resp, lines := openStream(t, srv.URL+"/status/events?format=html&n=1")
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	evLine := func() string {
		for {
			if l := nextLine(t, lines); strings.HasPrefix(l, `<div class="ev `) {
				return l
			}
		}
	}
	first := evLine()
	for _, want := range []string{`<b>health</b> app <code>10.0.0.2:80</code> up → <span class="to-down">down</span> (bad_status) pid 101`} {
		if !strings.Contains(first, want) {
			t.Fatalf("event line %q lacks %q", first, want)
		}
	}
	ev := healthEvent(2)
	ev.Address = `<img src=x onerror=alert(1)>`
	f.tab.AppendEvent(ev) // appended while the page is open: it arrives as a new line
	if l := evLine(); strings.Contains(l, "<img") || !strings.Contains(l, "&lt;img") || !strings.Contains(l, "pid 102") {
		t.Fatalf("live line %q: want the new event, escaped", l)
	}
	if resp, body := get(t, srv.URL+"/status/events?format=bogus"); resp.StatusCode != 400 || !strings.Contains(body, "sse, text or html") {
		t.Errorf("?format=bogus = %d %q", resp.StatusCode, body)
	}
}
