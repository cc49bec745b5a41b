package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"hcproxy/status"
)

// agentServer answers HAProxy's agent-check protocol on loopback with whatever line it is set to.
type agentServer struct {
	ln   net.Listener
	mu   sync.Mutex
	line string
}

func startAgent(t *testing.T, line string) *agentServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &agentServer{ln: ln, line: line}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.mu.Lock()
			l := a.line
			a.mu.Unlock()
			io.WriteString(c, l+"\n")
			c.Close()
		}
	}()
	return a
}

func (a *agentServer) set(line string) {
	a.mu.Lock()
	a.line = line
	a.mu.Unlock()
}

// An agent check's reply is applied: "drain" takes the server out of rotation in every worker,
// "ready 50%" brings it back at half its weight; both show in the table.
func TestAgentCheckAppliesStateAndWeight(t *testing.T) {
	app := startBackends(t, 1)[0]
	agent := startAgent(t, "up 100%")
	p := startProxyRaw(t, 2, fmt.Sprintf(`workers = 2
pid_file = "hcproxy.pid"
table = "hcproxy.table"
[[server]]
listen = "{{listen}}"
upstream = "app"
[upstream.app]
servers = [%q]
[upstream.app.check]
type = "agent"
port = %s
interval = "200ms"
timeout = "150ms"
`, app.Addr, portOf(agent.ln.Addr().String())))
	p.eventually("checked up", 10*time.Second, func(d status.Document) bool {
		return len(d.Backends) == 1 && d.Backends[0].Checks > 0 && d.Backends[0].Available
	})
	get := func() int {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + p.listen + "/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != 200 {
		t.Fatalf("status %d with the agent up", code)
	}
	agent.set("drain")
	d := p.eventually("agent drain applied", 10*time.Second, func(d status.Document) bool {
		return d.Backends[0].AgentAdmin == "drain"
	})
	if b := d.Backends[0]; b.Available || b.State != "up" || b.Admin != "ready" {
		t.Fatalf("drained by its agent: %+v", b)
	}
	for i := 0; i < 10; i++ {
		if code := get(); code != 503 {
			t.Fatalf("request %d to an upstream whose only server its agent drained: %d, want 503", i, code)
		}
	}
	agent.set("ready 50%")
	d = p.eventually("agent ready at 50%", 10*time.Second, func(d status.Document) bool {
		return d.Backends[0].AgentAdmin == "ready" && d.Backends[0].AgentWeightPct == 50
	})
	if !d.Backends[0].Available || get() != 200 {
		t.Fatalf("back from its agent's drain: %+v", d.Backends[0])
	}
}
