package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The send timeouts of both sides: upstream send_timeout (nginx's proxy_send_timeout) and
// [[server]] client_send_timeout (nginx's send_timeout) parse, default to 60s, survive the trip
// to a worker, and out-of-range values are named by file, line and key.
func TestSendTimeoutKeys(t *testing.T) {
	c, err := Parse([]byte(base), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Servers[0].ClientSendTimeout; got != 60*time.Second {
		t.Errorf("client_send_timeout default %v, want 60s", got)
	}
	if got := c.Upstreams["app"].SendTimeout; got != 60*time.Second {
		t.Errorf("send_timeout default %v, want 60s", got)
	}

	src := "[[server]]\nlisten = \"127.0.0.1:8080\"\nupstream = \"app\"\nclient_send_timeout = \"300ms\"\n" +
		"[upstream.app]\nservers = [\"127.0.0.1:9101\"]\nsend_timeout = \"2m\"\n"
	c, err = Parse([]byte(src), testFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Servers[0].ClientSendTimeout; got != 300*time.Millisecond {
		t.Errorf("client_send_timeout %v, want 300ms", got)
	}
	if got := c.Upstreams["app"].SendTimeout; got != 2*time.Minute {
		t.Errorf("send_timeout %v, want 2m", got)
	}
	roundTrip(t, c)

	server := "[[server]]\nlisten = \"127.0.0.1:8080\"\nupstream = \"app\"\n"
	upstream := "[upstream.app]\nservers = [\"127.0.0.1:9101\"]\n"
	for _, tt := range []struct {
		name, src, key, msg string
	}{
		{"send_timeout zero", server + upstream + "send_timeout = \"0s\" #<\n", "upstream.app.send_timeout", `must be at least 1ms (got "0s")`},
		{"send_timeout negative", server + upstream + "send_timeout = \"-1s\" #<\n", "upstream.app.send_timeout", "must be at least 1ms"},
		{"send_timeout too long", server + upstream + "send_timeout = \"25h\" #<\n", "upstream.app.send_timeout", "must be at most 24h"},
		{"send_timeout bare number", server + upstream + "send_timeout = 60 #<\n", "upstream.app.send_timeout", `must be a duration string like "1s"`},
		{"client_send_timeout zero", server + "client_send_timeout = \"0s\" #<\n" + upstream, "server[0].client_send_timeout", `must be at least 1ms (got "0s")`},
		{"client_send_timeout too long", server + "client_send_timeout = \"48h\" #<\n" + upstream, "server[0].client_send_timeout", "must be at most 24h"},
		{"client_send_timeout bad", server + "client_send_timeout = \"soon\" #<\n" + upstream, "server[0].client_send_timeout", `invalid duration "soon"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.src), testFile)
			if err == nil {
				t.Fatalf("Parse accepted:\n%s", tt.src)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error does not wrap ErrInvalid: %v", err)
			}
			want := testFile + ":" + itoa(markedLine(tt.src)) + ": " + tt.key + ": "
			for _, l := range strings.Split(err.Error(), "\n") {
				if strings.HasPrefix(l, want) && strings.Contains(l, tt.msg) {
					return
				}
			}
			t.Errorf("error\n%s\nhas no line starting %q and containing %q", err, want, tt.msg)
		})
	}
}
