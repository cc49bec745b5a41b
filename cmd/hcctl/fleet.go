package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"hcproxy/status"
)

// fleetCmd prints this host's view of the fleet: the fleet status file the master writes beside
// the table, with the local verdicts read fresh from the table.
type fleetCmd struct {
	env  *env
	fs   *flag.FlagSet
	json bool
}

func newFleet(e *env) command {
	c := &fleetCmd{env: e, fs: flag.NewFlagSet("fleet", flag.ContinueOnError)}
	c.fs.BoolVar(&c.json, "json", false, "print JSON")
	e.tableFlags(c.fs)
	return c
}

func (c *fleetCmd) Usage() string {
	return `Usage: hcctl [-c FILE | --table PATH] fleet [--json]

Fleet prints this host's place in the fleet of proxies that share their checks through etcd
(a [fleet] in the config; docs/fleet.md): its mode (fleet: it checks the servers it holds
claims on and takes the fleet's vote for the others; fallback: etcd is out of reach, it checks
every server itself), the live members, the etcd figures, and per server who checks it, their
verdicts, the vote, this host's own verdict, and where the two disagree. It reads the file the
master writes beside the table (TABLE.fleet, refreshed within half a second of a change) and
the table itself (read-only) for the local verdicts.

Columns: SERVER UPSTREAM CHECKERS (hosts holding a claim; * marks this host) UP and DOWN (the
checkers' verdicts) FLEET (the vote: down when more than half the checkers say down, unknown
before any verdict) LOCAL (this host's state of the server; for a server another host checks,
the fleet's vote it routes on) NOTE (disagree: this host checks it and its own verdict is not
the vote; it routes on its own).

Exit status 1 when there is no fleet status (no [fleet], or the master is not running), 3 when
the table's master is not running (the file is a leftover).

Flags:
  --json    print the fleet status file, with "disagree" set per server
  -c FILE, --table PATH
            as before the command
`
}

func (c *fleetCmd) Run(_ context.Context, args []string) error {
	if err := parseFlags(c.fs, c, c.env.stdout, args); err != nil {
		return err
	}
	t, path, err := c.env.openTable(true)
	if err != nil {
		return err
	}
	defer t.Close()
	st, err := status.ReadFleetStatus(status.FleetStatusPath(path))
	if err != nil {
		return err
	}
	doc := status.Build(t.Snapshot(), time.Now())
	local := map[int]status.Backend{}
	for _, b := range doc.Backends {
		local[b.Slot] = b
	}
	for i := range st.Servers {
		s := &st.Servers[i]
		if b, ok := local[s.Slot]; ok && b.Address == s.Address {
			s.Local = b.State
			s.CheckedHere = b.Source == "local"
		}
		s.Disagree = s.CheckedHere && st.Mode == "fleet" && (s.Fleet == "up" || s.Fleet == "down") &&
			(s.Local == "up" || s.Local == "down") && s.Local != s.Fleet
	}
	if c.json {
		enc := json.NewEncoder(c.env.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return err
		}
	} else if err := writeFleet(c.env.stdout, st, time.Now()); err != nil {
		return err
	}
	if !doc.MasterRunning || doc.MasterPid != st.MasterPid {
		return staleError("master not running: the fleet status is a leftover of pid " + fmt.Sprint(st.MasterPid))
	}
	return nil
}

func writeFleet(w io.Writer, st status.FleetStatus, now time.Time) error {
	members := "none seen"
	if len(st.Members) > 0 {
		members = strings.Join(cleanAll(st.Members), " ")
	}
	fmt.Fprintf(w, "fleet host %s (master pid %d): mode %s; members (%d): %s\n", cell(st.Host), st.MasterPid, cell(st.Mode), len(st.Members), members)
	fmt.Fprintf(w, "checkers %d, lease %s, etcd %s; updated %s ago\n", st.Checkers, time.Duration(st.LeaseTTLMs)*time.Millisecond,
		strings.Join(cleanAll(st.Endpoints), ","), status.AgeMs(now, st.UpdatedUnixMs))
	fmt.Fprintf(w, "etcd: %d round trips, %d writes, %d claims held, %d sessions, %d fallbacks\n\n",
		st.Stats.RoundTrips, st.Stats.Writes, st.Stats.Claims, st.Stats.Sessions, st.Stats.Fallbacks)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tUPSTREAM\tCHECKERS\tUP\tDOWN\tFLEET\tLOCAL\tNOTE")
	disagree := 0
	for _, s := range st.Servers {
		var checkers []string
		for _, h := range s.Checkers {
			if h == st.Host {
				h += "*"
			}
			checkers = append(checkers, h)
		}
		note := ""
		switch {
		case s.Disagree:
			note = "disagree"
			disagree++
		case s.CheckedHere && st.Mode != "fleet":
			note = "checked here (fallback)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(cell(s.Address)), orDash(cell(s.Upstream)),
			orDash(strings.Join(cleanAll(checkers), ",")), orDash(strings.Join(cleanAll(s.Up), ",")),
			orDash(strings.Join(cleanAll(s.Down), ",")), orDash(cell(s.Fleet)), cell(s.Local), note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if disagree > 0 {
		_, err := fmt.Fprintf(w, "\n%d server(s) where this host's verdict is not the fleet's\n", disagree)
		return err
	}
	return nil
}

func cleanAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = cell(s)
	}
	return out
}
