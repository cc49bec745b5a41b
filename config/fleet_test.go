package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

// fleetBase is a valid [fleet] table; the rejection cases change it.
const fleetBase = "[fleet]\nendpoints = [\"http://127.0.0.1:2379\"]\n"

// TestFleetAbsentChangesNothing: a config without [fleet] has Fleet nil, so
// every host checks every server itself.
func TestFleetAbsentChangesNothing(t *testing.T) {
	c, err := Parse([]byte(base), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.Fleet != nil {
		t.Fatalf("Fleet = %+v, want nil without a [fleet] table", c.Fleet)
	}
	b, _ := c.Marshal()
	if strings.Contains(string(b), "Fleet") {
		t.Errorf("the hand-off names Fleet without a [fleet] table: %s", b)
	}
}

func TestFleetDefaults(t *testing.T) {
	c, err := Parse([]byte(base+fleetBase), testFile)
	if err != nil {
		t.Fatal(err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no host name on this machine:", err)
	}
	f := c.Fleet
	if f == nil || f.Prefix != "/hcproxy/" || f.Checkers != 2 || f.LeaseTTL != 10*time.Second || f.Host != host {
		t.Errorf("defaults: got %+v, want prefix /hcproxy/, checkers 2, lease_ttl 10s, host %q", f, host)
	}
	roundTrip(t, c)
}

func TestFleetRelativePaths(t *testing.T) {
	src := base + "[fleet]\nendpoints = [\"https://127.0.0.1:2379\"]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nca_file = \"/abs/ca.pem\"\n"
	c, err := Parse([]byte(src), "/etc/hcproxy/x.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Fleet.CertFile != "/etc/hcproxy/c.pem" || c.Fleet.KeyFile != "/etc/hcproxy/k.pem" || c.Fleet.CAFile != "/abs/ca.pem" {
		t.Errorf("paths: %+v", c.Fleet)
	}
}

func TestFleetRejections(t *testing.T) {
	ep := "endpoints = [\"http://127.0.0.1:2379\"]\n"
	tls := "endpoints = [\"https://127.0.0.1:2379\"]\n"
	tests := []struct {
		name, src, key, msg string
	}{
		{"unknown key", "[fleet]\nchecker = 2 #<\n", "fleet.checker", "unknown key"},
		{"missing endpoints", "[fleet] #<\nhost = \"a\"\n", "fleet.endpoints", "at least one etcd endpoint"},
		{"empty endpoints", "[fleet]\nendpoints = [] #<\n", "fleet.endpoints", "at least one etcd endpoint"},
		{"endpoints not array", "[fleet]\nendpoints = \"http://a:1\" #<\n", "fleet.endpoints", "must be an array of URLs"},
		{"endpoint no scheme", "[fleet]\nendpoints = [\"127.0.0.1:2379\"] #<\n", "fleet.endpoints[0]", "must be a URL like"},
		{"endpoint bad scheme", "[fleet]\nendpoints = [\"unix://x:1\"] #<\n", "fleet.endpoints[0]", "must be a URL like"},
		{"endpoint path", "[fleet]\nendpoints = [\"http://a:1/v3\"] #<\n", "fleet.endpoints[0]", "must be a URL like"},
		{"endpoint userinfo", "[fleet]\nendpoints = [\"http://u:p@a:1\"] #<\n", "fleet.endpoints[0]", "must be a URL like"},
		{"endpoint no port", "[fleet]\nendpoints = [\"http://a\"] #<\n", "fleet.endpoints[0]", "a port 1..65535"},
		{"endpoint port zero", "[fleet]\nendpoints = [\"http://a:0\"] #<\n", "fleet.endpoints[0]", "a port 1..65535"},
		{"endpoint duplicate", "[fleet]\nendpoints = [\"http://a:1\", \"http://a:1\"] #<\n", "fleet.endpoints[1]", "duplicate endpoint"},
		{"endpoint mixed schemes", "[fleet]\nendpoints = [\"http://a:1\", \"https://b:1\"] #<\n", "fleet.endpoints[1]", "one scheme"},
		{"cert without key", "[fleet]\n" + tls + "cert_file = \"/c.pem\" #<\n", "fleet.cert_file", "set both or neither"},
		{"key without cert", "[fleet]\n" + tls + "key_file = \"/k.pem\" #<\n", "fleet.key_file", "set both or neither"},
		{"ca with http", "[fleet]\n" + ep + "ca_file = \"/ca.pem\" #<\n", "fleet.ca_file", "needs https endpoints"},
		{"empty ca file", "[fleet]\n" + tls + "ca_file = \"\" #<\n", "", ""},
		{"username alone", "[fleet]\n" + ep + "username = \"u\" #<\n", "fleet.username", "set both or neither"},
		{"password alone", "[fleet]\n" + ep + "password = \"p\" #<\n", "fleet.password", "set both or neither"},
		{"prefix no slash", "[fleet]\n" + ep + "prefix = \"hcproxy\" #<\n", "fleet.prefix", `must start and end with "/"`},
		{"prefix empty", "[fleet]\n" + ep + "prefix = \"\" #<\n", "fleet.prefix", `must start and end with "/"`},
		{"prefix space", "[fleet]\n" + ep + "prefix = \"/a b/\" #<\n", "fleet.prefix", "spaces or control"},
		{"prefix long", "[fleet]\n" + ep + "prefix = \"/" + strings.Repeat("a", 128) + "/\" #<\n", "fleet.prefix", "at most 128 bytes"},
		{"host slash", "[fleet]\n" + ep + "host = \"a/b\" #<\n", "fleet.host", "must be 1..64 letters"},
		{"host empty", "[fleet]\n" + ep + "host = \"\" #<\n", "fleet.host", "host name is unknown"},
		{"host long", "[fleet]\n" + ep + "host = \"" + strings.Repeat("h", 65) + "\" #<\n", "fleet.host", "must be 1..64"},
		{"checkers zero", "[fleet]\n" + ep + "checkers = 0 #<\n", "fleet.checkers", "must be between 1 and 7 (got 0)"},
		{"checkers eight", "[fleet]\n" + ep + "checkers = 8 #<\n", "fleet.checkers", "must be between 1 and 7 (got 8)"},
		{"checkers string", "[fleet]\n" + ep + "checkers = \"2\" #<\n", "fleet.checkers", "must be an integer"},
		{"lease short", "[fleet]\n" + ep + "lease_ttl = \"1s\" #<\n", "fleet.lease_ttl", `must be at least 2s (got "1s")`},
		{"lease long", "[fleet]\n" + ep + "lease_ttl = \"6m\" #<\n", "fleet.lease_ttl", "must be at most 5m"},
		{"lease fraction", "[fleet]\n" + ep + "lease_ttl = \"2500ms\" #<\n", "fleet.lease_ttl", "whole number of seconds"},
		{"fleet not table", "fleet = 1 #<\n", "fleet", "must be a table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tt.src + base
			_, err := Parse([]byte(src), testFile)
			if tt.key == "" {
				if err != nil {
					t.Fatalf("want it accepted, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted; want %s: %s", tt.key, tt.msg)
			}
			want := testFile + ":" + itoa(markedLine(src)) + ": " + tt.key + ": "
			for _, l := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(l, want) && strings.Contains(l, tt.msg) {
					return
				}
			}
			t.Errorf("error\n%s\nhas no line starting %q and containing %q", err, want, tt.msg)
		})
	}
}
