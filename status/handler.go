package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"hcproxy/shm"
)

// maxRefresh bounds ?refresh=N, in seconds.
const maxRefresh = 3600

// Options configure Handler. The zero Options serve loopback clients only, without admin actions,
// logging nowhere.
type Options struct {
	// Allowed reports whether a client address may use the listener; every other client gets 403
	// on every path. nil allows loopback addresses only.
	Allowed func(netip.Addr) bool
	// Admin enables POST /status/admin for allowed clients. When false the path does not exist
	// (404), like any other unknown path.
	Admin bool
	// Log receives admin changes and refused clients (at debug); nil discards.
	Log *slog.Logger
}

// Handler serves the status listener from t, the same answer from every worker:
//
//	GET /status, /          the status page: HTML, ?format=json or ?format=csv, with the filters
//	                        ?upstream=NAME and ?state=up|down|checking|drain|maint, and
//	                        ?refresh=N (1..3600 s) for the HTML page
//	GET /metrics            Prometheus metrics, one table snapshot per scrape
//	GET /status/events      the event ring as Server-Sent Events, or ?format=text lines
//	POST /status/admin      set a server's admin state (only with Options.Admin)
//
// A request with a chunked body gets 400 and its connection is closed: no path takes one, and
// net/http drops a Content-Length sent beside Transfer-Encoding, so a smuggling attempt (both)
// looks chunked too. A client that Options.Allowed refuses gets 403 on every path. Other errors:
// 404 on an unknown path, 405 on a wrong method, 400 on a bad parameter, each with a one-line
// body. Only admin actions write to t.
func Handler(t *shm.Table, o Options) http.Handler {
	h := &handler{t: t, o: o, now: time.Now, poll: 100 * time.Millisecond, heartbeat: 15 * time.Second}
	if h.o.Allowed == nil {
		h.o.Allowed = netip.Addr.IsLoopback
	}
	if h.o.Log == nil {
		h.o.Log = slog.New(slog.DiscardHandler)
	}
	h.metrics = newMetricsHandler(t, h.o.Log)
	if o.Admin {
		h.admin = http.NewCrossOriginProtection().Handler(http.HandlerFunc(h.serveAdmin))
	}
	return h
}

type handler struct {
	t         *shm.Table
	o         Options
	now       func() time.Time
	poll      time.Duration // how often an event stream looks for new events
	heartbeat time.Duration // how often an idle event stream sends a comment
	metrics   http.Handler
	admin     http.Handler // nil without Options.Admin
	rates     rates        // the upstream summaries of recent pages, for their rates
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(r.TransferEncoding) > 0 {
		w.Header().Set("Connection", "close") // what follows the body is not read as a request
		badRequest(w, "Transfer-Encoding is not accepted on the status listener")
		return
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !h.o.Allowed(ap.Addr().Unmap()) {
		h.o.Log.Debug("status client refused", "client", r.RemoteAddr, "path", r.URL.Path)
		http.Error(w, "403 forbidden: client address not allowed on the status listener", http.StatusForbidden)
		return
	}
	switch r.URL.Path {
	case "/", "/status":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			h.serveStatus(w, r)
		}
	case "/metrics":
		if allow(w, r, http.MethodGet, http.MethodHead) {
			h.metrics.ServeHTTP(w, r)
		}
	case "/status/events":
		if allow(w, r, http.MethodGet) {
			h.serveEvents(w, r)
		}
	case "/status/admin":
		if h.admin == nil {
			http.NotFound(w, r)
		} else if allow(w, r, http.MethodPost) {
			h.admin.ServeHTTP(w, r)
		}
	default:
		http.NotFound(w, r)
	}
}

// allow reports whether r's method is one of methods; if not it answers 405 with an Allow header.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	list := ""
	for i, m := range methods {
		if m == r.Method {
			return true
		}
		if i > 0 {
			list += ", "
		}
		list += m
	}
	w.Header().Set("Allow", list)
	http.Error(w, "405 method not allowed: use "+list, http.StatusMethodNotAllowed)
	return false
}

func badRequest(w http.ResponseWriter, format string, args ...any) {
	http.Error(w, "400 bad request: "+fmt.Sprintf(format, args...), http.StatusBadRequest)
}

// serveStatus serves the status page in its three formats, all from one Document.
func (h *handler) serveStatus(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	format := q.Get("format")
	if format != "" && format != "html" && format != "json" && format != "csv" {
		badRequest(w, "unknown format %q (want html, json or csv)", format)
		return
	}
	refresh := 0
	if s := q.Get("refresh"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxRefresh {
			badRequest(w, "refresh %q must be a number of seconds in 1..%d", s, maxRefresh)
			return
		}
		refresh = n
	}
	f, err := ParseFilter(q.Get("upstream"), q.Get("state"))
	if err != nil {
		badRequest(w, "%v", err)
		return
	}

	now := h.now()
	doc := Build(h.t.Snapshot(), now)
	if !doc.MasterRunning {
		// Workers serve this page, and a worker drains and exits when its master's lifeline
		// closes, so a page from a dead table would be a race; should it happen (or should the
		// handler be served from a leftover table), it says so instead of showing old states.
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "503 service unavailable: "+StaleLine(doc), http.StatusServiceUnavailable)
		return
	}
	f.Apply(&doc)
	var buf bytes.Buffer
	var ctype string
	switch format {
	case "json":
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		err = enc.Encode(doc)
		ctype = "application/json"
	case "csv":
		err = WriteCSV(&buf, doc.Backends)
		ctype = "text/csv; charset=utf-8; header=present"
	default:
		base, windowed := h.rates.window(now, doc.Upstreams)
		err = pageTmpl.Execute(&buf, newPage(doc, now, refresh, f, base, windowed))
		ctype = "text/html; charset=utf-8"
	}
	if err != nil {
		http.Error(w, "500 internal error: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", ctype)
	hd.Set("Content-Length", strconv.Itoa(buf.Len()))
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		io.Copy(w, &buf)
	}
}
