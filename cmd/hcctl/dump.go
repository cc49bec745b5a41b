package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"hcproxy/shm"
	"hcproxy/status"
)

// dump prints the table: one row per server, then the workers. It opens the table read-only.
type dump struct {
	env      *env
	fs       *flag.FlagSet
	json     bool
	upstream string
	state    string
}

func newDump(e *env) command {
	d := &dump{env: e, fs: flag.NewFlagSet("dump", flag.ContinueOnError)}
	d.fs.BoolVar(&d.json, "json", false, "print the status document as JSON")
	d.fs.StringVar(&d.upstream, "upstream", "", "only servers of upstream `NAME`")
	d.fs.StringVar(&d.state, "state", "", "only servers in `STATE`: up, down or checking")
	e.tableFlags(d.fs)
	return d
}

func (d *dump) Usage() string {
	return `Usage: hcctl [-c FILE | --table PATH] dump [--json] [--upstream NAME] [--state up|down|checking]

Dump prints every server in the health table, with its health, admin state, owning worker,
check counters and last result, then the worker table. It opens the table read-only, so it
works while the proxy runs and after it stopped.

A table whose master is not running (stopped, killed, or its pid now names another process:
the table records the master's process start time) is still printed, as it was when last
written, after the line "master not running; table last written at T" (also on stderr; with
--json the document's master_running is false), and dump exits with status 3.

Columns: UPSTREAM ADDRESS STATE ADMIN OWNER (pid of the owning worker, - if none)
CONSEC (results in a row equal to the last) CHECKS FAILS LAST (last result, with the HTTP
status) RTT LAST-CHECK (time since the last check) SINCE (time since the last transition).

Flags:
  --json            print the status page's JSON document instead (same field names)
  --upstream NAME   only servers of upstream NAME
  --state STATE     only servers whose health is STATE: up, down or checking
  -c FILE, --table PATH
                    as before the command
`
}

func (d *dump) Run(_ context.Context, args []string) error {
	if err := parseFlags(d.fs, d, d.env.stdout, args); err != nil {
		return err
	}
	if d.state != "" {
		if _, ok := shm.ParseHealth(d.state); !ok {
			return usageError(fmt.Sprintf("dump: --state %q: want up, down or checking", d.state))
		}
	}
	t, path, err := d.env.openTable(true)
	if err != nil {
		return err
	}
	defer t.Close()
	now := time.Now()
	doc := status.Build(t.Snapshot(), now)
	doc.Backends = slices.DeleteFunc(doc.Backends, func(b status.Backend) bool { return !d.keep(b) })
	if d.json {
		enc := json.NewEncoder(d.env.stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(doc)
	} else {
		if !doc.MasterRunning {
			fmt.Fprintf(d.env.stdout, "%s\n", status.StaleLine(doc))
		}
		err = writeText(d.env.stdout, path, doc, now)
	}
	if err == nil && !doc.MasterRunning {
		return staleError(status.StaleLine(doc))
	}
	return err
}

// keep reports whether b passes the --upstream and --state filters.
func (d *dump) keep(b status.Backend) bool {
	if d.state != "" && b.State != d.state {
		return false
	}
	if d.upstream != "" && !slices.Contains(strings.Split(b.Upstream, ","), d.upstream) {
		return false
	}
	return true
}

func writeText(w io.Writer, path string, doc status.Document, now time.Time) error {
	fmt.Fprintf(w, "table %s: generation %d, master pid %d, %d of %d slots shown\n\n",
		clean(path), doc.Generation, doc.MasterPid, len(doc.Backends), doc.Capacity)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "UPSTREAM\tADDRESS\tSTATE\tADMIN\tOWNER\tCONSEC\tCHECKS\tFAILS\tLAST\tRTT\tLAST-CHECK\tSINCE")
	for _, b := range doc.Backends {
		owner, last, rtt := "-", "-", "-"
		if b.OwnerPid != 0 {
			owner = strconv.Itoa(b.OwnerPid)
		}
		if b.Checks > 0 {
			last, rtt = b.LastResult, status.RTT(b.LastRTTUs)
			if b.LastStatus != 0 {
				last += "(" + strconv.Itoa(b.LastStatus) + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s\t%s\n",
			orDash(cell(b.Upstream)), cell(b.Address), b.State, b.Admin, owner, b.Consecutive, b.Checks,
			b.Failures, last, rtt, status.AgeMs(now, b.LastCheckUnixMs), status.AgeMs(now, b.SinceUnixMs))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nworkers (%d):\n", len(doc.Workers))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tPID\tSERIAL\tGEN\tSTATE\tHEARTBEAT\tSTARTED\tOWNED")
	for _, wk := range doc.Workers {
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\t%s\t%s\t%d\n", wk.Index, wk.Pid, wk.Serial, wk.Generation, wk.State,
			status.AgeMs(now, wk.HeartbeatUnixMs), status.AgeMs(now, wk.StartedUnixMs), wk.ChecksOwned)
	}
	return tw.Flush()
}

// clean makes a string from the table safe for a terminal: control characters become '?'.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

// cell is clean for a column value: spaces, which would break the columns, become '?' too.
func cell(s string) string { return strings.ReplaceAll(clean(s), " ", "?") }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
