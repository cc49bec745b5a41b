package upstream

import (
	"sync"

	"hcproxy/shm"
)

// Server is one server of an upstream as a worker sees it.
type Server struct {
	Address string
	Weight  int
	Slot    shm.Slot
}

// Balancer picks a server for a request.
type Balancer interface {
	// Pick returns an available server, or nil when none is.
	Pick() *Server
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
func (r *RoundRobin) Pick() *Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	best, total := -1, 0
	for i, s := range r.servers {
		if !s.Slot.Available() {
			continue
		}
		r.current[i] += s.Weight
		total += s.Weight
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
