package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// AgentReply is what one line of HAProxy's agent-check protocol asks for.
type AgentReply struct {
	// Weight is the requested weight in percent of the configured one
	// (0..256), or -1 when the line has none.
	Weight int
	// Admin is "ready", "drain" or "maint", or "" when the line has none.
	Admin string
	// State is "up", "down", "fail" or "stopped", or "" when the line has
	// none. Down, fail and stopped fail the check with AgentDown.
	State string
	// Why is the text after "#" of a down, fail or stopped state.
	Why string
	// MaxConn is the maxconn:N value, or -1 when the line has none.
	MaxConn int
}

// AgentOptions configures an agent check.
type AgentOptions struct {
	// Send, if not "", is written after the connect (HAProxy's agent-send).
	Send string
	// MaxResponse bounds the reply line; <= 0 means DefaultMaxResponse.
	MaxResponse int64
}

// agentProber is the Prober NewAgent returns.
type agentProber struct{ opt AgentOptions }

var _ Prober = (*agentProber)(nil)

// NewAgent returns a Prober that reads one agent line (HAProxy's
// agent-check): "up 75%", "drain", "maint", "down#disk full". The check
// passes unless the line says down, fail or stopped; the parsed reply is in
// Result.Agent for the caller to apply weight and admin state.
func NewAgent(o AgentOptions) Prober { return &agentProber{opt: o} }

// Probe implements Prober.
func (p *agentProber) Probe(ctx context.Context, addr string) Result {
	return sessionProbe(ctx, addr, p.opt.MaxResponse, p.exchange)
}

// exchange sends the agent request, if any, and judges the agent's line.
func (p *agentProber) exchange(s *session) Result {
	if p.opt.Send != "" {
		if err := s.write([]byte(p.opt.Send)); err != nil {
			return sendFailure(err, "the agent request")
		}
	}
	line, err := s.line()
	if err != nil {
		// The agent may close right after its line without a newline.
		if !errors.Is(err, io.EOF) || len(line) == 0 {
			return readFailure(err, "the agent line", s.read(), s.max)
		}
	}
	res := Result{Bytes: s.read()}
	reply, err := ParseAgentLine(line)
	if err != nil {
		res.Reason, res.Detail = BadResponse, err.Error()
		return res
	}
	res.Agent = &reply
	switch reply.State {
	case "down", "fail", "stopped":
		res.Reason, res.Detail = AgentDown, reply.State
		if reply.Why != "" {
			res.Detail += ": " + reply.Why
		}
	}
	return res
}

// ParseAgentLine parses one agent line (without its newline): words
// separated by spaces, tabs or commas, each a weight ("75%"), an admin state
// (ready, drain, maint), a health state (up, down, fail, stopped; the last
// three may carry "#reason", which ends the line) or "maxconn:N". An empty
// line or an unknown word is an error wrapping ErrMalformed.
func ParseAgentLine(line []byte) (AgentReply, error) {
	r := AgentReply{Weight: -1, MaxConn: -1}
	if i := bytes.IndexByte(line, '#'); i >= 0 {
		r.Why = truncate(string(printableOnly(bytes.TrimSpace(line[i+1:]))), 80)
		line = line[:i]
	}
	words := bytes.FieldsFunc(line, func(c rune) bool { return c == ' ' || c == '\t' || c == ',' || c == '\r' })
	if len(words) == 0 {
		return AgentReply{}, protoError("empty agent line")
	}
	for _, w := range words {
		lw := string(bytes.ToLower(w))
		switch {
		case lw == "ready" || lw == "drain" || lw == "maint":
			r.Admin = lw
		case lw == "up" || lw == "down" || lw == "fail" || lw == "stopped":
			r.State = lw
		case len(lw) > 1 && lw[len(lw)-1] == '%':
			n, err := strconv.Atoi(lw[:len(lw)-1])
			if err != nil || n < 0 || n > 256 {
				return AgentReply{}, protoError("bad agent weight %q", clip(w, 20))
			}
			r.Weight = n
		case len(lw) > 8 && lw[:8] == "maxconn:":
			n, err := strconv.Atoi(lw[8:])
			if err != nil || n < 0 {
				return AgentReply{}, protoError("bad agent maxconn %q", clip(w, 20))
			}
			r.MaxConn = n
		default:
			return AgentReply{}, protoError("unknown agent word %q", clip(printableOnly(w), 20))
		}
	}
	if r.Why != "" && r.State != "down" && r.State != "fail" && r.State != "stopped" {
		r.Why = "" // a reason only goes with a failing state
	}
	return r, nil
}

// printableOnly replaces bytes outside printable ASCII with '?', for details.
func printableOnly(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if c < ' ' || c >= 0x7f {
			c = '?'
		}
		out[i] = c
	}
	return out
}

// String formats r as an agent line, for logs and the status page.
func (r AgentReply) String() string {
	var b []byte
	add := func(s string) {
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, s...)
	}
	if r.State != "" {
		add(r.State)
	}
	if r.Admin != "" {
		add(r.Admin)
	}
	if r.Weight >= 0 {
		add(fmt.Sprintf("%d%%", r.Weight))
	}
	if r.MaxConn >= 0 {
		add(fmt.Sprintf("maxconn:%d", r.MaxConn))
	}
	if r.Why != "" {
		b = append(b, '#')
		b = append(b, r.Why...)
	}
	return string(b)
}
