package h1

import (
	"errors"
	"testing"
)

func TestParseTarget(t *testing.T) {
	for _, c := range []struct {
		m, t   string
		form   Form
		auth   string
		err    error
		origin string
	}{
		{"GET", "/", Origin, "", nil, "/"},
		{"GET", "/a?b=c", Origin, "", nil, "/a?b=c"},
		{"GET", "http://h/p?q", Absolute, "h", nil, "/p?q"},
		{"GET", "HTTP://h:8080", Absolute, "h:8080", nil, "/"},
		{"GET", "https://h?q", Absolute, "h", nil, "/?q"},
		{"GET", "http://[::1]:80/x", Absolute, "[::1]:80", nil, "/x"},
		{"OPTIONS", "*", Asterisk, "", nil, "*"},
		{"CONNECT", "h:443", Authority, "h:443", nil, "h:443"},
		// refused: what nginx and HAProxy refuse
		{"GET", "rl", 0, "", ErrTarget, ""},
		{"GET", "t:80", 0, "", ErrTarget, ""},
		{"GET", "*", 0, "", ErrTargetForm, ""},
		{"GET", "", 0, "", ErrTarget, ""},
		{"GET", "http://u:p@h/", 0, "", ErrTargetUserinfo, ""},
		{"GET", "http://@h/", 0, "", ErrTargetUserinfo, ""},
		{"GET", "http:///p", 0, "", ErrTarget, ""},
		{"GET", "http://h:8x/", 0, "", ErrTarget, ""},
		{"GET", "ftp://h/", 0, "", ErrTargetScheme, ""},
		{"GET", "http://h\\x/", 0, "", ErrTarget, ""},
		{"GET", "/a%2Fb", Origin, "", nil, "/a%2Fb"},
		{"GET", "/%zz", 0, "", ErrTargetEscape, ""},
		{"GET", "/%4", 0, "", ErrTargetEscape, ""},
		{"GET", "/\xae", 0, "", ErrTarget, ""},
		{"GET", "/a\x7fb", 0, "", ErrTarget, ""},
	} {
		form, auth, err := ParseTarget([]byte(c.m), []byte(c.t))
		if !errors.Is(err, c.err) {
			t.Errorf("%s %q: err %v, want %v", c.m, c.t, err, c.err)
			continue
		}
		if err != nil {
			continue
		}
		if form != c.form || string(auth) != c.auth {
			t.Errorf("%s %q: form %d authority %q, want %d %q", c.m, c.t, form, auth, c.form, c.auth)
		}
		if got := string(OriginForm(form, []byte(c.t))); got != c.origin {
			t.Errorf("%s %q: origin form %q, want %q", c.m, c.t, got, c.origin)
		}
	}
}

func TestValidAuthority(t *testing.T) {
	for a, want := range map[string]bool{
		"": true, "example.com": true, "example.com:80": true, "127.0.0.1:8080": true, "[::1]": true,
		"[::1]:443": true, "a_b-c~d%20": true, "h:": true,
		"a b": false, "a/b": false, "a@b": false, "a:b:c": false, "[::1": false, "[]": false,
		"h:8o": false, "a\x00b": false, "a?b": false, "a#b": false, "a\\b": false, "[::1]x": false,
	} {
		if got := ValidAuthority([]byte(a)); got != want {
			t.Errorf("ValidAuthority(%q) = %v, want %v", a, got, want)
		}
	}
}

func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"/", "http://h/p", "*", "rl", "t:80", "http://u@h/", "https://[::1]:1?q"} {
		f.Add("GET", s)
	}
	f.Fuzz(func(t *testing.T, m, s string) {
		form, auth, err := ParseTarget([]byte(m), []byte(s))
		if err != nil {
			return
		}
		if form == Absolute && !ValidAuthority(auth) {
			t.Fatalf("%q: authority %q accepted but not valid", s, auth)
		}
		o := OriginForm(form, []byte(s))
		if form != Asterisk && form != Authority && (len(o) == 0 || o[0] != '/') {
			t.Fatalf("%q: origin form %q", s, o)
		}
	})
}
