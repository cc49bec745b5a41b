package upstream

import (
	"net"
	"net/http"
	"sort"
	"strconv"

	"hcproxy/config"
)

// pointsPerWeight is how many points each unit of weight puts on the hash ring: enough for an
// even spread (ketama uses 160 per server).
const pointsPerWeight = 160

// Hash is consistent hashing on a request key: each server owns points on a ring in proportion
// to its weight, and a key goes to the first server clockwise from its hash. Adding or removing
// one of N servers moves about 1/N of the keys; the keys of a server that is down go to the next
// servers on the ring and come back when it recovers.
type Hash struct {
	points []point
}

type point struct {
	hash   uint64
	server *Server
}

var _ Balancer = (*Hash)(nil)

// NewHash returns a consistent-hash balancer over servers.
func NewHash(servers []*Server) *Hash {
	h := &Hash{}
	for _, s := range servers {
		for i := 0; i < s.Weight*pointsPerWeight; i++ {
			h.points = append(h.points, point{hash: hashString(s.Address + "#" + strconv.Itoa(i)), server: s})
		}
	}
	sort.Slice(h.points, func(i, j int) bool { return h.points[i].hash < h.points[j].hash })
	return h
}

// KeyOf is the std engine's reading of the hash key k from r (the fast engine reads the same
// key from its parsed head): the client's address without port, the request target as
// received, a header's first value or a cookie's value ("" when absent).
func KeyOf(k config.HashKey, r *http.Request) string {
	switch k.From {
	case config.HashURI:
		if r.RequestURI != "" { // the request line's target, as received: no allocation
			return r.RequestURI
		}
		return r.URL.RequestURI()
	case config.HashHeader:
		return r.Header.Get(k.Name)
	case config.HashCookie:
		if c, err := r.Cookie(k.Name); err == nil {
			return c.Value
		}
		return ""
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// hashString is FNV-1a (inline, so a pick allocates nothing) finished with a mixer.
func hashString(s string) uint64 {
	x := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		x ^= uint64(s[i])
		x *= 1099511628211
	}
	// FNV's low bits mix poorly for similar keys; finish with SplitMix64's mixer.
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// Pick implements Balancer: the server for key.
func (h *Hash) Pick(key string, ok func(*Server) bool) *Server {
	if len(h.points) == 0 {
		return nil
	}
	k := hashString(key)
	i := sort.Search(len(h.points), func(i int) bool { return h.points[i].hash >= k })
	for n := 0; n < len(h.points); n++ {
		p := h.points[(i+n)%len(h.points)]
		if ok(p.server) {
			return p.server
		}
	}
	return nil
}
