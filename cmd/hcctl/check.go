package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"hcproxy/checks"
	"hcproxy/config"
	"hcproxy/probe"
)

// check runs one health check of a configured server now, with the probe the workers use, and
// prints the whole result. It does not touch the table: the result is not recorded.
type check struct {
	env *env
	fs  *flag.FlagSet
}

func newCheck(e *env) command {
	c := &check{env: e, fs: flag.NewFlagSet("check", flag.ContinueOnError)}
	e.tableFlags(c.fs)
	return c
}

func (c *check) Usage() string {
	return `Usage: hcctl -c FILE check UPSTREAM ADDRESS

Check runs one health check of server ADDRESS (host:port, as in the config) of upstream
UPSTREAM now, from this process, with the probe the config describes ([upstream.NAME.check]:
type, port, uri, host, send, expect_status, expect_body, max_response, timeout), and prints the
full result, for debugging a backend:

  probed   the address connected to (the check's port, when it has one)
  result   ok, or the reason it failed: connect_refused, connect_timeout, connect_error,
           timeout, early_close, bad_response, bad_status, body_mismatch, too_large,
           send_error, internal
  detail   what exactly went wrong
  status   the HTTP status received (- if none)
  rtt      from the start of the connect to the verdict
  bytes    bytes read from the server

The result is not recorded in the health table and does not change the server's state.
Exit status: 0 when the check passed, 1 when it failed (or the server is not configured).

Flags:
  -c FILE   the hcproxy config (required)
`
}

func (c *check) Run(ctx context.Context, args []string) error {
	pos, err := parseArgs(c.fs, c, c.env.stdout, args, "UPSTREAM", "ADDRESS")
	if err != nil {
		return err
	}
	cfg, err := c.env.loadConfig("check")
	if err != nil {
		return err
	}
	name, addr := pos[0], pos[1]
	u, ok := cfg.Upstreams[name]
	if !ok {
		return fmt.Errorf("no upstream %s in %s (have %s)", clean(name), cfg.Path, strings.Join(cfg.UpstreamNames(), ", "))
	}
	if !hasServer(u, addr) {
		return fmt.Errorf("no server %s in upstream %s", clean(addr), clean(name))
	}
	chk := &u.Check
	target, err := checks.Addr(addr, chk)
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, addr, err)
	}
	p, err := checks.NewProber(chk)
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, addr, err)
	}
	pctx, cancel := context.WithTimeout(ctx, chk.Timeout)
	res := p.Probe(pctx, target)
	cancel()
	if err := writeResult(c.env.stdout, name, addr, target, chk, res); err != nil {
		return err
	}
	if !res.OK() {
		return fmt.Errorf("%s %s: check failed: %s", clean(name), clean(addr), res.Reason)
	}
	return nil
}

func hasServer(u *config.Upstream, addr string) bool {
	for _, s := range u.Servers {
		if s.Address == addr {
			return true
		}
	}
	return false
}

func writeResult(w io.Writer, upstream, addr, target string, chk *config.Check, r probe.Result) error {
	status, detail := "-", "-"
	if r.Status != 0 {
		status = fmt.Sprint(r.Status)
	}
	if r.Detail != "" {
		detail = clean(r.Detail)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "upstream\t%s\n", clean(upstream))
	fmt.Fprintf(tw, "server\t%s\n", clean(addr))
	fmt.Fprintf(tw, "check\t%s\n", describeCheck(chk))
	fmt.Fprintf(tw, "probed\t%s\n", clean(target))
	fmt.Fprintf(tw, "result\t%s\n", r.Reason)
	fmt.Fprintf(tw, "detail\t%s\n", detail)
	fmt.Fprintf(tw, "status\t%s\n", status)
	fmt.Fprintf(tw, "rtt\t%s\n", r.RTT.Round(time.Microsecond))
	fmt.Fprintf(tw, "bytes\t%d\n", r.Bytes)
	return tw.Flush()
}

// describeCheck summarises what the probe does, in one line.
func describeCheck(c *config.Check) string {
	var b strings.Builder
	b.WriteString(c.Type)
	if c.Type == "http" {
		switch {
		case c.Send != "":
			fmt.Fprintf(&b, " (raw request, %d bytes)", len(c.Send))
		default:
			b.WriteString(" GET " + clean(c.URI))
			if c.Host != "" {
				b.WriteString(" Host: " + clean(c.Host))
			}
		}
		if len(c.ExpectStatus) > 0 {
			b.WriteString(", expect " + strings.Join(c.ExpectStatus, ","))
		}
		if c.ExpectBody != "" {
			fmt.Fprintf(&b, ", body contains %q", c.ExpectBody)
		}
		if c.ExpectBodyRegex != "" {
			fmt.Fprintf(&b, ", body matches %q", c.ExpectBodyRegex)
		}
	}
	fmt.Fprintf(&b, ", timeout %s", c.Timeout)
	return b.String()
}
