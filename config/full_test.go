package config

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// schemaKey turns a full key into its schema form: upstream names and array indices become *,
// so upstream.app.check.interval and upstream.api.check.interval are one key.
func schemaKey(k string) string {
	k = regexp.MustCompile(`\[\d+\]`).ReplaceAllString(k, "[*]")
	if p := strings.SplitN(k, ".", 3); len(p) >= 2 && p[0] == "upstream" {
		p[1] = "*"
		k = strings.Join(p, ".")
	}
	if i := strings.Index(k, ".check.headers."); i >= 0 {
		k = k[:i] + ".check.headers.*"
	}
	return k
}

// TestFullTomlSetsEveryKey pins that testdata/full.toml, which the README offers as the
// config "with every setting", lacked access_log, balancer, retries, engine, user and more:
// every key the decoder asks for (in the tables full.toml has, which are all of them) must be
// set somewhere in it, and it must load.
func TestFullTomlSetsEveryKey(t *testing.T) {
	schema := map[string]bool{}
	asked = func(k string) { schema[schemaKey(k)] = true }
	defer func() { asked = nil }()
	c, err := Load("../testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	asked = nil
	var raw map[string]any
	if _, err := toml.DecodeFile("../testdata/full.toml", &raw); err != nil {
		t.Fatal(err)
	}
	r := &reporter{}
	_, keys := decode(raw, r)
	set := map[string]bool{}
	for k := range keys {
		set[schemaKey(k)] = true
	}
	var missing []string
	for k := range schema {
		if !set[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("testdata/full.toml lacks %d keys of the schema:\n%s", len(missing), strings.Join(missing, "\n"))
	}
	if len(c.Upstreams) == 0 {
		t.Fatal("no upstreams")
	}
}

// The ranges full.toml's comments state are the code's: each "A..B" after a key's
// description must be the range the validator enforces, checked by setting A-1 and B+1 where
// they are integers. Here: workers, whose comment said 1..256 while the code allows 1..64.
func TestFullTomlWorkersRange(t *testing.T) {
	b, err := os.ReadFile("../testdata/full.toml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`worker processes, (\d+)\.\.(\d+)`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatal("full.toml states no range for workers")
	}
	for _, tc := range []struct {
		v  string
		ok bool
	}{{m[1], true}, {m[2], true}, {"0", false}, {"65", false}} {
		_, err := Parse([]byte("workers = "+tc.v+"\n[[server]]\nlisten = \"127.0.0.1:1\"\nupstream = \"a\"\n[upstream.a]\nservers = [\"127.0.0.1:2\"]\n"), "")
		if (err == nil) != tc.ok {
			t.Errorf("workers = %s: %v (full.toml says %s..%s)", tc.v, err, m[1], m[2])
		}
	}
}
