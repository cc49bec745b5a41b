package upstream

// Pool is the servers of one upstream behind its balancer: primaries first, backup servers only
// when no primary is available, and when nothing is available either a refusal (all_down =
// "fail") or a pick that ignores health (all_down = "any", as nginx does).
type Pool struct {
	primary Balancer
	backup  Balancer // nil without backup servers
	anyDown bool
}

// NewPool builds the pool of an upstream's servers with the named balancer.
func NewPool(balancer, allDown string, servers []*Server) *Pool {
	var primaries, backups []*Server
	for _, s := range servers {
		if s.Backup {
			backups = append(backups, s)
		} else {
			primaries = append(primaries, s)
		}
	}
	p := &Pool{primary: New(balancer, primaries), anyDown: allDown == "any"}
	if len(backups) > 0 {
		p.backup = New(balancer, backups)
	}
	return p
}

// Pick returns a server for the request whose hash key is key ("" unless the balancer is hash)
// that also passes also (nil: any; a retry excludes the servers it tried), or nil when none may
// take it. degraded is true when the server was picked although no server is available
// (all_down = "any"). Both engines pick through it; it does not retain key.
func (p *Pool) Pick(key string, also func(*Server) bool) (s *Server, degraded bool) {
	avail, anyway := Available, NotInMaintenance
	if also != nil {
		avail = func(s *Server) bool { return Available(s) && also(s) }
		anyway = func(s *Server) bool { return NotInMaintenance(s) && also(s) }
	}
	if s = p.primary.Pick(key, avail); s != nil {
		return s, false
	}
	if p.backup != nil {
		if s = p.backup.Pick(key, avail); s != nil {
			return s, false
		}
	}
	if p.anyDown {
		if s = p.primary.Pick(key, anyway); s != nil {
			return s, true
		}
	}
	return nil, false
}
