package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

// base is a valid config; the rejection cases add to it.
const base = `[[server]]
listen = "127.0.0.1:8080"
upstream = "app"

[upstream.app]
servers = ["127.0.0.1:9101"]
`

// issueExample is the example config of the issue that introduced this
// package; it must load.
const issueExample = `workers = 4
pid_file = "run/hcproxy.pid"
table = "run/hcproxy.table"
shutdown_timeout = "30s"
[status]
listen = "127.0.0.1:8081"
[[server]]
listen = "127.0.0.1:8080"
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:9101", { address = "127.0.0.1:9102", weight = 2 }]
[upstream.app.check]
type = "http"
interval = "1s"
timeout = "1s"
rise = 2
fall = 3
send = "GET /health HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n"
expect_status = ["200"]
expect_body = "ok"
max_response = "16KiB"
`

const testFile = "/etc/hcproxy/test.toml"

// markedLine returns the line of src that ends with the marker "#<", or 0.
func markedLine(src string) int {
	for i, l := range strings.Split(src, "\n") {
		if strings.HasSuffix(strings.TrimSpace(l), "#<") {
			return i + 1
		}
	}
	return 0
}

// TestRejections checks that each kind of mistake is rejected with a
// message that names the file, the line (the one marked "#<", when the
// mistake has a line) and the full key.
func TestRejections(t *testing.T) {
	tests := []struct {
		name, src, key, msg string
	}{
		{"unknown top key", "bogus = 1 #<\n" + base, "bogus", "unknown key"},
		{"unknown check key", base + "[upstream.app.check]\nintervall = \"1s\" #<\n", "upstream.app.check.intervall", "unknown key"},
		{"unknown key in server item", base + "[upstream.x]\nservers = [\n  \"127.0.0.1:1\",\n  { address = \"127.0.0.1:2\", wieght = 2 }, #<\n]\n", "upstream.x.servers[1].wieght", "unknown key"},
		{"unknown key in server table", "[[server]]\nlisten = \"127.0.0.1:8081\"\nupstream = \"app\"\n" + base + "[[server]]\nlisten = \":9\"\nupstream = \"app\"\nlisen = 1 #<\n", "server[2].lisen", "unknown key"},
		{"unknown table", base + "[upstream.app.chek] #<\ntype = \"tcp\"\n", "upstream.app.chek", "unknown key"},
		{"wrong type string", "pid_file = 5 #<\n" + base, "pid_file", "must be a string (got integer)"},
		{"wrong type int", base + "[upstream.app.check]\nrise = \"2\" #<\n", "upstream.app.check.rise", "must be an integer (got string)"},
		{"workers bad string", "workers = \"many\" #<\n" + base, "workers", `"auto"`},
		{"workers float", "workers = 1.5 #<\n" + base, "workers", "got float"},
		{"duration bare integer", "shutdown_timeout = 30 #<\n" + base, "shutdown_timeout", `must be a duration string like "1s"`},
		{"bad duration", base + "connect_timeout = \"5 seconds\" #<\n", "upstream.app.connect_timeout", `invalid duration "5 seconds"`},
		{"bad size", base + "[upstream.app.check]\nmax_response = \"16 kilobytes\" #<\n", "upstream.app.check.max_response", `invalid size "16 kilobytes"`},
		{"size wrong type", base + "[upstream.app.check]\nmax_response = 1.5 #<\n", "upstream.app.check.max_response", "got float"},
		{"undefined upstream", "[[server]]\nlisten = \":1\"\nupstream = \"nope\" #<\n" + base, "server[0].upstream", `upstream "nope" is not defined (defined: app)`},
		{"duplicate server address", base + "[upstream.b]\nservers = [\"127.0.0.1:1\", \"127.0.0.1:01\"] #<\n", "upstream.b.servers[1]", "duplicate server 127.0.0.1:1"},
		{"duplicate listen", base + "[[server]]\nlisten = \"127.0.0.1:8080\" #<\nupstream = \"app\"\n", "server[1].listen", "is already the listen address of server[0].listen"},
		{"status listen clash", base + "[status]\nlisten = \"127.0.0.1:8080\" #<\n", "status.listen", "already the listen address"},
		{"status header timeout too short", base + "[status]\nclient_header_timeout = \"10ms\" #<\n", "status.client_header_timeout", `must be at least 100ms (got "10ms")`},
		{"no servers", "[upstream.app]\nservers = [\"127.0.0.1:1\"]\n", "server", "at least one [[server]]"},
		{"server as table", "[server] #<\nlisten = \":1\"\n", "server", "must be an array of tables, written [[server]]"},
		{"missing listen", "[[server]] #<\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:1\"]\n", "server[0].listen", "required"},
		{"empty servers", base + "[upstream.b]\nservers = [] #<\n", "upstream.b.servers", "at least one server"},
		{"missing servers", base + "[upstream.b] #<\nconnect_timeout = \"1s\"\n", "upstream.b.servers", "at least one server"},
		{"server no port", base + "[upstream.b]\nservers = [\"127.0.0.1\"] #<\n", "upstream.b.servers[0]", `must be "host:port"`},
		{"server port zero", base + "[upstream.b]\nservers = [\"127.0.0.1:0\"] #<\n", "upstream.b.servers[0]", "port must be a number 1..65535"},
		{"server port name", base + "[upstream.b]\nservers = [\"127.0.0.1:http\"] #<\n", "upstream.b.servers[0]", "port must be a number"},
		{"server bad host", base + "[upstream.b]\nservers = [\"bad_host!:80\"] #<\n", "upstream.b.servers[0]", "host must be an IP address or a DNS name"},
		{"server empty host", base + "[upstream.b]\nservers = [\":80\"] #<\n", "upstream.b.servers[0]", "host must not be empty"},
		{"server item wrong type", base + "[upstream.b]\nservers = [80] #<\n", "upstream.b.servers[0]", "got integer"},
		{"server item no address", base + "[upstream.b]\nservers = [{ weight = 2 }] #<\n", "upstream.b.servers[0].address", "required"},
		{"weight zero", base + "[upstream.b]\nservers = [{ address = \"127.0.0.1:1\", weight = 0 }] #<\n", "upstream.b.servers[0].weight", "must be between 1 and 1000 (got 0)"},
		{"weight too big", base + "[upstream.b]\nservers = [{ address = \"127.0.0.1:1\", weight = 1001 }] #<\n", "upstream.b.servers[0].weight", "must be between 1 and 1000"},
		{"workers zero", "workers = 0 #<\n" + base, "workers", "must be between 1 and 64 (got 0)"},
		{"workers huge", "workers = 99999999999 #<\n" + base, "workers", "out of range"},
		{"max_servers zero", "max_servers = 0 #<\n" + base, "max_servers", "must be between 1 and 100000"},
		{"max_servers too small", "max_servers = 1 #<\n" + base + "[upstream.b]\nservers = [\"127.0.0.1:1\"]\n", "max_servers", "2 distinct checked servers do not fit"},
		{"shutdown negative", "shutdown_timeout = \"-1s\" #<\n" + base, "shutdown_timeout", `must be at least 0s (got "-1s")`},
		{"shutdown too long", "shutdown_timeout = \"2h\" #<\n" + base, "shutdown_timeout", `must be at most 1h (got "2h0m0s")`},
		{"log_format", "log_format = \"xml\" #<\n" + base, "log_format", `must be "text" or "json" (got "xml")`},
		{"empty pid_file", "pid_file = \"\" #<\n" + base, "pid_file", "must not be empty"},
		{"interval too short", base + "[upstream.app.check]\ninterval = \"50ms\" #<\n", "upstream.app.check.interval", `must be at least 100ms (got "50ms")`},
		{"timeout too short", base + "[upstream.app.check]\ntimeout = \"1ms\" #<\n", "upstream.app.check.timeout", `must be at least 10ms (got "1ms")`},
		{"timeout above interval", base + "[upstream.app.check]\ninterval = \"500ms\"\ntimeout = \"1s\" #<\n", "upstream.app.check.timeout", "must be at most interval (500ms)"},
		{"rise zero", base + "[upstream.app.check]\nrise = 0 #<\n", "upstream.app.check.rise", "must be between 1 and 100 (got 0)"},
		{"fall too big", base + "[upstream.app.check]\nfall = 101 #<\n", "upstream.app.check.fall", "must be between 1 and 100"},
		{"bad type", base + "[upstream.app.check]\ntype = \"udp\" #<\n", "upstream.app.check.type", `must be "http", "tcp", "tls"`},
		{"bad initial", base + "[upstream.app.check]\ninitial = \"maybe\" #<\n", "upstream.app.check.initial", `"up", "down" or "checking"`},
		{"bad port", base + "[upstream.app.check]\nport = 70000 #<\n", "upstream.app.check.port", "must be between 0 and 65535"},
		{"uri no slash", base + "[upstream.app.check]\nuri = \"health\" #<\n", "upstream.app.check.uri", `must start with "/"`},
		{"uri space", base + "[upstream.app.check]\nuri = \"/a b\" #<\n", "upstream.app.check.uri", "must not contain spaces"},
		{"send with uri", base + "[upstream.app.check]\nsend = \"GET / HTTP/1.0\\r\\n\\r\\n\"\nuri = \"/\" #<\n", "upstream.app.check.uri", "must not be set together with send"},
		{"send with host", base + "[upstream.app.check]\nsend = \"GET / HTTP/1.0\\r\\n\\r\\n\"\nhost = \"x\" #<\n", "upstream.app.check.host", "must not be set together with send"},
		{"tcp with uri", base + "[upstream.app.check]\ntype = \"tcp\"\nuri = \"/\" #<\n", "upstream.app.check.uri", `only for types "http", "https" or "fastcgi" (type is "tcp")`},
		{"tcp with expect_status", base + "[upstream.app.check]\ntype = \"tcp\"\nexpect_status = [\"200\"] #<\n", "upstream.app.check.expect_status", `only for types "http", "https" or "fastcgi"`},
		{"bad status", base + "[upstream.app.check]\nexpect_status = [\"200\", \"600\"] #<\n", "upstream.app.check.expect_status[1]", `got "600"`},
		{"bad status class", base + "[upstream.app.check]\nexpect_status = [\"2XX\"] #<\n", "upstream.app.check.expect_status[0]", "must be a status code"},
		{"status not string", base + "[upstream.app.check]\nexpect_status = [200] #<\n", "upstream.app.check.expect_status[0]", "got integer"},
		{"empty status", base + "[upstream.app.check]\nexpect_status = [] #<\n", "upstream.app.check.expect_status", "at least one"},
		{"body and regex", base + "[upstream.app.check]\nexpect_body = \"ok\"\nexpect_body_regex = \"ok\" #<\n", "upstream.app.check.expect_body_regex", "must not be set together with expect_body"},
		{"bad regex", base + "[upstream.app.check]\nexpect_body_regex = \"(ok\" #<\n", "upstream.app.check.expect_body_regex", "invalid regular expression"},
		{"max_response too small", base + "[upstream.app.check]\nmax_response = \"63B\" #<\n", "upstream.app.check.max_response", "must be between 64B and 16MiB (got 63B)"},
		{"max_response too big", base + "[upstream.app.check]\nmax_response = \"17MiB\" #<\n", "upstream.app.check.max_response", "must be between 64B and 16MiB"},
		{"connect_timeout zero", base + "connect_timeout = \"0s\" #<\n", "upstream.app.connect_timeout", "must be at least 1ms"},
		{"upstream name", base + "[upstream.\"a b\"] #<\nservers = [\"127.0.0.1:1\"]\n", `upstream."a b"`, "name must be"},
		{"upstream not table", "upstream = 1 #<\n" + base[:strings.Index(base, "[upstream")], "upstream", "must be a table"},
		{"check not table", base + "check = \"tcp\" #<\n", "upstream.app.check", "must be a table (got string)"},
		{"shared probe interval", base + "[upstream.b]\nservers = [\"127.0.0.1:9101\"]\n[upstream.b.check]\ninterval = \"2s\" #<\n",
			"upstream.b.check.interval", "server 127.0.0.1:9101 is also checked by upstream.app with the same probe, interval must match (1s vs 2s)"},
		{"shared probe rise", base + "[upstream.b]\nservers = [\"127.0.0.1:9101\"]\n[upstream.b.check]\nrise = 5 #<\n",
			"upstream.b.check.rise", "rise must match (2 vs 5)"},
		{"syntax error", base + "[upstream.b\n", "", "syntax error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), testFile)
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tt.src)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			var want string
			if line := markedLine(tt.src); line > 0 {
				want = testFile + ":" + itoa(line) + ": " + tt.key + ": "
			} else {
				want = testFile + ": " + tt.key + ": "
			}
			if tt.key == "" {
				want = testFile + ":"
			}
			msg := err.Error()
			found := false
			for _, l := range strings.Split(msg, "\n") {
				if strings.HasPrefix(l, want) && strings.Contains(l, tt.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("error\n%s\nhas no line starting %q and containing %q", msg, want, tt.msg)
			}
		})
	}
}

// TestErrorsSortedByLine checks that several problems are all reported, in
// source order, each on its own line.
func TestErrorsSortedByLine(t *testing.T) {
	src := base + "[upstream.app.check]\nrise = 0\nfall = 0\n"
	src = "workers = 0\n" + src
	_, err := Parse([]byte(src), testFile)
	var es Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("want 3 errors, got %v", err)
	}
	if es[0].Key != "workers" || es[1].Key != "upstream.app.check.rise" || es[2].Key != "upstream.app.check.fall" {
		t.Errorf("errors out of order: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(base), testFile)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Path:            testFile,
		Workers:         min(runtime.NumCPU(), 64),
		PidFile:         "/run/hcproxy.pid",
		Table:           "/dev/shm/hcproxy/table",
		MaxServers:      1024,
		ShutdownTimeout: 30 * time.Second,
		LogFormat:       "text",
		LogLevel:        "info",
		Engine:          "fast",
		Steering:        "auto",
		ErrorLog:        "",
		Servers: []Server{{Listen: "127.0.0.1:8080", Upstream: "app", AccessLogFormat: "combined", RequestIDHeader: "X-Request-ID",
			Forwarded: "x-forwarded", ClientHeaderTimeout: 60 * time.Second, ClientIdleTimeout: 75 * time.Second, ClientSendTimeout: 60 * time.Second}},
		Upstreams: map[string]*Upstream{"app": {
			Name:           "app",
			Servers:        []UpstreamServer{{Address: "127.0.0.1:9101", Weight: 1}},
			ConnectTimeout: 5 * time.Second,
			ReadTimeout:    60 * time.Second,
			SendTimeout:    60 * time.Second,
			Balancer:       "round_robin",
			AllDown:        "fail",
			Retries:        1,
			Keepalive:      32,
			RetryOn:        []string{"connect", "timeout"},
			MaxFails:       1,
			FailTimeout:    10 * time.Second,
			Check: Check{
				Type: "http", Interval: time.Second, Timeout: time.Second, Rise: 2, Fall: 3,
				Initial: "up", URI: "/", ExpectStatus: []string{"2xx", "3xx"}, MaxResponse: 16384,
			},
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", c, want)
	}

	c, err = Parse([]byte(base+"[status]\n[upstream.app.check]\ntype = \"tcp\"\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.Status == nil || c.Status.Listen != "127.0.0.1:8081" || c.Status.ClientHeaderTimeout != 10*time.Second {
		t.Errorf("status listen and header timeout defaults: got %+v", c.Status)
	}
	ch := c.Upstreams["app"].Check
	if ch.URI != "" || ch.ExpectStatus != nil || ch.Interval != time.Second {
		t.Errorf("tcp check defaults: got %+v", ch)
	}

	c, err = Parse([]byte(base+"[upstream.app.check]\nsend = \"GET / HTTP/1.0\\r\\n\\r\\n\"\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if ch := c.Upstreams["app"].Check; ch.URI != "" || len(ch.ExpectStatus) != 2 {
		t.Errorf("send check: uri must stay empty, expect_status default: got %+v", ch)
	}
}

func TestIssueExample(t *testing.T) {
	c, err := Parse([]byte(issueExample), "/etc/hcproxy/hcproxy.toml")
	if err != nil {
		t.Fatal(err)
	}
	u := c.Upstreams["app"]
	ch := u.Check
	if c.Workers != 4 || c.PidFile != "/etc/hcproxy/run/hcproxy.pid" || c.Status.Listen != "127.0.0.1:8081" ||
		len(u.Servers) != 2 || u.Servers[1].Weight != 2 || ch.URI != "" || ch.MaxResponse != 16384 ||
		ch.Send != "GET /health HTTP/1.1\r\nHost: app\r\nConnection: close\r\n\r\n" || !ch.StatusOK(200) || ch.StatusOK(204) {
		t.Errorf("unexpected config: %+v %+v", c, u)
	}
	roundTrip(t, c)
}

// TestZeroShutdownTimeout pins that an explicit zero is kept, not replaced
// by the default.
func TestZeroShutdownTimeout(t *testing.T) {
	c, err := Parse([]byte("shutdown_timeout = \"0s\"\n"+base), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.ShutdownTimeout != 0 {
		t.Errorf("ShutdownTimeout = %v, want 0", c.ShutdownTimeout)
	}
}

func TestRelativePaths(t *testing.T) {
	src := "pid_file = \"run/hcproxy.pid\"\ntable = \"../shm/t\"\nerror_log = \"/var/log/e.log\"\n" + base
	c, err := Parse([]byte(src), "/etc/hcproxy/hcproxy.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.PidFile != "/etc/hcproxy/run/hcproxy.pid" || c.Table != "/etc/shm/t" || c.ErrorLog != "/var/log/e.log" {
		t.Errorf("paths: pid_file %q table %q error_log %q", c.PidFile, c.Table, c.ErrorLog)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "h.toml")
	if err := os.WriteFile(path, []byte("error_log = \"e.log\"\n"+base), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	c, err = Load("h.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Path != path || c.ErrorLog != filepath.Join(dir, "e.log") {
		t.Errorf("Load of a relative path: Path %q ErrorLog %q", c.Path, c.ErrorLog)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "none.toml"))
	if !errors.Is(err, os.ErrNotExist) || errors.Is(err, ErrInvalid) {
		t.Errorf("got %v, want a not-exist error that is not ErrInvalid", err)
	}
}

func TestWorkers(t *testing.T) {
	for _, tt := range []struct {
		line string
		want int
	}{
		{"", min(runtime.NumCPU(), 64)},
		{"workers = \"auto\"\n", min(runtime.NumCPU(), 64)},
		{"workers = 4\n", 4},
		{"workers = 64\n", 64},
	} {
		c, err := Parse([]byte(tt.line+base), testFile)
		if err != nil {
			t.Fatalf("%q: %v", tt.line, err)
		}
		if c.Workers != tt.want {
			t.Errorf("%q: Workers = %d, want %d", tt.line, c.Workers, tt.want)
		}
	}
}

func TestUpstreamServerForms(t *testing.T) {
	src := base + `[upstream.b]
servers = [
  "127.0.0.1:1",
  { address = "[::1]:2", weight = 3 },
  { address = "Backend.Example:0080" },
  "[0:0::2]:4",
]
`
	c, err := Parse([]byte(src), testFile)
	if err != nil {
		t.Fatal(err)
	}
	want := []UpstreamServer{
		{Address: "127.0.0.1:1", Weight: 1}, {Address: "[::1]:2", Weight: 3}, {Address: "backend.example:80", Weight: 1}, {Address: "[::2]:4", Weight: 1},
	}
	if got := c.Upstreams["b"].Servers; !reflect.DeepEqual(got, want) {
		t.Errorf("servers: got %v, want %v", got, want)
	}
	if got := c.UpstreamNames(); !reflect.DeepEqual(got, []string{"app", "b"}) {
		t.Errorf("UpstreamNames = %v", got)
	}
}

// TestSharedProbe checks the cross-upstream rule: the same address with the
// same probe may appear in two upstreams when the schedules agree, and with
// a different probe schedules may differ.
func TestSharedProbe(t *testing.T) {
	for _, extra := range []string{
		"[upstream.b]\nservers = [\"127.0.0.1:9101\"]\n[upstream.b.check]\ninitial = \"down\"\n",
		"[upstream.b]\nservers = [\"127.0.0.1:9101\"]\n[upstream.b.check]\ninterval = \"2s\"\nuri = \"/other\"\n",
		"[upstream.b]\nservers = [\"127.0.0.1:9101\"]\n[upstream.b.check]\ninterval = \"2s\"\nport = 9200\n",
	} {
		if _, err := Parse([]byte(base+extra), testFile); err != nil {
			t.Errorf("%s: %v", extra, err)
		}
	}
	c, err := Parse([]byte("max_servers = 1\n"+base+"[upstream.b]\nservers = [\"127.0.0.1:9101\"]\n"), testFile)
	if err != nil {
		t.Fatalf("one shared slot must fit max_servers = 1: %v", err)
	}
	if c.MaxServers != 1 {
		t.Errorf("MaxServers = %d", c.MaxServers)
	}
}

func TestStatusOK(t *testing.T) {
	c := &Check{ExpectStatus: []string{"200", "3xx", "404"}}
	for code, want := range map[int]bool{
		200: true, 201: false, 204: false, 300: true, 301: true, 399: true,
		404: true, 400: false, 500: false, 100: false, 0: false, 99: false, 2000: false, 600: false,
	} {
		if got := c.StatusOK(code); got != want {
			t.Errorf("StatusOK(%d) = %v, want %v", code, got, want)
		}
	}
	if (&Check{}).StatusOK(200) {
		t.Error("an empty ExpectStatus must match nothing")
	}
	if n := testing.AllocsPerRun(100, func() { c.StatusOK(301) }); n != 0 {
		t.Errorf("StatusOK allocates %v times", n)
	}
}

func parseCheck(t *testing.T, check string) Check {
	t.Helper()
	c, err := Parse([]byte(base+"[upstream.app.check]\n"+check), testFile)
	if err != nil {
		t.Fatal(err)
	}
	return c.Upstreams["app"].Check
}

func TestKey(t *testing.T) {
	a := parseCheck(t, "expect_body = \"ok\"\n")
	b := parseCheck(t, "expect_body = \"ok\"\n")
	if a.Key() != b.Key() {
		t.Error("the same check gives different keys")
	}
	for _, same := range []string{
		"expect_body = \"ok\"\ninterval = \"5s\"\n",
		"expect_body = \"ok\"\nrise = 7\nfall = 9\ninitial = \"checking\"\n",
		"expect_body = \"ok\"\nexpect_status = [\"3xx\", \"2xx\"]\n",
	} {
		if c := parseCheck(t, same); c.Key() != a.Key() {
			t.Errorf("%q changed the key", same)
		}
	}
	seen := map[uint64]string{a.Key(): "base"}
	for _, diff := range []string{
		"expect_body = \"OK\"\n",
		"expect_body_regex = \"ok\"\n",
		"expect_body = \"ok\"\ntimeout = \"500ms\"\n",
		"expect_body = \"ok\"\nport = 81\n",
		"expect_body = \"ok\"\nuri = \"/h\"\n",
		"expect_body = \"ok\"\nhost = \"h\"\n",
		"expect_body = \"ok\"\nsend = \"GET / HTTP/1.0\\r\\n\\r\\n\"\n",
		"expect_body = \"ok\"\nexpect_status = [\"200\"]\n",
		"expect_body = \"ok\"\nmax_response = 1024\n",
		"type = \"tcp\"\n",
	} {
		c := parseCheck(t, diff)
		k := c.Key()
		if prev, ok := seen[k]; ok {
			t.Errorf("%q gives the same key as %q", diff, prev)
		}
		seen[k] = diff
	}
}

// TestKeyGolden pins the key of a fixed check: it must never change between
// builds, or every reload after an upgrade would lose all health state.
func TestKeyGolden(t *testing.T) {
	c := Check{
		Type: "http", Timeout: time.Second, URI: "/", ExpectStatus: []string{"2xx", "3xx"},
		MaxResponse: 16384,
	}
	const want = 0xb7f9c7e4abc9534d
	if got := c.Key(); got != want {
		t.Errorf("Key() = %#x, want %#x", got, uint64(want))
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	c, err := Load("../testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, d) {
		t.Errorf("round trip differs:\n got %+v\nwant %+v", d, c)
	}
	re := d.Upstreams["api"].Check.BodyRegexp()
	if re == nil || !re.MatchString(`{"status": "degraded"}`) || re.MatchString(`{"status": "down"}`) {
		t.Errorf("BodyRegexp after Unmarshal: %v", re)
	}
	if d.Upstreams["app"].Check.BodyRegexp() != nil {
		t.Error("BodyRegexp must be nil when expect_body_regex is not set")
	}
}

func TestUnmarshalRejects(t *testing.T) {
	c, err := Parse([]byte(base), testFile)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := c.Marshal()
	for _, tt := range []struct {
		name, from, to, want string
	}{
		{"not json", "{", "[", "config: unmarshal"},
		{"unknown field", `"Workers"`, `"Bogus":1,"Workers"`, "unknown field"},
		{"null upstream", `"app":{`, `"app":null,"x":{`, "upstream.app: is null"},
		{"name mismatch", `"Name":"app"`, `"Name":"other"`, `upstream.app: has name "other"`},
		{"out of range", `"Rise":2`, `"Rise":0`, testFile + ": upstream.app.check.rise: must be between 1 and 100"},
		{"relative path", `"/run/hcproxy.pid"`, `"run/hcproxy.pid"`, "pid_file: must be an absolute path"},
		{"trailing data", "", "", "trailing data"},
	} {
		b := strings.Replace(string(good), tt.from, tt.to, 1)
		if tt.name == "trailing data" {
			b += "{}"
		}
		if _, err := Unmarshal([]byte(b)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

// TestExamples loads every example config in testdata/; each must be valid
// and survive the trip to a worker.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../testdata/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, c)
		})
	}
}

// TestBadExamples loads every config in testdata/bad/; each must be
// rejected with the message its first line names: "# error: SUBSTRING".
func TestBadExamples(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad examples: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			first, _, _ := strings.Cut(string(data), "\n")
			want, ok := strings.CutPrefix(first, "# error: ")
			if !ok {
				t.Fatalf(`first line must be "# error: SUBSTRING", got %q`, first)
			}
			_, err = Load(f)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("got %v, want an error containing %q", err, want)
			}
		})
	}
}

// roundTrip checks that c survives Marshal and Unmarshal unchanged.
func roundTrip(t testing.TB, c *Config) {
	t.Helper()
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	d, err := Unmarshal(b)
	if err != nil {
		t.Fatalf("Unmarshal of a valid config: %v\n%s", err, b)
	}
	if !reflect.DeepEqual(c, d) {
		t.Fatalf("round trip differs:\n got %+v\nwant %+v", d, c)
	}
}

func TestStatusAllow(t *testing.T) {
	base := "[[server]]\nlisten = \"127.0.0.1:8080\"\nupstream = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:9101\"]\n"
	c, err := Parse([]byte(base+"[status]\n"), "/etc/hcproxy/t.toml")
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{"127.0.0.1": true, "127.9.9.9": true, "::1": true, "::ffff:127.0.0.1": true, "10.0.0.1": false, "::2": false} {
		if got := c.Status.Allowed(netip.MustParseAddr(ip)); got != want {
			t.Errorf("default allow: %s allowed=%v, want %v", ip, got, want)
		}
	}
	if c.Status.Admin {
		t.Error("admin must default to false")
	}
	c, err = Parse([]byte(base+"[status]\nallow = [\"10.0.0.0/8\", \"192.168.1.7\"]\nadmin = true\n"), "/etc/hcproxy/t.toml")
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]bool{"10.1.2.3": true, "192.168.1.7": true, "192.168.1.8": false, "127.0.0.1": false} {
		if got := c.Status.Allowed(netip.MustParseAddr(ip)); got != want {
			t.Errorf("allow list: %s allowed=%v, want %v", ip, got, want)
		}
	}
	b, _ := c.Marshal()
	c2, err := Unmarshal(b)
	if err != nil || !c2.Status.Allowed(netip.MustParseAddr("10.1.2.3")) || !c2.Status.Admin {
		t.Fatalf("allow list lost in Marshal/Unmarshal: %v", err)
	}
	for _, bad := range []string{"allow = [\"10.0.0.0/33\"]", "allow = \"10.0.0.0/8\"", "allow = [1]", "admin = \"yes\""} {
		_, err := Parse([]byte(base+"[status]\n"+bad+"\n"), "/etc/hcproxy/t.toml")
		if err == nil || !strings.Contains(err.Error(), "status.") {
			t.Errorf("%s: got %v, want an error naming the status key", bad, err)
		}
	}
}

func TestBalancerKeys(t *testing.T) {
	base := "[[server]]\nlisten = \"127.0.0.1:8080\"\nupstream = \"app\"\n[upstream.app]\n"
	c, err := Parse([]byte(base+"servers = [\"127.0.0.1:1\", { address = \"127.0.0.1:2\", backup = true }]\nbalancer = \"hash\"\nall_down = \"any\"\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	u := c.Upstreams["app"]
	if u.Balancer != "hash" || u.HashKey != "remote_addr" || u.AllDown != "any" || !u.Servers[1].Backup || u.Servers[0].Backup {
		t.Fatalf("upstream %+v", u)
	}
	bad := []struct{ src, key string }{
		{"servers = [\"127.0.0.1:1\"]\nbalancer = \"fastest\"\n", "upstream.app.balancer"},
		{"servers = [\"127.0.0.1:1\"]\nhash_key = \"uri\"\n", "upstream.app.hash_key"},
		{"servers = [\"127.0.0.1:1\"]\nbalancer = \"hash\"\nhash_key = \"header:\"\n", "upstream.app.hash_key"},
		{"servers = [\"127.0.0.1:1\"]\nbalancer = \"hash\"\nhash_key = \"body\"\n", "upstream.app.hash_key"},
		{"servers = [\"127.0.0.1:1\"]\nall_down = \"panic\"\n", "upstream.app.all_down"},
		{"servers = [{ address = \"127.0.0.1:1\", backup = true }]\n", "upstream.app.servers"},
		{"servers = [{ address = \"127.0.0.1:1\", backup = 1 }]\n", "upstream.app.servers[0].backup"},
	}
	for _, b := range bad {
		_, err := Parse([]byte(base+b.src), testFile)
		if err == nil || !strings.Contains(err.Error(), b.key) {
			t.Errorf("%q: got %v, want an error naming %s", b.src, err, b.key)
		}
	}
}

func TestRetryAndPassiveKeys(t *testing.T) {
	base := "[[server]]\nlisten = \"127.0.0.1:8080\"\nupstream = \"app\"\n[upstream.app]\n"
	c, err := Parse([]byte(base+"servers = [\"127.0.0.1:1\", { address = \"127.0.0.1:2\", slow_start = \"5s\" }]\nretries = 2\nretry_on = [\"connect\", \"503\"]\nretry_timeout = \"3s\"\nretry_non_idempotent = true\nmax_fails = 0\nfail_timeout = \"30s\"\neject_consecutive_5xx = 5\nslow_start = \"30s\"\n"), testFile)
	if err != nil {
		t.Fatal(err)
	}
	u := c.Upstreams["app"]
	if u.Retries != 2 || len(u.RetryOn) != 2 || u.RetryTimeout != 3*time.Second || !u.RetryNonIdempotent || u.MaxFails != 0 ||
		u.FailTimeout != 30*time.Second || u.EjectConsecutive5xx != 5 || u.SlowStart != 30*time.Second || u.Servers[1].SlowStart != 5*time.Second {
		t.Fatalf("upstream %+v", u)
	}
	for _, b := range []struct{ src, key string }{
		{"retries = -1", "upstream.app.retries"},
		{"retry_on = [\"sometimes\"]", "upstream.app.retry_on[0]"},
		{"retry_on = [\"200\"]", "upstream.app.retry_on[0]"},
		{"fail_timeout = \"10ms\"", "upstream.app.fail_timeout"},
		{"slow_start = 30", "upstream.app.slow_start"},
	} {
		_, err := Parse([]byte(base+"servers = [\"127.0.0.1:1\"]\n"+b.src+"\n"), testFile)
		if err == nil || !strings.Contains(err.Error(), b.key) {
			t.Errorf("%q: got %v, want an error naming %s", b.src, err, b.key)
		}
	}
}
