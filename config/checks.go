package config

import (
	"encoding/hex"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
	"time"
)

// CheckTypes are the values of check.type.
var CheckTypes = []string{"http", "tcp", "tls", "https", "grpc", "redis", "mysql", "postgres", "smtp", "fastcgi", "agent"}

// CheckOptions are the settings of [upstream.NAME.check] beyond the http and
// tcp basics: per-type options, the address override and the state-dependent
// intervals. It is embedded in Check; every key is optional and "" or 0
// means "not set" unless a default is named.
type CheckOptions struct {
	// Address overrides where the check connects: "host:port", or "host"
	// (then the port is Port, else the server's). Default "": the server.
	Address string
	// Headers are extra request headers of http and https checks, key
	// headers (a table of name = "value").
	Headers map[string]string
	// ExpectHeader is a response header the http or https check requires:
	// "Name" (present) or "Name: text" (its value contains text). Key
	// expect_header.
	ExpectHeader string
	// DownInterval is the interval while the server is down (HAProxy's
	// downinter). Key down_interval, default 0 (use Interval), 100ms..1h.
	DownInterval time.Duration
	// FastInterval is the interval while the server is changing state:
	// after a result that starts or continues a rise or fall streak
	// (HAProxy's fastinter). Key fast_interval, default 0 (use Interval).
	FastInterval time.Duration
	// KeepAlive keeps the check's connection open from one probe to the next
	// (http, https, grpc; Envoy's reuse_connection) instead of opening one per
	// probe: a server that closed it is re-dialled within the probe, a failed
	// or timed-out probe closes it, and a handover of the check closes it.
	// Key keepalive, default false (a new connection per probe, as HAProxy
	// and the nginx module).
	KeepAlive bool

	// Sequence is the tcp check's send/expect steps, key sequence (an
	// array of tables). tcp only.
	Sequence []SeqStep

	// SNI is the TLS server name (tls, https, grpc with tls); "" uses the
	// address's host. Key sni.
	SNI string
	// SkipVerify skips checking the peer's certificate chain and name; the
	// expiry is still judged. Key verify (inverted): verify = false sets
	// it; default false (verify).
	SkipVerify bool
	// CAFile is a PEM file of roots to verify against (default: the system
	// roots); CertFile and KeyFile are a client certificate and key, both or
	// neither. Keys ca_file, cert_file, key_file; relative paths are
	// resolved against the config file's directory.
	CAFile, CertFile, KeyFile string
	// MinVersion is the lowest TLS version, "1.0".."1.3". Key min_version,
	// default "1.2".
	MinVersion string
	// CertMinDays fails the check (cert_expiring) when the certificate
	// expires in fewer days. Key cert_min_days, default 0 (off), 0..3650.
	CertMinDays int
	// TLS makes a grpc check use TLS (default: plaintext HTTP/2). Key tls.
	TLS bool

	// Service is the grpc health service name; "" asks about the server.
	Service string
	// User is the postgres startup user (default "hcproxy") or the mysql
	// login user ("" reads the handshake only).
	User string
	// Password is the redis AUTH or postgres password. It is a secret: it
	// never appears in results, logs or errors.
	Password string
	// Database is the postgres startup database (default: User).
	Database string
	// Role is the redis role ROLE must report: "master" or "slave".
	Role string
	// EHLO is the domain of the smtp check's EHLO; "" reads the banner only.
	// Key ehlo.
	EHLO string
}

// SeqStep is one step of a tcp sequence: exactly one of Send, SendHex,
// Expect, ExpectHex. Match says how Expect/ExpectHex compare: "substring"
// (the default), "exact" or "regex" (Expect is an RE2 expression).
type SeqStep struct {
	Send, SendHex, Expect, ExpectHex, Match string
}

// decodeCheckOptions reads the keys of CheckOptions from t.
func decodeCheckOptions(t *table, c *Check) {
	t.str("address", &c.Address)
	if ht := t.table("headers"); ht != nil {
		c.Headers = map[string]string{}
		for _, n := range ht.names() {
			var v string
			ht.str(n, &v)
			c.Headers[n] = v
		}
		ht.done()
	}
	t.str("expect_header", &c.ExpectHeader)
	t.duration("down_interval", &c.DownInterval)
	t.duration("fast_interval", &c.FastInterval)
	t.boolean("keepalive", &c.KeepAlive)
	for _, st := range t.tables("sequence") {
		var s SeqStep
		st.str("send", &s.Send)
		st.str("send_hex", &s.SendHex)
		st.str("expect", &s.Expect)
		st.str("expect_hex", &s.ExpectHex)
		st.str("match", &s.Match)
		st.done()
		c.Sequence = append(c.Sequence, s)
	}
	if c.Sequence == nil {
		if _, _, ok := t.get("sequence"); ok {
			c.Sequence = []SeqStep{}
		}
	}
	t.str("sni", &c.SNI)
	verify := true
	t.boolean("verify", &verify)
	c.SkipVerify = !verify
	t.str("ca_file", &c.CAFile)
	t.str("cert_file", &c.CertFile)
	t.str("key_file", &c.KeyFile)
	t.str("min_version", &c.MinVersion)
	t.integer("cert_min_days", &c.CertMinDays)
	t.boolean("tls", &c.TLS)
	t.str("service", &c.Service)
	t.str("user", &c.User)
	t.str("password", &c.Password)
	t.str("database", &c.Database)
	t.str("role", &c.Role)
	t.str("ehlo", &c.EHLO)
}

// applyCheckDefaults applies the defaults of one check (key k) that the
// source did not set.
func applyCheckDefaults(set keySet, k string, ch *Check) {
	switch ch.Type {
	case "http", "https":
		if !set[k+".send"] {
			def(set, k+".uri", &ch.URI, DefaultURI)
		}
		def(set, k+".expect_status", &ch.ExpectStatus, DefaultExpectStatus())
	case "fastcgi":
		def(set, k+".uri", &ch.URI, "/ping")
		def(set, k+".expect_status", &ch.ExpectStatus, DefaultExpectStatus())
		if !set[k+".expect_body_regex"] {
			def(set, k+".expect_body", &ch.ExpectBody, "pong")
		}
	}
	if ch.MinVersion == "" && (ch.usesTLS() || set[k+".min_version"]) {
		def(set, k+".min_version", &ch.MinVersion, "1.2")
	}
}

// resolveCheckPaths makes the check's file paths absolute with abs.
func resolveCheckPaths(c *Config, abs func(string) string) {
	for _, u := range c.Upstreams {
		ch := &u.Check
		ch.CAFile, ch.CertFile, ch.KeyFile = abs(ch.CAFile), abs(ch.CertFile), abs(ch.KeyFile)
	}
}

// usesTLS reports whether the check makes a TLS handshake.
func (c *Check) usesTLS() bool {
	return c.Type == "tls" || c.Type == "https" || (c.Type == "grpc" && c.TLS)
}

// checkKeys lists, per type, the type-specific keys it accepts (beyond
// type, interval, timeout, rise, fall, initial, port, address,
// max_response, down_interval and fast_interval, which every type accepts).
var checkKeys = map[string][]string{
	"http":     {"uri", "host", "send", "headers", "expect_status", "expect_header", "expect_body", "expect_body_regex", "keepalive"},
	"https":    {"uri", "host", "headers", "expect_status", "expect_header", "expect_body", "expect_body_regex", "sni", "verify", "ca_file", "cert_file", "key_file", "min_version", "cert_min_days", "keepalive"},
	"tcp":      {"sequence"},
	"tls":      {"sni", "verify", "ca_file", "cert_file", "key_file", "min_version", "cert_min_days"},
	"grpc":     {"service", "tls", "sni", "verify", "ca_file", "cert_file", "key_file", "min_version", "cert_min_days", "keepalive"},
	"redis":    {"password", "role"},
	"mysql":    {"user"},
	"postgres": {"user", "password", "database"},
	"smtp":     {"ehlo"},
	"fastcgi":  {"uri", "expect_status", "expect_body", "expect_body_regex"},
	"agent":    {"send"},
}

// validateCheckOptions checks the type-specific keys of one check and
// compiles what the probe needs. Keys of another type are rejected, so a
// typo'd type does not silently ignore its options.
func validateCheckOptions(r *reporter, k string, c *Check) {
	if !slices.Contains(CheckTypes, c.Type) {
		return // reported by validateCheck
	}
	allowed := checkKeys[c.Type]
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"uri", c.URI != ""}, {"host", c.Host != ""}, {"send", c.Send != ""}, {"headers", c.Headers != nil},
		{"expect_status", c.ExpectStatus != nil}, {"expect_header", c.ExpectHeader != ""},
		{"expect_body", c.ExpectBody != ""}, {"expect_body_regex", c.ExpectBodyRegex != ""},
		{"sequence", c.Sequence != nil}, {"sni", c.SNI != ""}, {"verify", c.SkipVerify},
		{"ca_file", c.CAFile != ""}, {"cert_file", c.CertFile != ""}, {"key_file", c.KeyFile != ""},
		{"min_version", c.MinVersion != "" && c.MinVersion != "1.2"}, {"cert_min_days", c.CertMinDays != 0},
		{"tls", c.TLS}, {"service", c.Service != ""}, {"user", c.User != ""}, {"password", c.Password != ""},
		{"database", c.Database != ""}, {"role", c.Role != ""}, {"ehlo", c.EHLO != ""},
		{"keepalive", c.KeepAlive},
	} {
		if f.set && !slices.Contains(allowed, f.name) {
			r.addf(k+"."+f.name, "only for %s (type is %q)", typesWith(f.name), c.Type)
		}
	}
	if c.Address != "" {
		host, port, err := net.SplitHostPort(c.Address)
		if err != nil {
			host, port = c.Address, ""
		}
		if host == "" || strings.ContainsAny(host, " /") || (port != "" && !validPort(port)) {
			r.addf(k+".address", `must be "host" or "host:port" (got %q)`, c.Address)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"down_interval", c.DownInterval}, {"fast_interval", c.FastInterval}} {
		if d.v != 0 {
			durRange(r, k+"."+d.name, d.v, minInterval, maxInterval)
			if d.v < c.Timeout && d.v >= minInterval {
				r.addf(k+"."+d.name, "must be at least timeout (%s) (got %s)", short(c.Timeout), quoteDur(d.v))
			}
		}
	}
	for name, v := range c.Headers {
		if !printable(name) || strings.ContainsAny(name, ":()<>@,;\\\"/[]?={}") || strings.ContainsAny(v, "\r\n\x00") {
			r.addf(k+".headers."+name, "must be a header name with a value without line breaks")
		}
	}
	if c.ExpectHeader != "" {
		name, _, _ := strings.Cut(c.ExpectHeader, ":")
		if !printable(strings.TrimSpace(name)) {
			r.addf(k+".expect_header", `must be "Name" or "Name: text" (got %q)`, c.ExpectHeader)
		}
	}
	if c.Type == "tcp" {
		validateSequence(r, k+".sequence", c)
	}
	oneOf(r, k+".min_version", c.MinVersion, "", "1.0", "1.1", "1.2", "1.3")
	intRange(r, k+".cert_min_days", c.CertMinDays, 0, 3650)
	if (c.CertFile == "") != (c.KeyFile == "") {
		r.addf(k+".key_file", "cert_file and key_file must be set together")
	}
	if c.Role != "" {
		oneOf(r, k+".role", c.Role, "master", "slave")
	}
	for _, f := range []struct{ name, v string }{{"user", c.User}, {"database", c.Database}, {"ehlo", c.EHLO}, {"service", c.Service}, {"sni", c.SNI}} {
		if strings.ContainsAny(f.v, "\x00\r\n") || len(f.v) > 255 {
			r.addf(k+"."+f.name, "must be at most 255 characters without NUL or line breaks")
		}
	}
	if strings.ContainsAny(c.Password, "\x00") || len(c.Password) > 1024 {
		r.addf(k+".password", "must be at most 1024 bytes without NUL") // never echo it
	}
}

// typesWith names the check types that accept key, for errors.
func typesWith(key string) string {
	var ts []string
	for _, t := range CheckTypes {
		if slices.Contains(checkKeys[t], key) {
			ts = append(ts, t)
		}
	}
	if len(ts) == 1 {
		return fmt.Sprintf("type %q", ts[0])
	}
	return "types " + quoteList(ts)
}

// validateSequence checks the tcp sequence and compiles it into c.steps.
func validateSequence(r *reporter, k string, c *Check) {
	c.steps = nil
	for i, s := range c.Sequence {
		sk := keyIndex(k, i)
		n := 0
		for _, v := range []string{s.Send, s.SendHex, s.Expect, s.ExpectHex} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			r.addf(sk, "must have exactly one of send, send_hex, expect, expect_hex")
			continue
		}
		st, err := compileStep(s)
		if err != nil {
			r.addf(sk, "%v", err)
			continue
		}
		c.steps = append(c.steps, st)
	}
}

// Step is a compiled SeqStep.
type Step struct {
	Send   []byte // a send step when not nil
	Expect []byte
	Regexp *regexp.Regexp
	Match  string // "substring", "exact" or "regex"
}

func compileStep(s SeqStep) (Step, error) {
	var st Step
	var err error
	switch {
	case s.Send != "":
		st.Send = []byte(s.Send)
	case s.SendHex != "":
		st.Send, err = hex.DecodeString(strings.ReplaceAll(s.SendHex, " ", ""))
	case s.Expect != "":
		st.Expect = []byte(s.Expect)
	default:
		st.Expect, err = hex.DecodeString(strings.ReplaceAll(s.ExpectHex, " ", ""))
	}
	if err != nil {
		return Step{}, fmt.Errorf("invalid hex: %v", err)
	}
	if st.Send != nil {
		if s.Match != "" {
			return Step{}, fmt.Errorf("match is only for expect steps")
		}
		return st, nil
	}
	st.Match = s.Match
	switch s.Match {
	case "", "substring":
		st.Match = "substring"
	case "exact":
	case "regex":
		if s.ExpectHex != "" {
			return Step{}, fmt.Errorf(`match = "regex" needs expect, not expect_hex`)
		}
		if st.Regexp, err = regexp.Compile(s.Expect); err != nil {
			return Step{}, fmt.Errorf("invalid regular expression: %v", err)
		}
	default:
		return Step{}, fmt.Errorf(`match must be "substring", "exact" or "regex" (got %q)`, s.Match)
	}
	return st, nil
}

// Steps returns the compiled tcp sequence. A Check from Load, Parse or
// Unmarshal holds it compiled; for one built by hand it is compiled on every
// call, skipping invalid steps.
func (c *Check) Steps() []Step {
	if c.steps != nil || len(c.Sequence) == 0 {
		return c.steps
	}
	var out []Step
	for _, s := range c.Sequence {
		if st, err := compileStep(s); err == nil {
			out = append(out, st)
		}
	}
	return out
}

// HeaderList returns Headers as {name, value} pairs sorted by name.
func (c *Check) HeaderList() [][2]string {
	var out [][2]string
	for n, v := range c.Headers {
		out = append(out, [2]string{n, v})
	}
	slices.SortFunc(out, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return out
}

// keyOptions hashes the CheckOptions fields that change what the probe does
// (not DownInterval and FastInterval, which only schedule it). A check
// that sets none of them hashes nothing here, so http and tcp checks keep
// the keys they had before these options existed.
func (c *Check) keyOptions(num func(int64), str func(string)) {
	o := c.CheckOptions
	noVerify := o.SkipVerify
	if o.Address == "" && o.Headers == nil && o.ExpectHeader == "" && o.Sequence == nil && o.SNI == "" &&
		!noVerify && o.CAFile == "" && o.CertFile == "" && o.KeyFile == "" && o.MinVersion == "" &&
		o.CertMinDays == 0 && !o.TLS && o.Service == "" && o.User == "" && o.Password == "" &&
		o.Database == "" && o.Role == "" && o.EHLO == "" {
		return
	}
	str("options.v1")
	str(o.Address)
	hs := c.HeaderList()
	num(int64(len(hs)))
	for _, h := range hs {
		str(h[0])
		str(h[1])
	}
	str(o.ExpectHeader)
	num(int64(len(o.Sequence)))
	for _, s := range o.Sequence {
		str(s.Send)
		str(s.SendHex)
		str(s.Expect)
		str(s.ExpectHex)
		str(s.Match)
	}
	str(o.SNI)
	b := int64(0)
	if noVerify {
		b |= 1
	}
	if o.TLS {
		b |= 2
	}
	num(b)
	str(o.CAFile)
	str(o.CertFile)
	str(o.KeyFile)
	str(o.MinVersion)
	num(int64(o.CertMinDays))
	str(o.Service)
	str(o.User)
	// The password is part of what the probe does; only its 64-bit mix with
	// every other field reaches the table.
	str(o.Password)
	str(o.Database)
	str(o.Role)
	str(o.EHLO)
}

// validPort reports whether s is a port number 1..65535.
func validPort(s string) bool {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' || i > 4 {
			return false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n >= 1 && n <= 65535
}
