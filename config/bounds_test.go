package config

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// boundErr parses data and returns its single error, failing the test
// unless Parse refused data with exactly one *Error on line whose message
// contains msg.
func boundErr(t *testing.T, data, msg string, line int) *Error {
	t.Helper()
	c, err := Parse([]byte(data), "/etc/hcproxy/t.toml")
	if err == nil || c != nil {
		t.Fatalf("Parse accepted it (config %v, error %v); want %q", c != nil, err, msg)
	}
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v; want one *Error wrapping ErrInvalid", err)
	}
	e := es[0]
	if !strings.Contains(e.Msg, msg) || e.Line != line || e.File != "/etc/hcproxy/t.toml" {
		t.Fatalf("got %q (line %d); want line %d and %q", e.Error(), e.Line, line, msg)
	}
	return e
}

// nested returns key = {a = {a = ... 1 ...}} with n inline tables.
func nested(key string, n int) string {
	return key + " = " + strings.Repeat("{a = ", n) + "1" + strings.Repeat("}", n) + "\n"
}

// The TOML decoder took 20 s and 3.9 GB on 10,000 nested inline tables
// (60 KB); the pre-scan refuses them before it runs.
func TestTenThousandNestedInlineTablesRefusedBeforeDecoding(t *testing.T) {
	e := boundErr(t, base+nested("x", 10000), "nest more than 32 deep", 7)
	if e.Key != "x" {
		t.Errorf("key %q, want x", e.Key)
	}
	// Arrays, and arrays and inline tables mixed, count the same.
	boundErr(t, base+"x = "+strings.Repeat("[", 50000)+strings.Repeat("]", 50000)+"\n", "nest more than 32 deep", 7)
	boundErr(t, base+"x = "+strings.Repeat("[{a = ", 10000)+"1"+strings.Repeat("}]", 10000)+"\n", "nest more than 32 deep", 7)
	// Over several lines: the line is where the limit is passed.
	boundErr(t, base+"x = [\n"+strings.Repeat("[\n", 40), "nest more than 32 deep", 7+MaxDepth)
}

// The decoder took 24 s and 5.1 GB on a key of 20,000 dotted parts (40 KB).
func TestTwentyThousandPartDottedKeyRefusedBeforeDecoding(t *testing.T) {
	key := strings.Repeat("a.", 19999) + "a"
	e := boundErr(t, base+key+" = 1\n", "key has more than 16 parts", 7)
	if !strings.HasPrefix(e.Key, "a.a.a") || len(e.Key) > 70 {
		t.Errorf("key %q: want the key's start, shortened", e.Key)
	}
	// As a table header, an array-of-tables header and inside an inline table.
	boundErr(t, base+"["+key+"]\n", "key has more than 16 parts", 7)
	boundErr(t, base+"[["+key+"]]\n", "key has more than 16 parts", 7)
	boundErr(t, base+"x = { "+key+" = 1 }\n", "key has more than 16 parts", 7)
}

// Each bound lets through exactly its limit: the decoder then refuses the
// unknown key, not the pre-scan.
func TestBoundsAtTheirLimitsPass(t *testing.T) {
	for name, in := range map[string]string{
		"depth":     nested("x", MaxDepth),
		"parts":     strings.Repeat("a.", MaxKeyParts-1) + "a = 1\n",
		"key bytes": "[\"" + strings.Repeat("h", MaxKeyLen-4) + "\"]\nk = 1\n", // "hh…h".k
	} {
		if _, err := scan([]byte(base+in), "t.toml"); err != nil {
			t.Errorf("%s at its limit: %v", name, err)
		}
	}
	boundErr(t, base+nested("x", MaxDepth+1), "nest more than 32 deep", 7)
	boundErr(t, base+strings.Repeat("a.", MaxKeyParts)+"a = 1\n", "more than 16 parts", 7)
	e := boundErr(t, base+"[\""+strings.Repeat("h", MaxKeyLen-4)+"\"]\nk1 = 1\n", "full key name", 8)
	if e.Key != "k1" {
		t.Errorf("key %q, want k1", e.Key)
	}
	boundErr(t, base+"x = { \""+strings.Repeat("h", MaxKeyLen)+"\" = 1 }\n", "full key name", 7)
}

// MaxItems counts values and key parts, later parts of a key more, so that
// neither many values nor many long keys make the decoder slow.
func TestTooManyKeysAndValuesRefusedBeforeDecoding(t *testing.T) {
	boundErr(t, base+"x = ["+strings.Repeat("1,", MaxItems)+"]\n", "more than 1048576 keys and values", 7)
	// 16-part keys count 136 each, plus 1 for the value: 7,654 of them pass
	// the limit in 270 KB.
	var b strings.Builder
	b.WriteString(base)
	n := MaxItems/137 + 1
	for i := 0; i < n; i++ {
		b.WriteString("k" + strconv.Itoa(i) + strings.Repeat(".a", MaxKeyParts-1) + " = 1\n")
	}
	boundErr(t, b.String(), "keys and values", 6+n)
	// Inline tables inside inline tables: each level's keys count more.
	b.Reset()
	b.WriteString(base)
	n = MaxItems/(1+31+31*32/2+1) + 1 // x, 31 tables, their keys (1, 2, ... 31), 1
	for i := 0; i < n; i++ {
		b.WriteString(nested("x"+strconv.Itoa(i), 31))
	}
	if _, err := scan([]byte(b.String()), "t.toml"); err == nil || !strings.Contains(err.Error(), "keys and values") {
		t.Errorf("%d lines of 31 nested inline tables: %v, want the MaxItems error", n, err)
	}
}

// The pre-scan reads strings and comments as TOML does: brackets, braces,
// dots and quotes inside them count for nothing, and lines inside
// multi-line strings count for the error's line.
func TestBoundsSkipStringsAndComments(t *testing.T) {
	deep := strings.Repeat("[{", 100)
	dots := strings.Repeat("a.", 100)
	cfg := `# ` + deep + dots + ` "unclosed
[[server]]
listen = "127.0.0.1:8080" # ` + deep + `
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:9101"]
[upstream.app.check]
headers = { "X-` + dots + `b" = "` + deep + `\" ` + dots + `", 'X-Lit.` + dots + `c' = '` + deep + `\' }
send = """GET / HTTP/1.1\r
X: \"""` + deep + `""\
  ` + dots + `
""` + "\"\"\"" + `
expect_body = '''` + deep + `
'` + dots + `''` + "'''" + `
expect_status = [ # ` + deep + `
  "200", # ` + dots + `
]
`
	c, err := Parse([]byte(cfg), "/etc/hcproxy/t.toml")
	if err != nil {
		t.Fatalf("a config with brackets and dots in strings and comments: %v", err)
	}
	if got := c.Upstreams["app"].Check.Headers["X-"+dots+"b"]; got != deep+`" `+dots {
		t.Fatalf("header = %q", got)
	}
	// One or two quotes that end a multi-line string's content just before
	// its closing three are part of it, not the start of another string.
	for _, q := range []string{`"`, `'`} {
		for _, end := range []string{q + q + q + q, q + q + q + q + q} {
			in := "x = [" + q + q + q + "a" + end + ", \"" + strings.Repeat("[", 40) + "\"]\n"
			var v map[string]any
			if err := toml.Unmarshal([]byte(in), &v); err != nil {
				t.Fatalf("%s: %v", in, err)
			}
			if _, err := scan([]byte(in), "t.toml"); err != nil {
				t.Errorf("%s: %v", in, err)
			}
		}
	}
	// An error after the multi-line strings gets the right line.
	boundErr(t, cfg+strings.Repeat("a.", 20)+"a = 1\n", "more than 16 parts", strings.Count(cfg, "\n")+1)
}

// The pre-scan stays quiet on text that is not TOML; the decoder names the
// problem.
func TestBoundsLeaveSyntaxErrorsToTheDecoder(t *testing.T) {
	for _, in := range []string{
		"x = \"\"\"\n{{{{", "x = '''", "x = \"abc\n", "[a.b\n", "x = [1,\n", "x = {a = 1,,}", "= 1", "]]]]",
		"x = 1 \"\"\"\n" + nested("y", 3), "x = \"\\", "a.\"b\n", "\xff\xfe = 1",
	} {
		_, err := scan([]byte(in), "t.toml")
		if err != nil {
			t.Errorf("%q: %v", in, err)
		}
		if _, err := Parse([]byte(in), "t.toml"); err == nil || !strings.Contains(err.Error(), "syntax error") {
			t.Errorf("%q: Parse gave %v, want a syntax error", in, err)
		}
	}
}

// A config file larger than MaxFileSize is refused by its size, before it
// is read or parsed.
func TestOversizedConfigFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.toml")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(base); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileSize + 1); err != nil { // sparse: nothing written past base
		t.Fatal(err)
	}
	f.Close()
	_, err = Load(path)
	want := path + ": config is 16777217 bytes, more than the limit of 16777216 (16MiB)"
	if err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %v, want %q", err, want)
	}
	// Parse refuses as much data too, and Load a file whose size stat does
	// not tell (a character device): it reads no more than the limit.
	if _, err := Parse(make([]byte, MaxFileSize+1), "t.toml"); err == nil || !strings.Contains(err.Error(), "more than the limit of 16777216") {
		t.Errorf("Parse: %v", err)
	}
	if _, err := Load("/dev/zero"); err == nil || err.Error() != "/dev/zero: config is more than 16777216 bytes (16MiB), the limit" {
		t.Errorf("Load(/dev/zero): %v", err)
	}
}

// A config passed -t and then every worker died with "decode payload:
// unexpected end of JSON input": its JSON was more than the 64 MiB the
// worker read. Parse now refuses a config that cannot be handed over whole.
// Here an 11 MiB expect_body of '<', which JSON escapes to six bytes each.
func TestConfigTooLargeForTheWorkerHandoffRefusedByParse(t *testing.T) {
	body := strings.Repeat("<", 11<<20)
	cfg := base + "[upstream.app.check]\nmax_response = \"16MiB\"\nexpect_body = \"" + body + "\"\n"
	_, err := Parse([]byte(cfg), "/etc/hcproxy/t.toml")
	want := "/etc/hcproxy/t.toml: config is too large to hand to the workers: more than 67108864 bytes (64MiB) as JSON, the limit (upstreams 1, listeners 1, server entries 1)"
	if err == nil || err.Error() != want || !errors.Is(err, ErrInvalid) {
		t.Fatalf("got %.300v, want %q", err, want)
	}
	// A tenth of it passes.
	cfg = base + "[upstream.app.check]\nmax_response = \"16MiB\"\nexpect_body = \"" + body[:len(body)/10] + "\"\n"
	if _, err := Parse([]byte(cfg), "/etc/hcproxy/t.toml"); err != nil {
		t.Fatalf("a 1.1 MiB expect_body: %.300v", err)
	}
}

// The largest table a config may ask for, 100,000 servers (each with an
// address, a weight and a slow start), passes every bound with room to
// spare. (worker's TestLargestConfigPayloadRoundTrips parses one and hands
// it over.)
func TestMaxServersConfigAccepted(t *testing.T) {
	cfg := largestConfig()
	if len(cfg) > MaxFileSize/2 {
		t.Fatalf("%d bytes: the largest real config should be far below MaxFileSize", len(cfg))
	}
	s := &scanner{src: []byte(cfg), line: 1, ix: newLineIndex(), explicit: map[string]bool{}, aot: map[string]int{}}
	s.document()
	if s.err != nil || s.items > MaxItems*3/4 {
		t.Fatalf("bounds: %v, %d items (limit %d)", s.err, s.items, MaxItems)
	}
}

// largestConfig is base plus an upstream of 99,999 servers as inline
// tables, with max_servers = 100,000.
func largestConfig() string {
	var b strings.Builder
	b.WriteString("max_servers = 100000\n" + base + "[upstream.big]\nservers = [\n")
	for i := 0; i < 99999; i++ {
		b.WriteString(`  { address = "10.` + strconv.Itoa(i>>16) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255) + `:8080", weight = 2, slow_start = "30s" },` + "\n")
	}
	b.WriteString("]\n")
	return b.String()
}
