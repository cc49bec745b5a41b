package config

import "testing"

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
