package config

import (
	"runtime"
	"strings"
	"testing"
)

// TestIndexLines checks that keys are placed on the right line through the
// constructs that span lines or hide key-like text: multi-line strings and
// arrays, comments, quoted keys, dotted keys and arrays of tables.
func TestIndexLines(t *testing.T) {
	src := `# a comment with key = "value"
a = """
b = 1
"""  # 4
[t] # 5
"q.k" = 1
x.y = 'lit#eral'
arr = [ # 8
  "one", # 9
  # 10
  { k = 2 }, "three",
]
[[s]] # 13
k = 1
[[s]] # 15
k = 2
[s.sub] # 17
m = '''
'''
n = 1 # 20
`
	ix, err := scan([]byte(src), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int{
		"a": 2, "t": 5, `t."q.k"`: 6, "t.x": 7, "t.x.y": 7, "t.arr": 8,
		"t.arr[0]": 9, "t.arr[1]": 11, "t.arr[2]": 11, "t.arr[1].k": 11,
		"s": 13, "s[0]": 13, "s[0].k": 14, "s[1]": 15, "s[1].k": 16,
		"s[1].sub": 17, "s[1].sub.m": 18, "s[1].sub.n": 20, "b": 0, "s[1].sub.zz": 17,
	} {
		if got := ix.line(key); got != want {
			t.Errorf("line(%s) = %d, want %d", key, got, want)
		}
	}
}

// The line index grows with the file, not with the file times a key: the
// items of an array share their key (a 2 MB file with a 127-character key
// and a million items took about 1 GiB when each item had its own entry).
func TestLineIndexMemoryBoundedBySize(t *testing.T) {
	var b strings.Builder
	b.WriteString(`"` + strings.Repeat("\u00a0", 127) + `" = [`)
	const items = 1_000_000
	for range items {
		b.WriteString("1,")
	}
	b.WriteString("]\n")
	src := []byte(b.String())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ix, err := scan(src, "t.toml")
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 32*uint64(len(src)) {
		t.Errorf("scanning %d bytes allocated %d MiB", len(src), got>>20)
	}
	key := keyPart(strings.Repeat("\u00a0", 127))
	if l := ix.line(keyIndex(key, items-1)); l != 1 {
		t.Errorf("line of the last item: %d, want 1", l)
	}
}
