package status

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"hcproxy/shm"
)

// maxRefresh bounds ?refresh=N, in seconds.
const maxRefresh = 3600

// Handler serves the status page from t: GET or HEAD on /status or /, HTML by default,
// ?format=json for the Document, ?refresh=N (1..3600 seconds) to make the HTML page reload itself.
// It answers 404 on any other path, 405 on any other method and 400 on an unknown format or a bad
// refresh. It only reads t.
func Handler(t *shm.Table) http.Handler { return &handler{t: t, now: time.Now} }

type handler struct {
	t   *shm.Table
	now func() time.Time
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/status" && r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed: use GET or HEAD", http.StatusMethodNotAllowed)
		return
	}
	q := r.URL.Query()
	format := q.Get("format")
	if format != "" && format != "html" && format != "json" {
		http.Error(w, fmt.Sprintf("400 bad request: unknown format %q (want html or json)", format), http.StatusBadRequest)
		return
	}
	refresh := 0
	if s := q.Get("refresh"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxRefresh {
			http.Error(w, fmt.Sprintf("400 bad request: refresh %q must be a number of seconds in 1..%d", s, maxRefresh), http.StatusBadRequest)
			return
		}
		refresh = n
	}

	now := h.now()
	doc := Build(h.t.Snapshot(), now)
	var buf bytes.Buffer
	var ctype string
	switch format {
	case "json":
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			http.Error(w, "500 internal error: "+err.Error(), http.StatusInternalServerError)
			return
		}
		ctype = "application/json"
	default:
		if err := pageTmpl.Execute(&buf, newPage(doc, now, refresh)); err != nil {
			http.Error(w, "500 internal error: "+err.Error(), http.StatusInternalServerError)
			return
		}
		ctype = "text/html; charset=utf-8"
	}
	hd := w.Header()
	hd.Set("Content-Type", ctype)
	hd.Set("Content-Length", strconv.Itoa(buf.Len()))
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes())
	}
}
