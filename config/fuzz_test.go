package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to Parse. Parse must never panic, and a
// config it accepts must survive Marshal and Unmarshal unchanged (the
// master's config is exactly the worker's).
func FuzzParse(f *testing.F) {
	// The smallest valid config.
	f.Add([]byte(base))
	// The issue's example: every kind of check setting, send with escapes.
	f.Add([]byte(issueExample))
	// Every example shipped in testdata/, valid and broken.
	for _, pattern := range []string{"../testdata/*.toml", "testdata/bad/*.toml"} {
		files, _ := filepath.Glob(pattern)
		for _, name := range files {
			if data, err := os.ReadFile(name); err == nil {
				f.Add(data)
			}
		}
	}
	// A tcp check, IPv6 and name addresses, a regexp, a shared server.
	f.Add([]byte(base + `[upstream.b]
servers = ["[::1]:80", "Host.Example:8080", "127.0.0.1:9101"]
[upstream.b.check]
type = "tcp"
[upstream.c]
servers = ["127.0.0.1:9101"]
check = { expect_body_regex = "^ok$", max_response = 64 }
`))
	// Wrong types and unknown keys in places the decoder walks.
	f.Add([]byte("workers = []\nserver = 1\nupstream = { a = 1, b = { servers = [1, {}] } }\n"))
	f.Add([]byte("[[server]]\n[[server]]\nlisten = \"\"\n[upstream]\n\"a.b\" = {}\n"))
	// Broken TOML: an unterminated multi-line string and array.
	f.Add([]byte("a = \"\"\"\nb = [1,\n"))
	// Past the structural bounds checked before decoding: inline tables and
	// arrays nested 34 deep, a 17-part dotted key and table header.
	f.Add([]byte(base + "x = " + strings.Repeat("{a = [", 17) + "1" + strings.Repeat("]}", 17) + "\n"))
	f.Add([]byte(base + "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q = 1\n[a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q]\n"))
	// Brackets, dots and quotes inside strings and comments count for
	// nothing: a quoted dotted key, multi-line strings ending in quotes.
	f.Add([]byte(base + `[upstream.app.check] # [[{{a.b.c
headers = { "X-a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q" = '[{' }
send = """[{\"""\
"""""
expect_body = '''{
['''''
`))
	// Sizes and durations at and past their limits.
	f.Add([]byte(base + "[upstream.app.check]\nmax_response = \"9223372036854775807GiB\"\ninterval = \"1h0m0.000000001s\"\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "/fuzz/hcproxy.toml")
		if err != nil {
			if c != nil {
				t.Fatal("Parse returned a config and an error")
			}
			return
		}
		roundTrip(t, c)
	})
}
