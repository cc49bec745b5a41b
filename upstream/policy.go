package upstream

import (
	"log/slog"
	"strconv"
	"time"

	"hcproxy/shm"
)

// Policy is an upstream's per-request policy, one for both engines: which server each try of a
// request goes to, what the outcome of a try counts for in the shared slot (requests, requests
// in flight, errors, passive failures, ejection after consecutive 5xx) and whether the request
// is tried again (nginx's proxy_next_upstream). The engines differ only in how bytes move: each
// tells the policy what happened, in the same terms.
type Policy struct {
	name string
	pool *Pool
	home *shm.Slot // where a request no server could take is counted (homeSlot); nil: nowhere
	o    *Options
	log  *slog.Logger
}

// NewPolicy returns the policy of the upstream name over servers (in configuration order, at
// least one), picking from them by o's balancer.
func NewPolicy(name string, servers []*Server, o *Options) *Policy {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	return &Policy{name: name, pool: NewPool(o.Balancer, o.AllDown, servers), home: homeSlot(name, servers), o: o, log: log}
}

// homeSlot returns the slot that counts the upstream's requests that no server could take
// (Slot.CountNoServer): the first of its servers' slots that it has to itself (labelled with its
// name alone), else its first server's. Every worker and both engines choose the same one from
// the same configuration, and the status page and /metrics sum the count per slot label as they
// sum the rest, so it shows under the upstream's name whenever the upstream has a server of its
// own, and under the shared label ("a,b") when all its servers are shared. nil without
// servers (a configuration has at least one).
func homeSlot(name string, servers []*Server) *shm.Slot {
	for _, s := range servers {
		if s.Slot.Label() == name {
			return &s.Slot
		}
	}
	if len(servers) == 0 {
		return nil
	}
	return &servers[0].Slot
}

// Tries is one request's state across its tries. An engine keeps one per request (or reuses
// one per connection, after Reset).
type Tries struct {
	Key        string    // the request's hash key ("" unless the balancer is hash)
	Idempotent bool      // the request's method is idempotent (see Idempotent)
	Start      time.Time // when the request arrived, for the retry timeout
	N          int       // tries made
	Tried      []*Server // the servers tried, in order
}

// Reset readies t for a new request, keeping its slice.
func (t *Tries) Reset(key string, idempotent bool, start time.Time) {
	*t = Tries{Key: key, Idempotent: idempotent, Start: start, Tried: t.Tried[:0]}
}

func untried(tried []*Server, s *Server) bool {
	for _, x := range tried {
		if x == s {
			return false
		}
	}
	return true
}

// Pick returns the server of the request's first try, or nil when none may take it.
func (p *Policy) Pick(t *Tries) *Server {
	s, _ := p.pool.Pick(t.Key, nil)
	return s
}

// Begin counts a try of the request on s: one more request to s, and one more in flight (the
// engine counts it down when the try's response is done, or at once when the try failed).
func (p *Policy) Begin(t *Tries, s *Server) {
	t.N++
	t.Tried = append(t.Tried, s)
	s.Slot.AddActive(1)
	s.Slot.AddRequest()
}

// After records the outcome of the try on s (err, nil when a response head came, with its
// status) and says whether to try again and where: the next server, or nil to keep this
// outcome. now is the shared clock (shm.Now or shm.At); elapsed is the time since t.Start;
// replayable says the request can be sent again (no body byte was read from the client past
// what the engine holds, no response byte went to the client, the client is still there). The
// engine handles a failure of the client's side (FailClient) itself, before After: it is never
// the server's fault.
func (p *Policy) After(t *Tries, s *Server, err error, status int, now int64, elapsed time.Duration, replayable bool) (kind int, next *Server) {
	o := p.o
	kind = Classify(err)
	if err == nil && o.Retry.On.Status[status] {
		kind = FailStatus
	}
	if err == nil && o.Eject5xx > 0 && s.Slot.Response(now, status >= 500, o.Eject5xx, o.FailTimeout) {
		p.ejected(s, strconv.Itoa(o.Eject5xx)+" consecutive 5xx")
	}
	counted := kind == FailStatus || (kind == FailConnect && o.Retry.On.Connect) || (kind == FailTimeout && o.Retry.On.Timeout)
	if kind != FailNone && kind != FailStatus {
		s.Slot.AddError()
	}
	if counted && s.Slot.PassiveFailure(now, o.MaxFails, o.FailTimeout) {
		p.ejected(s, "max_fails")
	}
	if !counted || !p.canRetry(t, kind, elapsed, replayable) {
		return kind, nil
	}
	tried := t.Tried // captured by value, so that t does not escape (no allocation per request)
	next, _ = p.pool.Pick(t.Key, func(s *Server) bool { return untried(tried, s) })
	if next != nil {
		p.log.Info("retrying on another server", "upstream", p.name, "server", s.Address, "next", next.Address, "try", t.N+1, "after", FailName(kind, status))
	}
	return kind, next
}

// canRetry: within the tries and the time of the policy, only while the request can be sent
// again, and a non-idempotent request only after a refused connection (the one failure that
// proves the server did not act on it) unless the policy allows it.
func (p *Policy) canRetry(t *Tries, kind int, elapsed time.Duration, replayable bool) bool {
	r := &p.o.Retry
	if t.N > r.Tries || !replayable {
		return false
	}
	if r.Timeout > 0 && elapsed >= r.Timeout {
		return false
	}
	return t.Idempotent || r.NonIdempotent || kind == FailConnect
}

// Done counts a finished request, the one place both engines report it, with the same values
// their access log entries carry: in the slot of s, the server of its last try (Slot.
// CountRequest: status class, duration histogram, bytes, retries, upstream times, the reason
// hcproxy answered itself), or, with s nil and status 503 (no server could take it), in the
// upstream's home slot (Slot.CountNoServer, see homeSlot). It allocates nothing.
func (p *Policy) Done(t *Tries, s *Server, r *shm.Request) {
	if s == nil {
		if r.Status == 503 && p.home != nil {
			p.home.CountNoServer()
		}
		return // refused before a server was picked (400 and the like): no server's to count
	}
	r.Retries = max(t.N-1, 0)
	s.Slot.CountRequest(r)
}

// OwnReason says why an engine answered with status itself (its own 502 or 504, or a request
// the client abandoned: 499, 408), shm.OwnNone for any other status.
func OwnReason(status int) shm.OwnReason {
	switch status {
	case 502:
		return shm.OwnUpstreamError
	case 504:
		return shm.OwnTimeout
	case 499, 408:
		return shm.OwnClientClosed
	}
	return shm.OwnNone
}

func (p *Policy) ejected(s *Server, why string) {
	p.log.Warn("server ejected by passive checks", "upstream", p.name, "server", s.Address, "why", why, "for", p.o.FailTimeout)
	if p.o.OnEject != nil {
		p.o.OnEject(s, why)
	}
}

// FailName names a failure kind for logs: "connect", "timeout", the status, or "error".
func FailName(kind, status int) string {
	switch kind {
	case FailConnect:
		return "connect"
	case FailTimeout:
		return "timeout"
	case FailStatus:
		return strconv.Itoa(status)
	}
	return "error"
}

// Idempotent reports whether method is idempotent (RFC 9110 section 9.2.2): a request that may
// be retried after its server may have acted on it.
func Idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}
