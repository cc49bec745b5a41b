package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// parseCheckErr parses base with a check table and returns the error text.
func parseCheckErr(t *testing.T, check string) string {
	t.Helper()
	_, err := Parse([]byte(base+"[upstream.app.check]\n"+check), testFile)
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestCheckOptionsDecode(t *testing.T) {
	c := parseCheck(t, `type = "tcp"
timeout = "200ms"
down_interval = "10s"
fast_interval = "250ms"
address = "10.0.0.9"
sequence = [
  { expect = "220" },
  { send = "PING\r\n" },
  { expect = "^\\+PONG", match = "regex" },
  { send_hex = "de ad" },
  { expect_hex = "beef", match = "exact" },
]
`)
	if c.DownInterval != 10*time.Second || c.FastInterval != 250*time.Millisecond || c.Address != "10.0.0.9" {
		t.Errorf("got %+v", c.CheckOptions)
	}
	steps := c.Steps()
	if len(steps) != 5 {
		t.Fatalf("%d steps", len(steps))
	}
	if string(steps[0].Expect) != "220" || steps[0].Match != "substring" ||
		string(steps[1].Send) != "PING\r\n" ||
		steps[2].Regexp == nil || !steps[2].Regexp.MatchString("+PONG") ||
		string(steps[3].Send) != "\xde\xad" ||
		string(steps[4].Expect) != "\xbe\xef" || steps[4].Match != "exact" {
		t.Errorf("steps %+v", steps)
	}
}

// TestCheckKeepAlive: keepalive is off by default, set per check for http, https and grpc,
// and leaves the slot key (so turning it on at a reload keeps every server's state).
func TestCheckKeepAlive(t *testing.T) {
	if parseCheck(t, `type = "http"`).KeepAlive {
		t.Error("keepalive on by default")
	}
	for _, typ := range []string{"http", "https", "grpc"} {
		on := parseCheck(t, "type = \""+typ+"\"\nkeepalive = true")
		if !on.KeepAlive {
			t.Errorf("%s: keepalive = true not decoded", typ)
		}
		off := parseCheck(t, "type = \""+typ+"\"")
		if on.Key() != off.Key() {
			t.Errorf("%s: keepalive changed the slot key", typ)
		}
	}
}

func TestCheckTypeDefaults(t *testing.T) {
	https := parseCheck(t, `type = "https"`)
	if https.URI != "/" || len(https.ExpectStatus) != 2 || https.MinVersion != "1.2" || https.SkipVerify {
		t.Errorf("https defaults: uri %q status %v min_version %q skip_verify %v", https.URI, https.ExpectStatus, https.MinVersion, https.SkipVerify)
	}
	fcgi := parseCheck(t, `type = "fastcgi"`)
	if fcgi.URI != "/ping" || fcgi.ExpectBody != "pong" {
		t.Errorf("fastcgi defaults: uri %q expect_body %q", fcgi.URI, fcgi.ExpectBody)
	}
	redis := parseCheck(t, `type = "redis"`)
	if redis.URI != "" || redis.ExpectStatus != nil || redis.MinVersion != "" {
		t.Errorf("redis got http defaults: %+v", redis)
	}
	if off := parseCheck(t, "type = \"tls\"\nverify = false"); !off.SkipVerify {
		t.Error("verify = false did not set SkipVerify")
	}
}

func TestCheckOptionsRejected(t *testing.T) {
	tests := []struct{ check, key, want string }{
		{"type = \"redis\"\nuser = \"x\"", "check.user", `only for types "mysql" or "postgres" (type is "redis")`},
		{"type = \"tcp\"\npassword = \"hunter2\"", "check.password", `only for types "redis" or "postgres"`},
		{"type = \"http\"\nsequence = [{ send = \"x\" }]", "check.sequence", `only for type "tcp"`},
		{"type = \"https\"\nsend = \"GET / HTTP/1.0\\r\\n\\r\\n\"", "check.send", `only for types "http" or "agent"`},
		{"type = \"tcp\"\nsequence = [{ send = \"x\", expect = \"y\" }]", "check.sequence[0]", "exactly one of"},
		{"type = \"tcp\"\nsequence = [{ send_hex = \"zz\" }]", "check.sequence[0]", "invalid hex"},
		{"type = \"tcp\"\nsequence = [{ expect = \"(\", match = \"regex\" }]", "check.sequence[0]", "invalid regular expression"},
		{"type = \"tcp\"\nsequence = [{ expect = \"x\", match = \"fuzzy\" }]", "check.sequence[0]", `match must be`},
		{"type = \"tls\"\ncert_file = \"c.pem\"", "check.key_file", "must be set together"},
		{"type = \"tls\"\nmin_version = \"1.4\"", "check.min_version", `must be`},
		{"type = \"tls\"\ncert_min_days = -1", "check.cert_min_days", "between 0 and 3650"},
		{"type = \"redis\"\nrole = \"leader\"", "check.role", `"master" or "slave"`},
		{"down_interval = \"10ms\"", "check.down_interval", "must be at least 100ms"},
		{"timeout = \"2s\"\ninterval = \"5s\"\nfast_interval = \"1s\"", "check.fast_interval", "must be at least timeout"},
		{"address = \"10.0.0.1:99999\"", "check.address", `must be "host" or "host:port"`},
		{"headers = { \"Bad Name\" = \"v\" }", `check.headers.Bad Name`, "header name"},
		{"type = \"smtp\"\nehlo = \"a\\r\\nRCPT\"", "check.ehlo", "without NUL or line breaks"},
		{"type = \"tcp\"\nkeepalive = true", "check.keepalive", `only for types "http", "https" or "grpc"`},
		{"type = \"http\"\nkeepalive = \"yes\"", "check.keepalive", ""},
	}
	for _, tt := range tests {
		got := parseCheckErr(t, tt.check)
		if !strings.Contains(got, "upstream.app."+tt.key+": ") || !strings.Contains(got, tt.want) {
			t.Errorf("%q:\n got %s\nwant %s: ...%s", tt.check, got, tt.key, tt.want)
		}
	}
}

// TestPasswordNotInErrors pins that a rejected password is never echoed.
func TestPasswordNotInErrors(t *testing.T) {
	pw := strings.Repeat("s3cret", 200)
	got := parseCheckErr(t, "type = \"redis\"\npassword = \""+pw+"\"")
	if got == "" || strings.Contains(got, "s3cret") {
		t.Errorf("error %q", got)
	}
	var errs Errors
	_, err := Parse([]byte(base+"[upstream.app.check]\ntype = \"tcp\"\npassword = \"hunter2\"\n"), testFile)
	if !errors.As(err, &errs) || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error %v", err)
	}
}

// TestKeyOptions: every new field that changes the probe changes the key; the schedule does not;
// a check that sets no option keeps the key it had before options existed (TestKeyGolden).
func TestKeyOptions(t *testing.T) {
	ref := parseCheck(t, "type = \"redis\"\npassword = \"a\"\ninterval = \"2s\"")
	same := []string{
		"type = \"redis\"\npassword = \"a\"\ninterval = \"2s\"\ndown_interval = \"30s\"",
		"type = \"redis\"\npassword = \"a\"\ninterval = \"2s\"\nfast_interval = \"1s\"",
	}
	for _, s := range same {
		if keyOf(t, s) != ref.Key() {
			t.Errorf("%q changed the key", s)
		}
	}
	differ := []string{
		"type = \"redis\"\npassword = \"b\"",
		"type = \"redis\"\npassword = \"a\"\nrole = \"master\"",
		"type = \"redis\"\npassword = \"a\"\naddress = \"10.0.0.2\"",
	}
	for _, s := range differ {
		if keyOf(t, s) == ref.Key() {
			t.Errorf("%q kept the key", s)
		}
	}
	keys := map[uint64]string{}
	for _, s := range []string{
		"type = \"tls\"", "type = \"tls\"\nverify = false", "type = \"tls\"\nsni = \"a\"", "type = \"tls\"\nmin_version = \"1.3\"",
		"type = \"tls\"\ncert_min_days = 3", "type = \"tls\"\nca_file = \"/ca.pem\"",
		"type = \"grpc\"", "type = \"grpc\"\ntls = true", "type = \"grpc\"\nservice = \"x\"",
		"type = \"postgres\"", "type = \"postgres\"\nuser = \"u\"", "type = \"postgres\"\ndatabase = \"d\"",
		"type = \"smtp\"", "type = \"smtp\"\nehlo = \"x\"",
		"type = \"tcp\"\nsequence = [{ send = \"a\" }]", "type = \"tcp\"\nsequence = [{ send = \"b\" }]",
		"headers = { A = \"1\" }", "headers = { A = \"2\" }", "expect_header = \"X\"",
	} {
		k := keyOf(t, s)
		if prev, dup := keys[k]; dup {
			t.Errorf("%q and %q have the same key", s, prev)
		}
		keys[k] = s
	}
}

func keyOf(t *testing.T, check string) uint64 {
	t.Helper()
	c := parseCheck(t, check)
	return c.Key()
}

// TestSharedCheckIntervals: a server two upstreams check with the same probe is one slot, so
// its down and fast intervals must agree like interval does.
func TestSharedCheckIntervals(t *testing.T) {
	cfg := base + "[upstream.app.check]\ndown_interval = \"5s\"\n[upstream.b]\nservers = [\"127.0.0.1:9101\"]\n[upstream.b.check]\ndown_interval = \"6s\"\n"
	_, err := Parse([]byte(cfg), testFile)
	if err == nil || !strings.Contains(err.Error(), "down_interval must match") {
		t.Errorf("got %v", err)
	}
}
