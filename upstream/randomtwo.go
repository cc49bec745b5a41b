package upstream

import (
	"math/rand/v2"
)

// RandomTwo is the power of two random choices: it draws two servers at random (in proportion
// to weight) and takes the one with fewer requests in flight relative to its weight, counted
// across all workers. It spreads load nearly as well as least_conn without every worker
// converging on the same least-loaded server.
type RandomTwo struct {
	servers []*Server
}

var _ Balancer = (*RandomTwo)(nil)

// NewRandomTwo returns a power-of-two-choices balancer over servers.
func NewRandomTwo(servers []*Server) *RandomTwo { return &RandomTwo{servers: servers} }

// Pick implements Balancer.
func (b *RandomTwo) Pick(_ string, ok func(*Server) bool) *Server {
	now := clock(b.servers)
	total := 0
	for _, s := range b.servers {
		if ok(s) {
			total += s.weightAt(now)
		}
	}
	if total == 0 {
		return nil
	}
	a := b.draw(rand.IntN(total), now, ok)
	c := b.draw(rand.IntN(total), now, ok)
	if max(c.Slot.Active(), 0)*int64(a.weightAt(now)) < max(a.Slot.Active(), 0)*int64(c.weightAt(now)) {
		return c
	}
	return a
}

// draw returns the server at weighted position n among the servers ok accepts.
func (b *RandomTwo) draw(n int, now int64, ok func(*Server) bool) *Server {
	var last *Server
	for _, s := range b.servers {
		if !ok(s) {
			continue
		}
		last = s
		w := s.weightAt(now)
		if w <= 0 {
			continue
		}
		if n < w {
			return s
		}
		n -= w
	}
	return last
}
