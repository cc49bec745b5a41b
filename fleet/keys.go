package fleet

import (
	"net/url"
	"strings"
)

// The three kinds of key under the prefix.
const (
	kindMember = "members/"
	kindClaim  = "claims/"
	kindState  = "state/"
)

// layout names and parses the etcd keys of one prefix.
type layout struct{ prefix string }

func (l layout) member(host string) string { return l.prefix + kindMember + host }
func (l layout) claim(key, host string) string {
	return l.prefix + kindClaim + url.PathEscape(key) + "/" + host
}
func (l layout) state(key, host string) string {
	return l.prefix + kindState + url.PathEscape(key) + "/" + host
}

// parse splits an etcd key into its kind, slot key and host; ok is false
// for a key this package does not write.
func (l layout) parse(k string) (kind, key, host string, ok bool) {
	rest, found := strings.CutPrefix(k, l.prefix)
	if !found {
		return "", "", "", false
	}
	for _, kd := range []string{kindMember, kindClaim, kindState} {
		r, found := strings.CutPrefix(rest, kd)
		if !found {
			continue
		}
		if kd == kindMember {
			return kd, "", r, validHost(r)
		}
		esc, h, found := strings.Cut(r, "/")
		if !found || !validHost(h) {
			return "", "", "", false
		}
		key, err := url.PathUnescape(esc)
		if err != nil {
			return "", "", "", false
		}
		return kd, key, h, true
	}
	return "", "", "", false
}
