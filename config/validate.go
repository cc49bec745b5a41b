package config

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Limits of the settings; see the field docs of Config and its parts.
const (
	maxWorkers         = 64 // the table lists 256 workers: room for four generations at once (reloads overlap)
	maxMaxServers      = 100000
	maxShutdownTimeout = time.Hour
	maxWeight          = 1000
	minInterval        = 100 * time.Millisecond
	maxInterval        = time.Hour
	minTimeout         = 10 * time.Millisecond
	maxTimeout         = time.Hour
	minConnectTimeout  = time.Millisecond
	maxConnectTimeout  = time.Hour
	minReadTimeout     = time.Millisecond
	maxReadTimeout     = 24 * time.Hour
	minSendTimeout     = time.Millisecond // send_timeout and client_send_timeout
	maxSendTimeout     = 24 * time.Hour
	maxRiseFall        = 100
	minMaxResponse     = 64
	maxMaxResponse     = 16 << 20
	maxSend            = 64 << 10
)

// validate checks every range and every relation between settings of a
// decoded config with its defaults applied, and compiles the body regexps.
// It is shared by Parse and Unmarshal, so a worker holds the master to the
// same rules. Problems go to r; the result is r's error.
func validate(c *Config, r *reporter) error {
	intRange(r, "workers", c.Workers, 1, maxWorkers)
	absPath(r, "pid_file", c.PidFile, false)
	absPath(r, "table", c.Table, false)
	absPath(r, "error_log", c.ErrorLog, true)
	intRange(r, "max_servers", c.MaxServers, 1, maxMaxServers)
	durRange(r, "shutdown_timeout", c.ShutdownTimeout, 0, maxShutdownTimeout)
	oneOf(r, "log_format", c.LogFormat, "text", "json")
	oneOf(r, "log_level", c.LogLevel, "debug", "info", "warn", "error")
	oneOf(r, "engine", c.Engine, "fast", "std")
	oneOf(r, "steering", c.Steering, "auto", "bpf", "shared")
	if c.Group != "" && c.User == "" {
		r.addf("group", "needs user")
	}

	listens := map[string]string{} // canonical listen address -> key
	listen := func(key, addr string) {
		if addr == "" {
			r.addf(key, "required")
			return
		}
		a, err := canonAddr(addr, true)
		if err != nil {
			r.addf(key, "%v", err)
			return
		}
		if prev, ok := listens[a]; ok {
			r.addf(key, "%s is already the listen address of %s", addr, prev)
			return
		}
		listens[a] = key
	}
	if len(c.Servers) == 0 {
		r.addf("server", "at least one [[server]] table is required")
	}
	for i, s := range c.Servers {
		k := keyIndex("server", i)
		listen(k+".listen", s.Listen)
		oneOf(r, k+".access_log_format", s.AccessLogFormat, "combined", "json")
		oneOf(r, k+".forwarded", s.Forwarded, "x-forwarded", "forwarded", "both", "none")
		if s.RequestIDHeader != "" && !validToken(s.RequestIDHeader) {
			r.addf(k+".request_id_header", "must be a header name (got %q)", s.RequestIDHeader)
		}
		durRange(r, k+".client_header_timeout", s.ClientHeaderTimeout, 100*time.Millisecond, time.Hour)
		durRange(r, k+".client_idle_timeout", s.ClientIdleTimeout, 0, 24*time.Hour)
		durRange(r, k+".client_send_timeout", s.ClientSendTimeout, minSendTimeout, maxSendTimeout)
		switch {
		case s.Upstream == "":
			r.addf(k+".upstream", "required")
		case c.Upstreams[s.Upstream] == nil:
			r.addf(k+".upstream", "upstream %q is not defined (defined: %s)", s.Upstream, definedNames(c))
		}
	}
	if c.Status != nil {
		listen("status.listen", c.Status.Listen)
		prefixes, err := parsePrefixes(c.Status.Allow)
		if err != nil {
			r.addf("status.allow", "%v", err)
		}
		c.Status.allow = prefixes
		durRange(r, "status.client_header_timeout", c.Status.ClientHeaderTimeout, 100*time.Millisecond, time.Hour)
	}

	if c.Fleet != nil {
		validateFleet(r, c.Fleet)
	}
	for _, name := range c.UpstreamNames() {
		validateUpstream(r, c.Upstreams[name])
	}
	if len(r.errs) == 0 {
		checkShared(c, r)
	}
	return r.err()
}

func definedNames(c *Config) string {
	if len(c.Upstreams) == 0 {
		return "none"
	}
	return strings.Join(c.UpstreamNames(), ", ")
}

func validateUpstream(r *reporter, u *Upstream) {
	k := keyJoin("upstream", u.Name)
	if !validUpstreamName(u.Name) {
		r.addf(k, "name must be 1..64 letters, digits, '_' or '-'")
	}
	if len(u.Servers) == 0 {
		r.addf(k+".servers", "at least one server is required")
	}
	seen := map[string]int{}
	for i, s := range u.Servers {
		sk := keyIndex(k+".servers", i)
		intRange(r, sk+".weight", s.Weight, 1, maxWeight)
		a, err := canonAddr(s.Address, false)
		if err != nil {
			r.addf(sk, "%v", err)
			continue
		}
		if j, ok := seen[a]; ok {
			r.addf(sk, "duplicate server %s (also %s)", s.Address, keyIndex(k+".servers", j))
			continue
		}
		seen[a] = i
	}
	durRange(r, k+".connect_timeout", u.ConnectTimeout, minConnectTimeout, maxConnectTimeout)
	durRange(r, k+".read_timeout", u.ReadTimeout, minReadTimeout, maxReadTimeout)
	durRange(r, k+".send_timeout", u.SendTimeout, minSendTimeout, maxSendTimeout)
	oneOf(r, k+".balancer", u.Balancer, "round_robin", "least_conn", "hash", "random_two")
	oneOf(r, k+".all_down", u.AllDown, "fail", "any")
	switch {
	case u.Balancer != "hash" && u.HashKey != "":
		r.addf(k+".hash_key", `only applies with balancer = "hash"`)
	case u.Balancer == "hash":
		if _, err := ParseHashKey(u.HashKey); err != nil {
			r.addf(k+".hash_key", "%v", err)
		}
	}
	intRange(r, k+".retries", u.Retries, 0, 100)
	intRange(r, k+".keepalive", u.Keepalive, 0, 10000)
	durRange(r, k+".retry_timeout", u.RetryTimeout, 0, time.Hour)
	intRange(r, k+".max_fails", u.MaxFails, 0, 1000)
	durRange(r, k+".fail_timeout", u.FailTimeout, time.Second, time.Hour)
	intRange(r, k+".eject_consecutive_5xx", u.EjectConsecutive5xx, 0, 1000)
	durRange(r, k+".slow_start", u.SlowStart, 0, time.Hour)
	for i, w := range u.RetryOn {
		if w == "connect" || w == "timeout" {
			continue
		}
		if n, err := strconv.Atoi(w); err != nil || n < 400 || n > 599 {
			r.addf(keyIndex(k+".retry_on", i), `must be "connect", "timeout" or a 4xx/5xx status code (got %q)`, w)
		}
	}
	for i, s := range u.Servers {
		durRange(r, keyIndex(k+".servers", i)+".slow_start", s.SlowStart, 0, time.Hour)
	}
	primaries := 0
	for _, s := range u.Servers {
		if !s.Backup {
			primaries++
		}
	}
	if len(u.Servers) > 0 && primaries == 0 {
		r.addf(k+".servers", "every server is a backup: at least one must not be")
	}
	validateCheck(r, k+".check", &u.Check)
}

func validUpstreamName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isBare(s[i]) {
			return false
		}
	}
	return true
}

func validateCheck(r *reporter, k string, c *Check) {
	oneOf(r, k+".type", c.Type, CheckTypes...)
	durRange(r, k+".interval", c.Interval, minInterval, maxInterval)
	durRange(r, k+".timeout", c.Timeout, minTimeout, maxTimeout)
	if c.Timeout > c.Interval && c.Interval >= minInterval && c.Timeout <= maxTimeout {
		r.addf(k+".timeout", "must be at most interval (%s) (got %s)", short(c.Interval), quoteDur(c.Timeout))
	}
	intRange(r, k+".rise", c.Rise, 1, maxRiseFall)
	intRange(r, k+".fall", c.Fall, 1, maxRiseFall)
	oneOf(r, k+".initial", c.Initial, "up", "down", "checking")
	intRange(r, k+".port", c.Port, 0, 65535)
	if c.MaxResponse < minMaxResponse || c.MaxResponse > maxMaxResponse {
		r.addf(k+".max_response", "must be between %s and %s (got %s)", formatSize(minMaxResponse), formatSize(maxMaxResponse), formatSize(c.MaxResponse))
	}

	switch c.Type {
	case "http", "https":
		validateHTTP(r, k, c)
	case "fastcgi":
		if c.URI != "" && (c.URI[0] != '/' || !printable(c.URI)) {
			r.addf(k+".uri", `must start with "/" and have no spaces or control characters (got %q)`, c.URI)
		}
		validateHTTP(r, k, c)
	}
	validateCheckOptions(r, k, c)

	if c.ExpectBody != "" && c.ExpectBodyRegex != "" {
		r.addf(k+".expect_body_regex", "must not be set together with expect_body")
	}
	if int64(len(c.ExpectBody)) > c.MaxResponse {
		r.addf(k+".expect_body", "is longer than max_response (%s), so it can never match", formatSize(c.MaxResponse))
	}
	c.re = nil
	if c.ExpectBodyRegex != "" {
		re, err := regexp.Compile(c.ExpectBodyRegex)
		if err != nil {
			r.addf(k+".expect_body_regex", "invalid regular expression: %v", err)
		} else {
			c.re = re
		}
	}
}

func validateHTTP(r *reporter, k string, c *Check) {
	if c.Send != "" && c.Type == "http" {
		if c.URI != "" {
			r.addf(k+".uri", "must not be set together with send (send is the whole request)")
		}
		if c.Host != "" {
			r.addf(k+".host", "must not be set together with send (send is the whole request)")
		}
		if len(c.Send) > maxSend {
			r.addf(k+".send", "must be at most %s (got %s)", formatSize(maxSend), formatSize(int64(len(c.Send))))
		}
	} else {
		switch {
		case c.URI == "":
			r.addf(k+".uri", "required when send is not set")
		case c.URI[0] != '/':
			r.addf(k+".uri", `must start with "/" (got %q)`, c.URI)
		case !printable(c.URI):
			r.addf(k+".uri", "must not contain spaces or control characters (got %q)", c.URI)
		}
	}
	if c.Host != "" && (!printable(c.Host) || len(c.Host) > 255) {
		r.addf(k+".host", "must be at most 255 characters without spaces or control characters (got %q)", c.Host)
	}
	if c.ExpectStatus != nil && len(c.ExpectStatus) == 0 {
		r.addf(k+".expect_status", "must list at least one status")
	}
	seen := map[string]bool{}
	for i, s := range c.ExpectStatus {
		if err := checkStatus(s); err != nil {
			r.addf(keyIndex(k+".expect_status", i), "%v", err)
		} else if seen[s] {
			r.addf(keyIndex(k+".expect_status", i), "duplicate %q", s)
		}
		seen[s] = true
	}
}

// printable reports whether s has only printable ASCII other than space.
func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// checkShared enforces the rules for servers that several upstreams check
// with the same probe (same address, same Check.Key): they are one slot in
// the health table, so their schedule and hysteresis must agree, and the
// number of such distinct slots must fit in max_servers.
func checkShared(c *Config, r *reporter) {
	type slot struct {
		addr string
		key  uint64
	}
	owner := map[slot]string{}    // -> first upstream (in name order) that checks it
	reported := map[string]bool{} // "a b field" already reported
	for _, name := range c.UpstreamNames() {
		u := c.Upstreams[name]
		key := u.Check.Key()
		for _, s := range u.Servers {
			addr, _ := canonAddr(s.Address, false)
			id := slot{addr, key}
			prevName, ok := owner[id]
			if !ok {
				owner[id] = name
				continue
			}
			if prevName == name {
				continue
			}
			prev := c.Upstreams[prevName].Check
			k := keyJoin("upstream", name) + ".check."
			for _, f := range []struct {
				name      string
				same      bool
				old, this string
			}{
				{"interval", prev.Interval == u.Check.Interval, short(prev.Interval), short(u.Check.Interval)},
				{"rise", prev.Rise == u.Check.Rise, itoa(prev.Rise), itoa(u.Check.Rise)},
				{"fall", prev.Fall == u.Check.Fall, itoa(prev.Fall), itoa(u.Check.Fall)},
				{"down_interval", prev.DownInterval == u.Check.DownInterval, short(prev.DownInterval), short(u.Check.DownInterval)},
				{"fast_interval", prev.FastInterval == u.Check.FastInterval, short(prev.FastInterval), short(u.Check.FastInterval)},
				{"keepalive", prev.KeepAlive == u.Check.KeepAlive, strconv.FormatBool(prev.KeepAlive), strconv.FormatBool(u.Check.KeepAlive)},
			} {
				tag := prevName + " " + name + " " + f.name
				if f.same || reported[tag] {
					continue
				}
				reported[tag] = true
				r.addf(k+f.name, "server %s is also checked by %s with the same probe, %s must match (%s vs %s)",
					s.Address, keyJoin("upstream", prevName), f.name, f.old, f.this)
			}
		}
	}
	if len(owner) > c.MaxServers {
		r.addf("max_servers", "%d distinct checked servers do not fit (max_servers = %d)", len(owner), c.MaxServers)
	}
}

func intRange(r *reporter, key string, v, lo, hi int) {
	if v < lo || v > hi {
		r.addf(key, "must be between %d and %d (got %d)", lo, hi, v)
	}
}

func durRange(r *reporter, key string, d, lo, hi time.Duration) {
	switch {
	case d < lo:
		r.addf(key, "must be at least %s (got %s)", short(lo), quoteDur(d))
	case d > hi:
		r.addf(key, "must be at most %s (got %s)", short(hi), quoteDur(d))
	}
}

func oneOf(r *reporter, key, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	r.addf(key, "must be %s (got %q)", quoteList(allowed), v)
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = `"` + v + `"`
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

func absPath(r *reporter, key, p string, emptyOK bool) {
	switch {
	case p == "" && emptyOK:
	case p == "":
		r.addf(key, "must not be empty")
	case !filepath.IsAbs(p):
		r.addf(key, "must be an absolute path (got %q)", p)
	}
}

// short formats d without zero trailing units: "1h", "30m", "1m30s".
func short(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// validToken reports whether s is a non-empty HTTP token (header or cookie name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c <= ' ' || c >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?={}`, c) {
			return false
		}
	}
	return true
}
