package config

import (
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Fleet is the [fleet] table: this host's place in a fleet of proxies that
// share one set of checks through etcd (package fleet, docs/fleet.md).
// Without a [fleet] table, Config.Fleet is nil and every host checks every
// server itself, as it always did.
type Fleet struct {
	// Endpoints are the client URLs of the etcd cluster, "http://host:port"
	// or "https://host:port", all of one scheme. Key endpoints, required,
	// at least one, at most 16.
	Endpoints []string
	// CertFile and KeyFile are a TLS client certificate and its key (PEM)
	// presented to etcd; both or neither, https endpoints only. Keys
	// cert_file and key_file, default none; relative as for PidFile.
	CertFile string
	KeyFile  string
	// CAFile is the PEM bundle that etcd's server certificates must chain
	// to, "" (the default) for the system's roots; https endpoints only.
	// Key ca_file; relative as for PidFile.
	CAFile string
	// Username and Password authenticate to etcd (etcd's auth), both or
	// neither. Keys username and password, default none. Keep a config that
	// holds a password readable by the master's user only.
	Username string
	Password string
	// Prefix is the etcd key prefix under which the fleet keeps its keys:
	// PREFIX/members/, PREFIX/claims/, PREFIX/state/. Key prefix, default
	// "/hcproxy/"; it must start and end with "/", at most 128 bytes. Two
	// fleets sharing one etcd need two prefixes.
	Prefix string
	// Host is this host's name in the fleet, unique across it. Key host,
	// default the machine's host name (os.Hostname); 1..64 letters, digits,
	// '.', '-' and '_'.
	Host string
	// Checkers is how many hosts probe each server. Key checkers, default
	// 2, 1..7. A server is down in the fleet's view when more than half of
	// the hosts that check it see it down.
	Checkers int
	// LeaseTTL is the etcd lease of this host's membership, claims and
	// published states: a host cut off from etcd loses them that long after
	// its last renewal, and checks everything itself from then on. Key
	// lease_ttl, default 10s, a whole number of seconds, 2s..5m.
	LeaseTTL time.Duration
}

// Fleet defaults and limits; applyDefaults and validateFleet are the only
// users.
const (
	DefaultFleetPrefix   = "/hcproxy/"
	DefaultFleetCheckers = 2
	DefaultFleetLeaseTTL = 10 * time.Second

	maxFleetEndpoints = 16
	maxFleetCheckers  = 7
	maxFleetPrefix    = 128
	maxFleetHost      = 64
	minFleetLeaseTTL  = 2 * time.Second
	maxFleetLeaseTTL  = 5 * time.Minute
)

// decodeFleet reads the [fleet] table.
func decodeFleet(t *table) *Fleet {
	f := &Fleet{}
	t.strs("endpoints", &f.Endpoints, `URLs like ["http://10.0.0.1:2379"]`)
	t.str("cert_file", &f.CertFile)
	t.str("key_file", &f.KeyFile)
	t.str("ca_file", &f.CAFile)
	t.str("username", &f.Username)
	t.str("password", &f.Password)
	t.str("prefix", &f.Prefix)
	t.str("host", &f.Host)
	t.integer("checkers", &f.Checkers)
	t.duration("lease_ttl", &f.LeaseTTL)
	t.done()
	return f
}

// applyFleetDefaults is applyDefaults' part for [fleet]. The host name
// comes from the machine when the file does not set it; if the machine
// cannot tell, Host stays "" and validation says so.
func applyFleetDefaults(f *Fleet, set keySet) {
	def(set, "fleet.prefix", &f.Prefix, DefaultFleetPrefix)
	def(set, "fleet.checkers", &f.Checkers, DefaultFleetCheckers)
	def(set, "fleet.lease_ttl", &f.LeaseTTL, DefaultFleetLeaseTTL)
	if !set["fleet.host"] {
		if h, err := os.Hostname(); err == nil {
			f.Host = h
		}
	}
}

// resolveFleetPaths makes the [fleet] file paths absolute.
func resolveFleetPaths(f *Fleet, abs func(string) string) {
	f.CertFile = abs(f.CertFile)
	f.KeyFile = abs(f.KeyFile)
	f.CAFile = abs(f.CAFile)
}

// validateFleet checks the [fleet] table of a config with its defaults
// applied.
func validateFleet(r *reporter, f *Fleet) {
	validateFleetEndpoints(r, f)
	if (f.CertFile == "") != (f.KeyFile == "") {
		if f.CertFile != "" {
			r.addf("fleet.cert_file", "needs key_file: set both or neither")
		} else {
			r.addf("fleet.key_file", "needs cert_file: set both or neither")
		}
	}
	absPath(r, "fleet.cert_file", f.CertFile, true)
	absPath(r, "fleet.key_file", f.KeyFile, true)
	absPath(r, "fleet.ca_file", f.CAFile, true)
	if (f.Username == "") != (f.Password == "") {
		if f.Username != "" {
			r.addf("fleet.username", "needs password: set both or neither")
		} else {
			r.addf("fleet.password", "needs username: set both or neither")
		}
	}
	switch p := f.Prefix; {
	case len(p) < 1 || p[0] != '/' || p[len(p)-1] != '/':
		r.addf("fleet.prefix", `must start and end with "/" (got %q)`, p)
	case len(p) > maxFleetPrefix:
		r.addf("fleet.prefix", "must be at most %d bytes (got %d)", maxFleetPrefix, len(p))
	case strings.ContainsFunc(p, func(c rune) bool { return c < 0x21 || c == 0x7f }):
		r.addf("fleet.prefix", "must not contain spaces or control characters (got %q)", p)
	}
	if !validFleetHost(f.Host) {
		if f.Host == "" {
			r.addf("fleet.host", "required: the machine's host name is unknown")
		} else {
			r.addf("fleet.host", "must be 1..%d letters, digits, '.', '-' or '_' (got %q)", maxFleetHost, f.Host)
		}
	}
	intRange(r, "fleet.checkers", f.Checkers, 1, maxFleetCheckers)
	durRange(r, "fleet.lease_ttl", f.LeaseTTL, minFleetLeaseTTL, maxFleetLeaseTTL)
	if f.LeaseTTL%time.Second != 0 {
		r.addf("fleet.lease_ttl", "must be a whole number of seconds, as etcd's leases are (got %s)", quoteDur(f.LeaseTTL))
	}
}

func validateFleetEndpoints(r *reporter, f *Fleet) {
	if len(f.Endpoints) == 0 {
		r.addf("fleet.endpoints", "at least one etcd endpoint is required")
		return
	}
	if len(f.Endpoints) > maxFleetEndpoints {
		r.addf("fleet.endpoints", "at most %d endpoints (got %d)", maxFleetEndpoints, len(f.Endpoints))
		return
	}
	seen := map[string]int{}
	scheme := ""
	for i, e := range f.Endpoints {
		k := keyIndex("fleet.endpoints", i)
		u, err := url.Parse(e)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			r.addf(k, `must be a URL like "http://10.0.0.1:2379" or "https://etcd1:2379" (got %q)`, e)
			continue
		}
		host, port, err := net.SplitHostPort(u.Host)
		if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
			r.addf(k, "must name a host and a port 1..65535 (got %q)", e)
			continue
		}
		if j, dup := seen[u.Host]; dup {
			r.addf(k, "duplicate endpoint %s (also %s)", e, keyIndex("fleet.endpoints", j))
			continue
		}
		seen[u.Host] = i
		switch {
		case scheme == "":
			scheme = u.Scheme
		case scheme != u.Scheme:
			r.addf(k, "all endpoints must use one scheme (%s and %s)", scheme, u.Scheme)
		}
	}
	if scheme == "http" {
		for _, c := range []struct{ key, v string }{{"fleet.cert_file", f.CertFile}, {"fleet.key_file", f.KeyFile}, {"fleet.ca_file", f.CAFile}} {
			if c.v != "" {
				r.addf(c.key, "needs https endpoints (the endpoints are http)")
			}
		}
	}
}

// validFleetHost reports whether s can name a host in the fleet's etcd keys.
func validFleetHost(s string) bool {
	if len(s) < 1 || len(s) > maxFleetHost {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
