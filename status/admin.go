package status

import (
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"

	"hcproxy/shm"
)

// maxAdminForm bounds the body of an admin request.
const maxAdminForm = 4 << 10

// parseAdmin maps "drain", "maint" and "ready" to their admin states.
func parseAdmin(s string) (shm.Admin, bool) {
	for _, a := range []shm.Admin{shm.Ready, shm.Drain, shm.Maint} {
		if s == a.String() {
			return a, true
		}
	}
	return 0, false
}

// serveAdmin handles POST /status/admin with the form fields upstream, server and state: it sets
// the admin state of every slot of that server whose label names the upstream (normally one) and
// appends an admin event for each slot it changed. Cross-origin browser requests were refused
// before it runs.
func (h *handler) serveAdmin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxAdminForm)
	if err := r.ParseForm(); err != nil {
		badRequest(w, "cannot read the form: %v", err)
		return
	}
	upstream, server, state := r.PostFormValue("upstream"), r.PostFormValue("server"), r.PostFormValue("state")
	if upstream == "" || server == "" || state == "" {
		badRequest(w, "want form fields upstream, server and state (drain, maint or ready)")
		return
	}
	a, ok := parseAdmin(state)
	if !ok {
		badRequest(w, "unknown state %q (want drain, maint or ready)", state)
		return
	}
	var done []string
	for _, in := range h.t.Snapshot().Slots {
		if in.Address != server || !slices.Contains(strings.Split(in.Label, ","), upstream) {
			continue
		}
		s := h.t.Slot(in.Index)
		if !s.Used() || s.Address() != server || s.Label() != in.Label {
			continue // freed or reused since the snapshot
		}
		old := s.SetAdmin(a)
		if old != a {
			h.t.AppendEvent(shm.Event{Kind: shm.EventAdmin, Slot: in.Index, Address: server, Label: in.Label,
				Old: uint8(old), New: uint8(a), Pid: os.Getpid()})
			h.o.Log.Info("admin state changed", "upstream", in.Label, "server", server, "old", old.String(),
				"new", a.String(), "client", r.RemoteAddr)
		}
		done = append(done, fmt.Sprintf("%s (was %s)", a, old))
	}
	if len(done) == 0 {
		http.Error(w, fmt.Sprintf("404 not found: no server %s in upstream %s", server, upstream), http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintf(w, "ok: upstream %s server %s now %s\n", upstream, server, strings.Join(done, ", "))
}
