package config

import (
	"math"
	"sort"
	"time"
)

// keySet holds the keys (formatted as in errors) that the TOML source sets,
// so that applyDefaults fills in exactly the others.
type keySet map[string]bool

// decode turns the generic TOML tree into a Config, checking key names and
// value types. It reports every problem to r; ranges and relations between
// values are validate's job, so they are checked for Unmarshal too.
func decode(raw map[string]any, r *reporter) (*Config, keySet) {
	set := keySet{}
	c := &Config{Upstreams: map[string]*Upstream{}}
	top := newTable(r, set, "", raw)

	if v, k, ok := top.get("workers"); ok {
		switch v := v.(type) {
		case string:
			if v != "auto" {
				r.addf(k, `must be an integer or "auto" (got %q)`, v)
			}
			delete(set, k) // "auto" is the default
		case int64:
			c.Workers = top.toInt(k, v)
		default:
			r.addf(k, `must be an integer or "auto" (got %s)`, typeName(v))
		}
	}
	top.str("pid_file", &c.PidFile)
	top.str("table", &c.Table)
	top.integer("max_servers", &c.MaxServers)
	top.duration("shutdown_timeout", &c.ShutdownTimeout)
	top.str("log_format", &c.LogFormat)
	top.str("error_log", &c.ErrorLog)
	top.str("log_level", &c.LogLevel)
	top.str("engine", &c.Engine)
	top.str("steering", &c.Steering)
	top.str("user", &c.User)
	top.str("group", &c.Group)

	if st := top.table("status"); st != nil {
		c.Status = &Status{}
		st.address("listen", &c.Status.Listen, true)
		st.strs("allow", &c.Status.Allow, `CIDR strings like ["10.0.0.0/8"]`)
		st.boolean("admin", &c.Status.Admin)
		st.duration("client_header_timeout", &c.Status.ClientHeaderTimeout)
		st.done()
	}
	for _, t := range top.tables("server") {
		var s Server
		t.address("listen", &s.Listen, true)
		t.str("upstream", &s.Upstream)
		t.str("access_log", &s.AccessLog)
		t.str("access_log_format", &s.AccessLogFormat)
		t.str("request_id_header", &s.RequestIDHeader)
		t.str("forwarded", &s.Forwarded)
		t.boolean("via", &s.Via)
		t.duration("client_header_timeout", &s.ClientHeaderTimeout)
		t.duration("client_idle_timeout", &s.ClientIdleTimeout)
		t.duration("client_send_timeout", &s.ClientSendTimeout)
		t.done()
		c.Servers = append(c.Servers, s)
	}
	if ft := top.table("fleet"); ft != nil {
		c.Fleet = decodeFleet(ft)
	}
	if ups := top.table("upstream"); ups != nil {
		for _, name := range ups.names() {
			t := ups.table(name)
			if t == nil {
				continue
			}
			c.Upstreams[name] = decodeUpstream(t, name)
		}
		ups.done()
	}
	top.done()
	return c, set
}

func decodeUpstream(t *table, name string) *Upstream {
	u := &Upstream{Name: name}
	if v, k, ok := t.get("servers"); ok {
		items, isArray := v.([]any)
		if !isArray {
			t.r.addf(k, `must be an array of "host:port" strings or {address = "host:port", weight = N} tables (got %s)`, typeName(v))
		}
		for i, item := range items {
			ik := keyIndex(k, i)
			s := UpstreamServer{}
			switch item := item.(type) {
			case string:
				s.Address = canonOrRaw(item, false)
			case map[string]any:
				st := newTable(t.r, t.set, ik, item)
				if !st.address("address", &s.Address, false) {
					t.r.addf(keyJoin(ik, "address"), "required")
				}
				st.integer("weight", &s.Weight)
				st.boolean("backup", &s.Backup)
				st.duration("slow_start", &s.SlowStart)
				st.done()
			default:
				t.r.addf(ik, `must be a "host:port" string or an {address = "host:port", weight = N} table (got %s)`, typeName(item))
			}
			u.Servers = append(u.Servers, s)
		}
	}
	t.duration("connect_timeout", &u.ConnectTimeout)
	t.duration("read_timeout", &u.ReadTimeout)
	t.duration("send_timeout", &u.SendTimeout)
	t.str("balancer", &u.Balancer)
	t.str("hash_key", &u.HashKey)
	t.str("all_down", &u.AllDown)
	t.integer("retries", &u.Retries)
	t.strs("retry_on", &u.RetryOn, `failure kinds like ["connect", "timeout", "502"]`)
	t.duration("retry_timeout", &u.RetryTimeout)
	t.boolean("retry_non_idempotent", &u.RetryNonIdempotent)
	t.integer("max_fails", &u.MaxFails)
	t.duration("fail_timeout", &u.FailTimeout)
	t.integer("eject_consecutive_5xx", &u.EjectConsecutive5xx)
	t.duration("slow_start", &u.SlowStart)
	t.integer("keepalive", &u.Keepalive)
	if ct := t.table("check"); ct != nil {
		decodeCheck(ct, &u.Check)
	}
	t.done()
	return u
}

func decodeCheck(t *table, c *Check) {
	t.str("type", &c.Type)
	t.duration("interval", &c.Interval)
	t.duration("timeout", &c.Timeout)
	t.integer("rise", &c.Rise)
	t.integer("fall", &c.Fall)
	t.str("initial", &c.Initial)
	t.integer("port", &c.Port)
	t.str("uri", &c.URI)
	t.str("host", &c.Host)
	t.str("send", &c.Send)
	if v, k, ok := t.get("expect_status"); ok {
		items, isArray := v.([]any)
		if !isArray {
			t.r.addf(k, `must be an array of strings like ["200", "3xx"] (got %s)`, typeName(v))
		}
		c.ExpectStatus = []string{}
		for i, item := range items {
			s, isStr := item.(string)
			if !isStr {
				t.r.addf(keyIndex(k, i), `must be a string like "200" or "2xx" (got %s)`, typeName(item))
			}
			c.ExpectStatus = append(c.ExpectStatus, s)
		}
	}
	t.str("expect_body", &c.ExpectBody)
	t.str("expect_body_regex", &c.ExpectBodyRegex)
	if v, k, ok := t.get("max_response"); ok {
		switch v := v.(type) {
		case int64:
			c.MaxResponse = v
		case string:
			n, err := parseSize(v)
			if err != nil {
				t.r.addf(k, "%v", err)
			}
			c.MaxResponse = n
		default:
			t.r.addf(k, `must be a size like "16KiB" or a number of bytes (got %s)`, typeName(v))
		}
	}
	decodeCheckOptions(t, c)
	t.done()
}

// table is one TOML table being decoded; it remembers which keys were read
// so that done can report the others as unknown.
type table struct {
	r    *reporter
	set  keySet
	key  string // dotted key of the table, "" at the top
	m    map[string]any
	used map[string]bool
}

func newTable(r *reporter, set keySet, key string, m map[string]any) *table {
	return &table{r: r, set: set, key: key, m: m, used: map[string]bool{}}
}

// asked, when not nil, is told the full key of every name a table is asked for, present or
// not: the schema as the decoder knows it, for tests (TestFullTomlSetsEveryKey). Nil outside
// tests.
var asked func(key string)

// get returns the value of name and its full key, marking it read and set.
func (t *table) get(name string) (v any, key string, ok bool) {
	if asked != nil {
		asked(keyJoin(t.key, name))
	}
	v, ok = t.m[name]
	if !ok {
		return nil, "", false
	}
	key = keyJoin(t.key, name)
	t.used[name] = true
	t.set[key] = true
	return v, key, true
}

// names returns the table's keys, sorted.
func (t *table) names() []string {
	names := make([]string, 0, len(t.m))
	for n := range t.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// done reports every key that was not read as unknown.
func (t *table) done() {
	for _, n := range t.names() {
		if !t.used[n] {
			t.r.addf(keyJoin(t.key, n), "unknown key")
		}
	}
}

func (t *table) str(name string, dst *string) {
	v, k, ok := t.get(name)
	if !ok {
		return
	}
	s, isStr := v.(string)
	if !isStr {
		t.r.addf(k, "must be a string (got %s)", typeName(v))
		return
	}
	*dst = s
}

// strs reads an array of strings; what describes the expected items in errors.
func (t *table) strs(name string, dst *[]string, what string) {
	v, k, ok := t.get(name)
	if !ok {
		return
	}
	items, isArray := v.([]any)
	if !isArray {
		t.r.addf(k, "must be an array of %s (got %s)", what, typeName(v))
		return
	}
	*dst = []string{}
	for i, item := range items {
		s, isStr := item.(string)
		if !isStr {
			t.r.addf(keyIndex(k, i), "must be a string (got %s)", typeName(item))
			continue
		}
		*dst = append(*dst, s)
	}
}

func (t *table) boolean(name string, dst *bool) {
	v, k, ok := t.get(name)
	if !ok {
		return
	}
	b, isBool := v.(bool)
	if !isBool {
		t.r.addf(k, "must be true or false (got %s)", typeName(v))
		return
	}
	*dst = b
}

func (t *table) integer(name string, dst *int) {
	v, k, ok := t.get(name)
	if !ok {
		return
	}
	n, isInt := v.(int64)
	if !isInt {
		t.r.addf(k, "must be an integer (got %s)", typeName(v))
		return
	}
	*dst = t.toInt(k, n)
}

// toInt converts n to int, reporting values that no setting accepts (and
// that might not fit an int).
func (t *table) toInt(key string, n int64) int {
	if n < math.MinInt32 || n > math.MaxInt32 {
		t.r.addf(key, "out of range (got %d)", n)
		return 0
	}
	return int(n)
}

func (t *table) duration(name string, dst *time.Duration) {
	v, k, ok := t.get(name)
	if !ok {
		return
	}
	s, isStr := v.(string)
	if !isStr {
		t.r.addf(k, `must be a duration string like "1s" or "250ms" (got %s %v)`, typeName(v), v)
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		t.r.addf(k, `invalid duration %q: use a string like "1s" or "250ms"`, s)
		return
	}
	*dst = d
}

// address reads a host:port string into dst in canonical form and reports
// whether the key was present.
func (t *table) address(name string, dst *string, emptyHost bool) bool {
	v, k, ok := t.get(name)
	if !ok {
		return false
	}
	s, isStr := v.(string)
	if !isStr {
		t.r.addf(k, `must be a "host:port" string (got %s)`, typeName(v))
		return true
	}
	*dst = canonOrRaw(s, emptyHost)
	return true
}

// canonOrRaw returns s in canonical form, or s itself when it is not a
// valid address (validate reports it).
func canonOrRaw(s string, emptyHost bool) string {
	c, err := canonAddr(s, emptyHost)
	if err != nil {
		return s
	}
	return c
}

// table returns the sub-table name, or nil when it is absent or not a
// table (reported).
func (t *table) table(name string) *table {
	v, k, ok := t.get(name)
	if !ok {
		return nil
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		t.r.addf(k, "must be a table (got %s)", typeName(v))
		return nil
	}
	return newTable(t.r, t.set, k, m)
}

// tables returns the elements of the array of tables name ([[name]]).
func (t *table) tables(name string) []*table {
	v, k, ok := t.get(name)
	if !ok {
		return nil
	}
	var out []*table
	switch v := v.(type) {
	case []map[string]any:
		for i, m := range v {
			out = append(out, newTable(t.r, t.set, keyIndex(k, i), m))
		}
	case []any:
		for i, item := range v {
			m, isMap := item.(map[string]any)
			if !isMap {
				t.r.addf(keyIndex(k, i), "must be a table (got %s)", typeName(item))
				continue
			}
			out = append(out, newTable(t.r, t.set, keyIndex(k, i), m))
		}
	default:
		t.r.addf(k, "must be an array of tables, written [[%s]] (got %s)", name, typeName(v))
	}
	return out
}

// typeName names the TOML type of a decoded value.
func typeName(v any) string {
	switch v.(type) {
	case string:
		return "string"
	case int64:
		return "integer"
	case float64:
		return "float"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case []map[string]any:
		return "array of tables"
	case map[string]any:
		return "table"
	default:
		return "datetime"
	}
}
