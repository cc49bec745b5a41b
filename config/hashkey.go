package config

import (
	"fmt"
	"strings"
)

// HashFrom is where the hash balancer takes a request's key from.
type HashFrom uint8

// The sources of hash_key.
const (
	HashRemoteAddr HashFrom = iota // the client's address without its port (the default)
	HashURI                        // the request target as received
	HashHeader                     // a request header's first value
	HashCookie                     // a cookie's value
)

// HashKey is a hash_key parsed: the one parser of that key, used by validation and by the
// engines, which each take the key from a request their own way.
type HashKey struct {
	From HashFrom
	Name string // HashHeader: the header's name in lower case; HashCookie: the cookie's name
}

// ParseHashKey parses a hash_key: "remote_addr" (or empty), "uri", "header:NAME" or
// "cookie:NAME", NAME an HTTP token.
func ParseHashKey(s string) (HashKey, error) {
	switch {
	case s == "" || s == "remote_addr":
		return HashKey{From: HashRemoteAddr}, nil
	case s == "uri":
		return HashKey{From: HashURI}, nil
	case strings.HasPrefix(s, "header:") && validToken(s[len("header:"):]):
		return HashKey{From: HashHeader, Name: strings.ToLower(s[len("header:"):])}, nil
	case strings.HasPrefix(s, "cookie:") && validToken(s[len("cookie:"):]):
		return HashKey{From: HashCookie, Name: s[len("cookie:"):]}, nil
	}
	return HashKey{}, fmt.Errorf(`must be "remote_addr", "uri", "header:NAME" or "cookie:NAME" (got %q)`, s)
}

// Hash returns the upstream's hash_key parsed. On a validated config it never fails; on
// another it gives remote_addr for a key it cannot parse.
func (u *Upstream) Hash() HashKey {
	k, _ := ParseHashKey(u.HashKey)
	return k
}
