package status

import (
	"fmt"
	"slices"
	"strings"
)

// Filter selects backends for every format of the status page (and for hcctl dump). The zero
// Filter keeps everything.
type Filter struct {
	// Upstream keeps backends used by the upstream of that name (a backend's Upstream lists
	// several names, comma separated, when upstreams share it); "" keeps all.
	Upstream string
	// State keeps backends whose health is up, down or checking, or whose admin state is drain
	// or maint; "" keeps all.
	State string
}

// ParseFilter checks the values of ?upstream= and ?state= and returns their Filter. An unknown
// state is an error naming the accepted ones.
func ParseFilter(upstream, state string) (Filter, error) {
	switch state {
	case "", "up", "down", "checking", "drain", "maint":
	default:
		return Filter{}, fmt.Errorf("unknown state %q (want up, down, checking, drain or maint)", state)
	}
	return Filter{Upstream: upstream, State: state}, nil
}

// Keep reports whether b passes the filter.
func (f Filter) Keep(b Backend) bool {
	if f.Upstream != "" && !slices.Contains(strings.Split(b.Upstream, ","), f.Upstream) {
		return false
	}
	switch f.State {
	case "":
		return true
	case "drain", "maint":
		return b.Admin == f.State
	}
	return b.State == f.State
}

// Apply removes the backends of d that the filter does not keep, and the upstream summaries of
// other upstreams than Filter.Upstream, in place.
func (f Filter) Apply(d *Document) {
	if f != (Filter{}) {
		d.Backends = slices.DeleteFunc(d.Backends, func(b Backend) bool { return !f.Keep(b) })
		d.Upstreams = slices.DeleteFunc(d.Upstreams, func(u Upstream) bool {
			return f.Upstream != "" && !slices.Contains(strings.Split(u.Name, ","), f.Upstream)
		})
	}
}
