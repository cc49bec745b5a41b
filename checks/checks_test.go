package checks

import (
	"path/filepath"
	"testing"

	"hcproxy/config"
)

func TestAddr(t *testing.T) {
	cases := []struct {
		server, address string
		port            int
		want            string
	}{
		{"10.0.0.1:80", "", 0, "10.0.0.1:80"},
		{"10.0.0.1:80", "", 8080, "10.0.0.1:8080"},
		{"10.0.0.1:80", "10.0.0.9", 0, "10.0.0.9:80"},
		{"10.0.0.1:80", "10.0.0.9:6379", 0, "10.0.0.9:6379"},
		{"10.0.0.1:80", "10.0.0.9:6379", 9000, "10.0.0.9:9000"},
		{"10.0.0.1:80", "::1", 0, "[::1]:80"},
		{"[::1]:80", "", 81, "[::1]:81"},
	}
	for _, c := range cases {
		got, err := Addr(c.server, &config.Check{Port: c.port, CheckOptions: config.CheckOptions{Address: c.address}})
		if err != nil || got != c.want {
			t.Errorf("Addr(%q, address %q, port %d) = %q, %v; want %q", c.server, c.address, c.port, got, err, c.want)
		}
	}
}

// TestNewProberEveryType builds the probe of every check in the example configs, so that each
// type a config accepts has a probe.
func TestNewProberEveryType(t *testing.T) {
	files, _ := filepath.Glob("../testdata/*.toml")
	seen := map[string]bool{}
	for _, f := range files {
		c, err := config.Load(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for name, u := range c.Upstreams {
			if _, err := NewProber(&u.Check); err != nil {
				t.Errorf("%s: upstream %s: %v", f, name, err)
			}
			seen[u.Check.Type] = true
		}
	}
	for _, typ := range config.CheckTypes {
		if !seen[typ] {
			t.Errorf("no example config has a %q check", typ)
		}
	}
}
