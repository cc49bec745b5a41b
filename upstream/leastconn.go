package upstream

import (
	"net/http"
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
func (l *LeastConn) Pick(_ *http.Request, ok func(*Server) bool) *Server {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.servers)
	var best *Server
	var bestActive int64
	bestAt := 0
	for i := 0; i < n; i++ {
		j := (l.next + i) % n
		s := l.servers[j]
		if !ok(s) {
			continue
		}
		a := max(s.Slot.Active(), 0)
		// a/w < bestActive/bestWeight, without division.
		if best == nil || a*int64(best.Weight) < bestActive*int64(s.Weight) {
			best, bestActive, bestAt = s, a, j
		}
	}
	if best != nil {
		l.next = (bestAt + 1) % n
	}
	return best
}
