package probe

import (
	"net"
	"testing"
	"time"
)

func TestAgent(t *testing.T) {
	tests := []struct {
		name       string
		handler    func(net.Conn, <-chan struct{})
		opt        AgentOptions
		want       Reason
		wantDetail string
		wantReply  string // AgentReply.String()
	}{
		{"up with weight", replyWith("up 75%\n"), AgentOptions{}, OK, "", "up 75%"},
		{"drain", replyWith("drain\n"), AgentOptions{}, OK, "", "drain"},
		{"maint, no newline before close", func(c net.Conn, _ <-chan struct{}) { c.Write([]byte("maint")) }, AgentOptions{}, OK, "", "maint"},
		{"ready, weight, maxconn, commas", replyWith("ready,50%,maxconn:30\r\n"), AgentOptions{}, OK, "", "ready 50% maxconn:30"},
		{"down with reason", replyWith("down#disk full\n"), AgentOptions{}, AgentDown, "down: disk full", "down#disk full"},
		{"stopped", replyWith("stopped\n"), AgentOptions{}, AgentDown, "stopped", "stopped"},
		{"agent-send", func(c net.Conn, _ <-chan struct{}) {
			b := make([]byte, 64)
			n, _ := c.Read(b)
			if string(b[:n]) == "status\n" {
				c.Write([]byte("up\n"))
			}
		}, AgentOptions{Send: "status\n"}, OK, "", "up"},
		{"garbage", replyWith("HTTP/1.1 200 OK\r\n"), AgentOptions{}, BadResponse, "unknown agent word", ""},
		{"empty line", replyWith("\n"), AgentOptions{}, BadResponse, "empty agent line", ""},
		{"bad weight", replyWith("up 900%\n"), AgentOptions{}, BadResponse, "bad agent weight", ""},
		{"closes without a line", func(net.Conn, <-chan struct{}) {}, AgentOptions{}, EarlyClose, "agent line", ""},
		{"stall", stall, AgentOptions{}, Timeout, "agent line", ""},
		{"endless line", func(c net.Conn, done <-chan struct{}) { writeForever(c, done, "up up up ") }, AgentOptions{MaxResponse: 100}, TooLarge, "more than 100", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := probeCtx(t, NewAgent(tt.opt), serveConns(t, tt.handler), 300*time.Millisecond)
			checkResult(t, got, tt.want, 0, tt.wantDetail)
			if tt.wantReply == "" {
				if got.Agent != nil {
					t.Errorf("agent reply %v on failure", got.Agent)
				}
				return
			}
			if got.Agent == nil || got.Agent.String() != tt.wantReply {
				t.Errorf("agent reply %v, want %q", got.Agent, tt.wantReply)
			}
		})
	}
}
