package fleet

import "testing"

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		checkers, up, down int
		want               State
	}{
		{3, 0, 0, Unknown}, {3, 3, 0, Up}, {3, 2, 1, Up}, {3, 1, 2, Down}, {3, 0, 3, Down},
		{3, 0, 1, Up}, // one verdict of three, down: not a majority
		{2, 1, 1, Up}, {2, 0, 2, Down}, {1, 0, 1, Down}, {1, 1, 0, Up},
	} {
		if got := Decide(tc.checkers, tc.up, tc.down); got != tc.want {
			t.Errorf("Decide(%d checkers, %d up, %d down) = %s, want %s", tc.checkers, tc.up, tc.down, got, tc.want)
		}
	}
}

// TestScoreIsStable pins the rendezvous hash: every host of a fleet must
// rank the same way, across versions. The value was computed apart from
// this code (FNV-1a 64 of key, 0, host, then splitmix64's finalizer).
func TestScoreIsStable(t *testing.T) {
	if got := score("10.0.0.1:80#abc", "edge-1"); got != 0x9478c27dd5061183 {
		t.Errorf("score changed: %#x, want 0x9478c27dd5061183", got)
	}
}

// TestRankSpreadsKeys: rendezvous hashing gives each of 5 hosts about a fifth
// of the first places.
func TestRankSpreadsKeys(t *testing.T) {
	hosts := []string{"a", "b", "c", "d", "e"}
	first := map[string]int{}
	keys := testKeys(10000)
	for _, k := range keys {
		first[topRanked(k, hosts, 1)[0]]++
	}
	for _, h := range hosts {
		if n := first[h]; n < 1700 || n > 2300 {
			t.Errorf("host %s ranks first for %d of %d keys, want about 2000", h, n, len(keys))
		}
	}
}

func TestLayout(t *testing.T) {
	l := layout{"/p/"}
	for _, key := range []string{"10.0.0.1:80#ab", "a/b", "%2F", "ü x"} {
		for _, k := range []string{l.claim(key, "h1"), l.state(key, "h1")} {
			_, gotKey, host, ok := l.parse(k)
			if !ok || gotKey != key || host != "h1" {
				t.Errorf("parse(%q) = %q, %q, %v; want %q, h1", k, gotKey, host, ok, key)
			}
		}
	}
	if kind, _, host, ok := l.parse(l.member("h2")); !ok || kind != kindMember || host != "h2" {
		t.Errorf("member key: %s %s %v", kind, host, ok)
	}
	for _, bad := range []string{"/q/claims/a/h", "/p/claims/a", "/p/other/a/h", "/p/claims/a/b/h", "/p/claims/%zz/h"} {
		if _, _, _, ok := l.parse(bad); ok {
			t.Errorf("parse(%q) accepted", bad)
		}
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	good := Config{Endpoints: []string{"http://127.0.0.1:1"}, Prefix: "/p/", Host: "h", Checkers: 1, TTL: testTTL}
	for name, mut := range map[string]func(*Config){
		"no endpoints": func(c *Config) { c.Endpoints = nil },
		"host slash":   func(c *Config) { c.Host = "a/b" },
		"prefix":       func(c *Config) { c.Prefix = "p" },
		"checkers":     func(c *Config) { c.Checkers = 0 },
		"ttl short":    func(c *Config) { c.TTL = 1e9 },
		"ttl fraction": func(c *Config) { c.TTL = 2500e6 },
	} {
		c := good
		mut(&c)
		if _, err := New(c, nil); err == nil {
			t.Errorf("%s: New accepted %+v", name, c)
		}
	}
	c, err := New(good, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
