package upstream

import "net/http"

// Pool is the servers of one upstream behind its balancer: primaries first, backup servers only
// when no primary is available, and when nothing is available either a refusal (all_down =
// "fail") or a pick that ignores health (all_down = "any", as nginx does).
type Pool struct {
	primary Balancer
	backup  Balancer // nil without backup servers
	anyDown bool
}

// NewPool builds the pool of an upstream's servers with the named balancer.
func NewPool(balancer, hashKey, allDown string, servers []*Server) *Pool {
	var primaries, backups []*Server
	for _, s := range servers {
		if s.Backup {
			backups = append(backups, s)
		} else {
			primaries = append(primaries, s)
		}
	}
	p := &Pool{primary: New(balancer, hashKey, primaries), anyDown: allDown == "any"}
	if len(backups) > 0 {
		p.backup = New(balancer, hashKey, backups)
	}
	return p
}

// Pick returns a server for r that also passes also (nil: any; a retry excludes the servers it
// tried), or nil when none may take it. degraded is true when the server was picked although no
// server is available (all_down = "any").
func (p *Pool) Pick(r *http.Request, also func(*Server) bool) (s *Server, degraded bool) {
	avail, anyway := Available, NotInMaintenance
	if also != nil {
		avail = func(s *Server) bool { return Available(s) && also(s) }
		anyway = func(s *Server) bool { return NotInMaintenance(s) && also(s) }
	}
	if s = p.primary.Pick(r, avail); s != nil {
		return s, false
	}
	if p.backup != nil {
		if s = p.backup.Pick(r, avail); s != nil {
			return s, false
		}
	}
	if p.anyDown {
		if s = p.primary.Pick(r, anyway); s != nil {
			return s, true
		}
	}
	return nil, false
}

// PickKey is Pick for callers that have no *http.Request (the fast path): key is what the hash
// balancer would take from the request (see NewHash's hashKey); other balancers ignore it. It
// does not retain key, so key may alias a reused buffer.
func (p *Pool) PickKey(key string, also func(*Server) bool) (s *Server, degraded bool) {
	avail, anyway := Available, NotInMaintenance
	if also != nil {
		avail = func(s *Server) bool { return Available(s) && also(s) }
		anyway = func(s *Server) bool { return NotInMaintenance(s) && also(s) }
	}
	if s = pickKey(p.primary, key, avail); s != nil {
		return s, false
	}
	if p.backup != nil {
		if s = pickKey(p.backup, key, avail); s != nil {
			return s, false
		}
	}
	if p.anyDown {
		if s = pickKey(p.primary, key, anyway); s != nil {
			return s, true
		}
	}
	return nil, false
}

func pickKey(b Balancer, key string, ok func(*Server) bool) *Server {
	if h, isHash := b.(*Hash); isHash {
		return h.PickKey(key, ok)
	}
	return b.Pick(nil, ok) // the other balancers do not look at the request
}
