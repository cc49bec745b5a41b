package upstream

import (
	"sync"
)

// LeastConn picks the server with the fewest requests in flight relative to its weight, counted
// across all workers in the shared table (not per worker); ties go round robin.
type LeastConn struct {
	mu      sync.Mutex
	servers []*Server
	next    int
}

var _ Balancer = (*LeastConn)(nil)

// NewLeastConn returns a least-connections balancer over servers.
func NewLeastConn(servers []*Server) *LeastConn { return &LeastConn{servers: servers} }

// Pick implements Balancer.
func (l *LeastConn) Pick(_ string, ok func(*Server) bool) *Server {
	now := clock(l.servers)
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.servers)
	var best *Server
	var bestActive, bestWeight int64
	bestAt := 0
	for i := 0; i < n; i++ {
		j := (l.next + i) % n
		s := l.servers[j]
		if !ok(s) {
			continue
		}
		a, w := max(s.Slot.Active(), 0), int64(s.weightAt(now))
		if w <= 0 {
			continue
		}
		// a/w < bestActive/bestWeight, without division.
		if best == nil || a*bestWeight < bestActive*w {
			best, bestActive, bestWeight, bestAt = s, a, w, j
		}
	}
	if best != nil {
		l.next = (bestAt + 1) % n
	}
	return best
}
