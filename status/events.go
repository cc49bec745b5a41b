package status

import (
	"bufio"
	"encoding/json"
	"html"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"hcproxy/shm"
)

const (
	defaultBacklog = 20               // events a new stream starts with, without ?n=
	eventBatch     = 256              // events read from the ring at a time
	streamWrite    = 10 * time.Second // a client that does not take a write within this is dropped
)

// serveEvents streams the event ring: Server-Sent Events by default (id: seq, event: kind,
// data: the Event as JSON), ?format=text for one Event.Line per event. It starts with the last
// ?n=N events (default 20, at most shm.EventCap), or after the Last-Event-ID a reconnecting
// client sends, then polls the ring until the client goes away, the server closes the connection
// or the worker serving it starts draining. Events the ring overwrote before they were sent are
// reported as an "missed" event (a "missed N events" line). An idle stream sends a comment every
// heartbeat. Each write is flushed. The stream lifts the server's read deadline (NewServer's
// ReadTimeout), so it lives as long as its client.
func (h *handler) serveEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	format := q.Get("format")
	if format != "" && format != "sse" && format != "text" && format != "html" {
		badRequest(w, "unknown format %q (want sse, text or html)", format)
		return
	}
	n := defaultBacklog
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 || v > shm.EventCap {
			badRequest(w, "n %q must be a number of events in 0..%d", s, shm.EventCap)
			return
		}
		n = v
	}
	head := h.t.EventHead()
	from := head - min(head, uint64(n))
	if s := r.Header.Get("Last-Event-ID"); s != "" {
		if id, err := strconv.ParseUint(s, 10, 64); err == nil && id < head {
			from = id + 1
		}
	}

	st := &stream{rc: http.NewResponseController(w), bw: bufio.NewWriter(w), text: format == "text", html: format == "html"}
	hd := w.Header()
	switch {
	case st.text:
		hd.Set("Content-Type", "text/plain; charset=utf-8")
	case st.html:
		hd.Set("Content-Type", "text/html; charset=utf-8")
	default:
		hd.Set("Content-Type", "text/event-stream")
	}
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no") // a buffering proxy in front would hold the stream back
	hd.Set("X-Content-Type-Options", "nosniff")
	// ReadTimeout is for reading requests. net/http (1.26, 1.27) already lifts it when it starts
	// the background read that watches for the client going away; the stream does not rely on
	// that, since a read that hit the deadline would cancel ctx and end it.
	st.rc.SetReadDeadline(time.Time{})
	defer st.rc.SetWriteDeadline(time.Time{}) // a keep-alive connection's next request must not inherit it
	w.WriteHeader(http.StatusOK)
	st.arm()
	if st.html {
		st.bw.WriteString(eventsHead)
	}
	if err := st.flush(); err != nil {
		return
	}

	ctx := r.Context()
	poll := time.NewTicker(h.poll)
	defer poll.Stop()
	lastWrite := time.Now()
	for {
		for {
			evs, next, missed := h.t.ReadEvents(from, eventBatch)
			from = next
			if missed == 0 && len(evs) == 0 {
				break
			}
			st.arm()
			if missed > 0 {
				st.missed(missed)
			}
			for _, ev := range evs {
				st.event(NewEvent(ev))
			}
			if err := st.flush(); err != nil {
				return
			}
			lastWrite = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
		}
		if h.draining() {
			return
		}
		if time.Since(lastWrite) >= h.heartbeat {
			st.arm()
			st.comment("heartbeat " + time.Now().UTC().Format(time.RFC3339))
			if err := st.flush(); err != nil {
				return
			}
			lastWrite = time.Now()
		}
	}
}

// draining reports whether the worker process serving the request has been told to drain (or
// is marked dead), so that its streams end instead of holding the drain up until
// shutdown_timeout. A process that is not in the worker table (a test, hcctl) never drains.
func (h *handler) draining() bool {
	pid := os.Getpid()
	for _, w := range h.t.Workers() {
		if w.Token.Pid() == pid && (w.State == shm.WorkerDraining || w.State == shm.WorkerDead) {
			return true
		}
	}
	return false
}

// stream writes one event stream in its format. Writes are buffered until flush.
type stream struct {
	rc   *http.ResponseController
	bw   *bufio.Writer
	text bool // one Event.Line per event
	html bool // a page whose list grows by one line per event as they come (eventsHead)
}

func (s *stream) event(e Event) {
	if s.html {
		s.bw.WriteString(eventHTML(e))
		return
	}
	if s.text {
		s.bw.WriteString(e.Line() + "\n")
		return
	}
	data, _ := json.Marshal(e) // cannot fail: strings and numbers only
	s.bw.WriteString("id: " + strconv.FormatUint(e.Seq, 10) + "\nevent: " + e.Kind + "\ndata: ")
	s.bw.Write(data)
	s.bw.WriteString("\n\n")
}

func (s *stream) missed(n uint64) {
	if s.html {
		s.bw.WriteString(`<div class="ev missed">missed ` + strconv.FormatUint(n, 10) + " events (the ring overwrote them)</div>\n")
		return
	}
	if s.text {
		s.bw.WriteString("missed " + strconv.FormatUint(n, 10) + " events\n")
		return
	}
	s.bw.WriteString("event: missed\ndata: {\"missed\": " + strconv.FormatUint(n, 10) + "}\n\n")
}

func (s *stream) comment(c string) {
	if s.html {
		s.bw.WriteString("<!-- " + html.EscapeString(c) + " -->\n")
		return
	}
	if s.text {
		s.bw.WriteString("# " + c + "\n")
		return
	}
	s.bw.WriteString(": " + c + "\n\n")
}

// arm gives the writes that follow streamWrite to complete, so that a client that stopped
// reading cannot hold the handler forever. Not every writer supports deadlines; the stream works
// without.
func (s *stream) arm() { s.rc.SetWriteDeadline(time.Now().Add(streamWrite)) }

// flush sends what was written.
func (s *stream) flush() error {
	if err := s.bw.Flush(); err != nil {
		return err
	}
	return s.rc.Flush()
}

// eventsHead starts the ?format=html view of the event stream: one page, no script, whose list
// the browser shows growing as the stream's lines arrive (each flushed), newest at the bottom.
const eventsHead = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hcproxy events</title>
<style>
body{font:13px/1.5 system-ui,sans-serif;margin:12px 16px;color:#222}
h1{font-size:18px;margin:0 0 .3em}.meta{color:#555}
.ev{font:12px/1.6 ui-monospace,monospace;border-bottom:1px solid #eee;padding:1px 4px;white-space:pre-wrap}
.ev time{color:#666}.ev b{display:inline-block;min-width:5em}
.to-up{color:#171;font-weight:bold}.to-down{color:#c11;font-weight:bold}.to-checking{color:#a70;font-weight:bold}
.ev.admin b{color:#36c}.ev.owner{color:#777}.ev.passive b{color:#d70}.missed{background:#fff3c4}
</style>
</head>
<body>
<h1>hcproxy events</h1>
<p class="meta">Live: each event appears below as it happens (health, admin, owner and passive changes; newest last). <a href="/status">status page</a> · <a href="?format=text">text</a> · <a href="?">Server-Sent Events</a></p>
<div id="events">
`

// eventHTML is one event as a line of the HTML view.
func eventHTML(e Event) string {
	up := e.Upstream
	if up == "" {
		up = "-"
	}
	var b strings.Builder
	b.WriteString(`<div class="ev ` + html.EscapeString(e.Kind) + `"><time>`)
	b.WriteString(time.UnixMilli(e.TimeUnixMs).UTC().Format("2006-01-02 15:04:05.000"))
	b.WriteString("</time> <b>" + html.EscapeString(e.Kind) + "</b> " + html.EscapeString(up) + " <code>" + html.EscapeString(e.Address) + "</code> ")
	b.WriteString(html.EscapeString(e.Old) + ` → <span class="to-` + html.EscapeString(e.New) + `">` + html.EscapeString(e.New) + "</span>")
	if e.Reason != "" {
		b.WriteString(" (" + html.EscapeString(e.Reason) + ")")
	}
	b.WriteString(" pid " + strconv.Itoa(e.Pid) + "</div>\n")
	return b.String()
}
