package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"hcproxy/status"
)

// workers prints the worker table. It opens the table read-only.
type workers struct {
	env  *env
	fs   *flag.FlagSet
	json bool
}

func newWorkers(e *env) command {
	w := &workers{env: e, fs: flag.NewFlagSet("workers", flag.ContinueOnError)}
	w.fs.BoolVar(&w.json, "json", false, "print JSON")
	e.tableFlags(w.fs)
	return w
}

func (w *workers) Usage() string {
	return `Usage: hcctl [-c FILE | --table PATH] workers [--json]

Workers prints the worker table of the health table: every worker process the master started
and has not yet reaped. It opens the table read-only.

Columns: INDEX (entry in the worker table) PID (0 until the worker registered) SERIAL (never
reused; with the pid it identifies the worker as a check owner) GEN (the config generation it
runs) STATE (starting, ready, draining or dead) OWNED (checks it owned at its last heartbeat)
REQUESTS (requests it proxied) HEARTBEAT (time since its last heartbeat) STARTED (time since it
was started, and when, in UTC).

Flags:
  --json    print {"generation", "master_pid", "generated_unix_ms", "workers": [...]}, with the
            field names of dump --json
  -c FILE, --table PATH
            as before the command
`
}

// workersDoc is the JSON form: the header of the status document and its workers.
type workersDoc struct {
	Generation      uint64          `json:"generation"`
	MasterPid       int             `json:"master_pid"`
	GeneratedUnixMs int64           `json:"generated_unix_ms"`
	Workers         []status.Worker `json:"workers"`
}

func (w *workers) Run(_ context.Context, args []string) error {
	if err := parseFlags(w.fs, w, w.env.stdout, args); err != nil {
		return err
	}
	t, path, err := w.env.openTable(true)
	if err != nil {
		return err
	}
	defer t.Close()
	now := time.Now()
	doc := status.Build(t.Snapshot(), now)
	wd := workersDoc{Generation: doc.Generation, MasterPid: doc.MasterPid, GeneratedUnixMs: doc.GeneratedUnixMs, Workers: doc.Workers}
	if w.json {
		enc := json.NewEncoder(w.env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(wd)
	}
	return writeWorkers(w.env.stdout, path, wd, now)
}

func writeWorkers(w io.Writer, path string, d workersDoc, now time.Time) error {
	fmt.Fprintf(w, "table %s: generation %d, master pid %d, workers: %d\n\n", clean(path), d.Generation, d.MasterPid, len(d.Workers))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INDEX\tPID\tSERIAL\tGEN\tSTATE\tOWNED\tREQUESTS\tHEARTBEAT\tSTARTED")
	for _, wk := range d.Workers {
		started := status.AgeMs(now, wk.StartedUnixMs)
		if wk.StartedUnixMs != 0 {
			started += " (" + time.UnixMilli(wk.StartedUnixMs).UTC().Format("2006-01-02T15:04:05Z") + ")"
		}
		fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\t%d\t%d\t%s\t%s\n", wk.Index, wk.Pid, wk.Serial, wk.Generation,
			cell(wk.State), wk.ChecksOwned, wk.Requests, status.AgeMs(now, wk.HeartbeatUnixMs), started)
	}
	return tw.Flush()
}
