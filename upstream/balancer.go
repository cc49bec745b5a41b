package upstream

import (
	"sync"
	"time"

	"hcproxy/shm"
)

// Server is one server of an upstream as a worker sees it.
type Server struct {
	Address   string
	Weight    int
	Backup    bool
	SlowStart time.Duration // ramp from low to full weight over this time after it comes up
	Slot      shm.Slot
}

// weightAt returns the server's effective weight (in units of 1/shm.WeightScale) at monotonic
// time now: shm.EffectiveWeight of its weight, its agent check's percentage and, when it has a
// slow start, its last transition to up. The status page shows the same function of the slot, so
// the two agree (where several upstreams share the slot, the page shows the first upstream's
// weight and slow start, as the master records them).
func (s *Server) weightAt(now int64) int {
	var up int64
	if s.SlowStart > 0 {
		up = s.Slot.UpSince()
	}
	return shm.EffectiveWeight(s.Weight, s.Slot.AgentWeight(), up, int64(s.SlowStart), now)
}

// clock returns shm.Now() when any server ramps (slow start), else 0: only then do balancers
// need the time.
func clock(servers []*Server) int64 {
	for _, s := range servers {
		if s.SlowStart > 0 {
			return shm.Now()
		}
	}
	return 0
}

// Balancer picks a server for a request among the servers that ok accepts. The request is
// known by its key only (what the hash balancer hashes, see KeyOf; "" for the others), so both
// engines pick through the one path, whatever they parsed the request into.
type Balancer interface {
	// Pick returns a server that ok accepts, or nil when there is none. It does not retain
	// key, which may alias a reused buffer.
	Pick(key string, ok func(*Server) bool) *Server
}

// Available is the one predicate every balancer uses in normal operation: the table says the
// server is up and its admin state is ready.
func Available(s *Server) bool { return s.Slot.Available() }

// NotInMaintenance accepts every server an operator has not put in maintenance: the fallback
// when every server is down and all_down = "any".
func NotInMaintenance(s *Server) bool { return s.Slot.State().Admin() != shm.Maint }

// New returns the named balancer ("round_robin", "least_conn", "hash", "random_two") over
// servers. An unknown name gives round robin (the config is validated before it gets here).
func New(name string, servers []*Server) Balancer {
	switch name {
	case "least_conn":
		return NewLeastConn(servers)
	case "hash":
		return NewHash(servers)
	case "random_two":
		return NewRandomTwo(servers)
	}
	return NewRoundRobin(servers)
}

// RoundRobin is smooth weighted round robin (nginx's algorithm): over any window of sum(weights)
// picks each available server is chosen in proportion to its weight, interleaved rather than in
// bursts. Servers that are not available are skipped and their share goes to the others.
type RoundRobin struct {
	mu      sync.Mutex
	servers []*Server
	current []int
}

var _ Balancer = (*RoundRobin)(nil)

// NewRoundRobin returns a balancer over servers.
func NewRoundRobin(servers []*Server) *RoundRobin {
	return &RoundRobin{servers: servers, current: make([]int, len(servers))}
}

// Pick implements Balancer.
func (r *RoundRobin) Pick(_ string, ok func(*Server) bool) *Server {
	now := clock(r.servers)
	r.mu.Lock()
	defer r.mu.Unlock()
	best, total := -1, 0
	for i, s := range r.servers {
		if !ok(s) {
			continue
		}
		w := s.weightAt(now)
		if w <= 0 {
			continue
		}
		r.current[i] += w
		total += w
		if best < 0 || r.current[i] > r.current[best] {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	r.current[best] -= total
	return r.servers[best]
}
