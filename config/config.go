package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is one validated configuration. Load, Parse and Unmarshal return
// it with every default applied and every path absolute; the other packages
// treat it as read-only.
type Config struct {
	// Path is the absolute path of the config file ("" when Parse was given
	// no path).
	Path string
	// Workers is the number of worker processes, 1..64. Key workers: an
	// integer or "auto" (the default), which resolves to runtime.NumCPU()
	// capped at 64 when the config is loaded.
	Workers int
	// PidFile is the absolute path of the master's pid file, which also
	// serves as its lock. Key pid_file, default "/run/hcproxy.pid"; a
	// relative path is resolved against the config file's directory.
	PidFile string
	// Table is the absolute path of the shared health table. Key table,
	// default "/dev/shm/hcproxy/table"; relative as for PidFile. The master
	// creates the table (0600) and, when missing, its directory (0700); it
	// refuses a symlink on the path, a directory owned by another user (not
	// root) or writable by others unless sticky, and a table file owned by
	// another user or writable by group or others.
	Table string
	// MaxServers is the capacity of the health table in distinct checked
	// servers (address plus probe, see Check.Key). Key max_servers, default
	// 1024, 1..100000; a config that checks more servers is rejected.
	MaxServers int
	// ShutdownTimeout is how long a stopping or draining worker waits for
	// in-flight requests before it closes them. Key shutdown_timeout,
	// a duration string, default 30s, 0..1h.
	ShutdownTimeout time.Duration
	// LogFormat is the format of log lines: "text" (the default) or "json".
	// Key log_format.
	LogFormat string
	// LogLevel is the least severe level logged: "debug", "info" (the
	// default), "warn" or "error". Key log_level.
	LogLevel string
	// Engine is the HTTP/1.1 data path of the [[server]] listeners: "fast"
	// (the default: hcproxy's own forwarding path, package fastpath) or
	// "std" (net/http's ReverseProxy). Key engine.
	Engine string
	// Steering is how new connections reach the workers: "bpf" (each worker
	// its own SO_REUSEPORT socket, an eBPF program picks among the live
	// ones), "shared" (one socket all workers accept from) or "auto" (the
	// default: bpf where the kernel permits it, else shared). Key steering.
	Steering string
	// User is the user the workers run as when the master runs as root, ""
	// (the default) for the master's own. Key user.
	User string
	// Group is the workers' group, "" (the default) for User's primary
	// group; it needs User. Key group.
	Group string
	// ErrorLog is the absolute path of the error log, or "" (the default)
	// for stderr. Key error_log; relative as for PidFile.
	ErrorLog string
	// Status is the status listener, nil when the config has no [status]
	// table.
	Status *Status
	// Servers are the proxy listeners, one per [[server]] table, in file
	// order; there is at least one.
	Servers []Server
	// Upstreams are the [upstream.NAME] tables by name.
	Upstreams map[string]*Upstream
	// Fleet is the [fleet] table (fleet.go), nil when the config has none:
	// then this host checks every server itself.
	Fleet *Fleet `json:",omitempty"`
}

// Status is the [status] table: the listener for the status page, JSON,
// CSV, metrics and event stream.
type Status struct {
	// Listen is the host:port the status page listens on. Key listen,
	// default "127.0.0.1:8081"; it must differ from every [[server]] listen.
	Listen string
	// Allow lists the client networks (CIDR, or a single address) that may
	// use the status listener; every other client gets 403. Key allow,
	// default ["127.0.0.0/8", "::1/128"] (loopback only).
	Allow []string
	// Admin enables the admin actions of the status listener (POST
	// /status/admin) for allowed clients. Key admin, default false.
	Admin bool
	// ClientHeaderTimeout bounds reading a request's head on the status
	// listener; a slower client is disconnected. Key
	// client_header_timeout, default 10s, 100ms..1h.
	ClientHeaderTimeout time.Duration

	allow []netip.Prefix // Allow, parsed
}

// Allowed reports whether a client address may use the status listener.
func (s *Status) Allowed(ip netip.Addr) bool {
	ip = ip.Unmap()
	prefixes := s.allow
	if prefixes == nil {
		prefixes, _ = parsePrefixes(s.Allow)
	}
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Server is one [[server]] table: a listener whose requests go to one
// upstream.
type Server struct {
	// Listen is the host:port to listen on; required, and unique across all
	// [[server]] tables and [status]. An empty host means all addresses.
	Listen string
	// Upstream names the [upstream.NAME] table that gets the requests;
	// required.
	Upstream string
	// AccessLog is the absolute path of the access log, "" (the default) for
	// none. Key access_log; relative as for PidFile; reopened on USR1.
	AccessLog string
	// AccessLogFormat is "combined" (the default: nginx's combined format
	// plus upstream address, status and times and the request id) or "json".
	// Key access_log_format.
	AccessLogFormat string
	// RequestIDHeader is the header that carries a request id to the
	// upstream and back to the client: kept when the client sent one, made
	// up otherwise. Key request_id_header, default "X-Request-ID"; "" turns
	// it off.
	RequestIDHeader string
	// Forwarded selects the headers that tell the upstream about the client:
	// "x-forwarded" (the default: X-Forwarded-For, -Host, -Proto),
	// "forwarded" (RFC 7239), "both" or "none". Key forwarded.
	Forwarded string
	// Via adds "Via: 1.1 hcproxy" to requests and responses. Key via,
	// default false.
	Via bool
	// ClientHeaderTimeout bounds reading a request's head from the client;
	// key client_header_timeout, default 60s (nginx's).
	ClientHeaderTimeout time.Duration
	// ClientIdleTimeout closes a keep-alive client connection idle that
	// long; key client_idle_timeout, default 75s (nginx's keepalive_timeout).
	ClientIdleTimeout time.Duration
	// ClientSendTimeout closes a client connection when one write of a
	// response to it makes no progress for that long: it bounds the time
	// between two successive writes, not the whole response, so a client
	// that keeps reading is never cut off (nginx's send_timeout). Key
	// client_send_timeout, default 60s (nginx's), 1ms..24h.
	ClientSendTimeout time.Duration
}

// Upstream is one [upstream.NAME] table: a group of servers behind one
// balancer, with one active health check.
type Upstream struct {
	// Name is the NAME of [upstream.NAME]: letters, digits, '_' and '-'.
	Name string
	// Servers are the upstream's servers in file order, at least one. Key
	// servers: an array whose items are "host:port" strings or inline
	// tables {address = "host:port", weight = 2}.
	Servers []UpstreamServer
	// ConnectTimeout bounds connecting to a server. Key connect_timeout,
	// default 5s, 1ms..1h.
	ConnectTimeout time.Duration
	// ReadTimeout bounds the wait for a server's response header after the
	// request was sent. Key read_timeout, default 60s, 1ms..24h.
	ReadTimeout time.Duration
	// SendTimeout fails a request (as a timeout, like ReadTimeout) when one
	// write of it (head or body) to a server makes no progress for that
	// long: it bounds the time between two successive writes, not the whole
	// transfer (nginx's proxy_send_timeout). Key send_timeout, default 60s,
	// 1ms..24h.
	SendTimeout time.Duration
	// Balancer picks a server for each request among the available ones:
	// "round_robin" (the default: smooth weighted round robin, nginx's),
	// "least_conn" (fewest requests in flight across all workers, relative
	// to weight), "hash" (consistent hashing on HashKey) or "random_two"
	// (the less loaded of two random servers). Key balancer.
	Balancer string
	// HashKey is what the hash balancer hashes: "remote_addr" (the
	// default), "uri", "header:NAME" or "cookie:NAME". Key hash_key; only
	// with balancer = "hash".
	HashKey string
	// AllDown is what happens when no server is available: "fail" (the
	// default: 503 at once) or "any" (try them anyway, as nginx does).
	// Key all_down.
	AllDown string
	// Retries is how many more servers a failed request is tried on (nginx's
	// proxy_next_upstream_tries minus one). Key retries, default 1, 0..100.
	Retries int
	// RetryOn lists the failures that make a request try another server and
	// that count as passive failures: "connect", "timeout", and status codes
	// ("502", "503", "504"...). Key retry_on, default ["connect", "timeout"].
	RetryOn []string
	// RetryTimeout bounds the time from the first try after which no retry
	// starts; 0 (the default) does not bound it. Key retry_timeout.
	RetryTimeout time.Duration
	// RetryNonIdempotent allows retrying POST, PATCH and other non-idempotent
	// requests after their request was sent (never after their body was
	// partly sent). Key retry_non_idempotent, default false.
	RetryNonIdempotent bool
	// MaxFails failures (RetryOn) within FailTimeout, counted across all
	// workers, take a server out of rotation for FailTimeout; a passing
	// active check after that brings it back (nginx's max_fails). Key
	// max_fails, default 1; 0 disables passive ejection.
	MaxFails int
	// FailTimeout is the window of MaxFails and the length of an ejection.
	// Key fail_timeout, default 10s.
	FailTimeout time.Duration
	// EjectConsecutive5xx consecutive 5xx responses (any worker) eject a
	// server for FailTimeout (outlier detection). Key eject_consecutive_5xx,
	// default 0 (off).
	EjectConsecutive5xx int
	// SlowStart ramps the weight of a server that comes back up from low to
	// full over this time (every balancer but hash). Key slow_start, default
	// 0 (off); a server's own slow_start overrides it.
	SlowStart time.Duration
	// Keepalive is how many idle connections to each server a worker keeps
	// for reuse (nginx's keepalive). Key keepalive, default 32, 0..10000.
	Keepalive int
	// Check is the active health check of every server in Servers. Table
	// [upstream.NAME.check]; when it is absent, every default applies.
	Check Check
}

// UpstreamServer is one item of an upstream's servers array.
type UpstreamServer struct {
	// Backup servers take traffic only when no other server of the
	// upstream is available. Key backup in the inline-table form, default
	// false.
	Backup bool
	// SlowStart overrides the upstream's slow_start for this server. Key
	// slow_start in the inline-table form.
	SlowStart time.Duration
	// Address is host:port in canonical form (an IP literal as net/netip
	// prints it, a DNS name in lower case, the port in decimal, 1..65535).
	// Key address in the inline-table form. Unique within one upstream.
	Address string
	// Weight is the server's share of requests relative to the others,
	// 1..1000. Key weight, default 1.
	Weight int
}

// Check is an upstream's [upstream.NAME.check] table. Key returns the hash
// of the fields that define the probe; the others (Interval, Rise, Fall,
// Initial) only schedule it and judge its streaks.
type Check struct {
	// Type is the kind of probe: "http" (the default) sends a request and
	// judges the response; "tcp" connects (and runs Sequence); "tls",
	// "https", "grpc", "redis", "mysql", "postgres", "smtp", "fastcgi" and
	// "agent" speak their protocol (see CheckOptions and README.md).
	Type string
	// Interval is the time from the start of one probe of a server to the
	// start of the next. Default 1s, 100ms..1h.
	Interval time.Duration
	// Timeout bounds one probe, connect included. Default 1s, 10ms..1h, at
	// most Interval.
	Timeout time.Duration
	// Rise is how many probes in a row must pass to mark a server up.
	// Default 2, 1..100.
	Rise int
	// Fall is how many probes in a row must fail to mark a server down.
	// Default 3, 1..100.
	Fall int
	// Initial is the state of a server that has no state in the table yet:
	// "up" (the default, as the nginx module), "down" or "checking" (takes
	// no traffic until its first passing probe; a first failing probe marks
	// it down).
	Initial string
	// Port is the port to probe; 0 (the default) probes the server's own
	// port, else 1..65535.
	Port int
	// URI is the request target of the http probe; it must start with "/".
	// Default "/" for http when Send is not set; "" for tcp.
	URI string
	// Host is the Host header of the http probe; "" (the default) sends
	// the server's address. http only.
	Host string
	// Send is a raw request sent instead of the one built from URI and Host
	// (as the nginx module's check_http_send), at most 64KiB; when it is
	// set, URI and Host must not be. http only. Default "".
	Send string
	// ExpectStatus lists the status codes that pass, each a code ("200",
	// 100..599) or a class ("2xx".."5xx"). Key expect_status, default
	// ["2xx", "3xx"] for http; nil for tcp.
	ExpectStatus []string
	// ExpectBody is a substring the response body must contain; "" (the
	// default) does not look at the body. Key expect_body; http only;
	// excludes ExpectBodyRegex.
	ExpectBody string
	// ExpectBodyRegex is an RE2 regular expression the response body must
	// match; "" (the default) does not look at the body. Key
	// expect_body_regex; http only; compiled when the config is loaded.
	ExpectBodyRegex string
	// MaxResponse is the most bytes of a response the probe reads, in
	// bytes. Key max_response: a size string ("512B", "16KiB", "1MB") or an
	// integer number of bytes; default 16KiB, 64B..16MiB.
	MaxResponse int64

	// CheckOptions holds the settings of the other check types and the
	// per-check address, headers and intervals (checks.go).
	CheckOptions

	re    *regexp.Regexp // ExpectBodyRegex compiled; set by validation
	steps []Step         // Sequence compiled; set by validation
}

// UpstreamNames returns the names of c's upstreams, sorted.
func (c *Config) UpstreamNames() []string {
	names := make([]string, 0, len(c.Upstreams))
	for n := range c.Upstreams {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Load reads, parses and validates the TOML config file at path. Relative
// paths inside it are resolved against the file's directory. A file larger
// than MaxFileSize is refused without reading it.
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() && st.Size() > MaxFileSize {
		return nil, sizeError(path, st.Size())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, sizeError(path, -1)
	}
	return Parse(data, path)
}

// Parse parses and validates a TOML config. path names the config in error
// messages and anchors relative paths (its directory; the working directory
// when path is ""). An invalid config gives an Errors listing every problem
// found, each wrapping ErrInvalid. Before decoding, Parse refuses data past
// the bounds of bounds.go (MaxFileSize, MaxDepth, MaxKeyParts, MaxKeyLen,
// MaxItems) with the first one passed; after validation, a config whose
// hand-off to the workers could exceed MaxHandoff.
func Parse(data []byte, path string) (*Config, error) {
	abs, dir := "", ""
	if path != "" {
		p, err := filepath.Abs(path)
		if err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
		abs, dir = p, filepath.Dir(p)
	} else {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dir = wd
	}

	if len(data) > MaxFileSize {
		return nil, sizeError(path, int64(len(data)))
	}
	lines, err := scan(data, path)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if _, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&raw); err != nil {
		return nil, syntaxError(path, err)
	}
	r := &reporter{file: path, loc: lines.line}
	c, set := decode(raw, r)
	if err := r.err(); err != nil {
		return nil, err
	}
	c.Path = abs
	applyDefaults(c, set)
	resolvePaths(c, dir)
	if err := validate(c, r); err != nil {
		return nil, err
	}
	if err := checkHandoff(c, path); err != nil {
		return nil, err
	}
	return c, nil
}

// syntaxError turns a TOML parse error into an *Error.
func syntaxError(path string, err error) error {
	e := &Error{File: path, Msg: "syntax error: " + err.Error()}
	var pe toml.ParseError
	if errors.As(err, &pe) {
		e.Line = pe.Position.Line
		e.Msg = "syntax error: " + pe.Message
	}
	return Errors{e}
}

// resolvePaths makes the file paths in c absolute, relative ones against
// dir.
func resolvePaths(c *Config, dir string) {
	abs := func(p string) string {
		if p == "" {
			return ""
		}
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		return filepath.Clean(p)
	}
	c.PidFile = abs(c.PidFile)
	c.Table = abs(c.Table)
	c.ErrorLog = abs(c.ErrorLog)
	for i := range c.Servers {
		c.Servers[i].AccessLog = abs(c.Servers[i].AccessLog)
	}
	resolveCheckPaths(c, abs)
	if c.Fleet != nil {
		resolveFleetPaths(c.Fleet, abs)
	}
}

// Marshal encodes the validated config as JSON, for the master to pass to
// its workers.
func (c *Config) Marshal() ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	return b, nil
}

// Unmarshal decodes a config that Marshal encoded, re-derives its unexported
// fields (compiled regexps) and validates it again; no defaults are applied
// and no paths resolved.
func Unmarshal(b []byte) (*Config, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("config: unmarshal: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("config: unmarshal: trailing data after the config")
	}
	r := &reporter{file: c.Path}
	for name, u := range c.Upstreams {
		switch {
		case u == nil:
			r.addf(keyJoin("upstream", name), "is null")
		case u.Name != name:
			r.addf(keyJoin("upstream", name), "has name %q", u.Name)
		}
	}
	if err := r.err(); err != nil {
		return nil, err
	}
	if err := validate(&c, r); err != nil {
		return nil, err
	}
	return &c, nil
}
