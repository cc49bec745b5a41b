package config

import (
	"strings"
	"testing"
)

func TestSteeringAndUserKeys(t *testing.T) {
	c, err := Parse([]byte(base), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if c.Steering != "auto" || c.User != "" || c.Group != "" {
		t.Fatalf("defaults: steering %q user %q group %q", c.Steering, c.User, c.Group)
	}
	for _, mode := range []string{"auto", "bpf", "shared"} {
		c, err := Parse([]byte("steering = \""+mode+"\"\nuser = \"nobody\"\ngroup = \"nogroup\"\n"+base), testFile)
		if err != nil {
			t.Fatalf("steering %s: %v", mode, err)
		}
		if c.Steering != mode || c.User != "nobody" || c.Group != "nogroup" {
			t.Fatalf("steering %s: got %q %q %q", mode, c.Steering, c.User, c.Group)
		}
		roundTrip(t, c)
	}
	bad := []struct{ src, key string }{
		{"steering = \"ebpf\"\n", "steering"},
		{"steering = 1\n", "steering"},
		{"user = 0\n", "user"},
		{"group = \"nogroup\"\n", "group"},
	}
	for _, b := range bad {
		_, err := Parse([]byte(b.src+base), testFile)
		if err == nil || !strings.Contains(err.Error(), b.key) {
			t.Errorf("%q: got %v, want an error naming %s", b.src, err, b.key)
		}
	}
}
