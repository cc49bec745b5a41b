package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"hcproxy/shm"
	"hcproxy/status"
)

const (
	tailPoll  = 150 * time.Millisecond // how often a following tail reads the ring
	tailBatch = 256                    // events read from the ring at a time
)

// tail prints the newest events of the table's event ring and then follows it, like tail -f. It
// opens the table read-only and never blocks a writer: it polls the ring's head.
type tail struct {
	env      *env
	fs       *flag.FlagSet
	n        int
	since    time.Duration
	noFollow bool
	json     bool
}

func newTail(e *env) command {
	t := &tail{env: e, fs: flag.NewFlagSet("tail", flag.ContinueOnError)}
	t.fs.IntVar(&t.n, "n", 10, "start with the last `N` events")
	t.fs.DurationVar(&t.since, "since", 0, "start with the events of the last `DURATION` (instead of -n)")
	t.fs.BoolVar(&t.noFollow, "no-follow", false, "print the events and exit instead of following")
	t.fs.BoolVar(&t.json, "json", false, "print one JSON object per event")
	e.tableFlags(t.fs)
	return t
}

func (t *tail) Usage() string {
	return fmt.Sprintf(`Usage: hcctl [-c FILE | --table PATH] tail [-n N | --since DURATION] [--no-follow] [--json]

Tail prints the last events of the health table's event ring (every health transition, admin
change, change of check owner and passive ejection, from every worker), then follows the ring
and prints new events as they are appended, until interrupted (Ctrl-C or SIGTERM: exit 0). It
opens the table read-only. The ring keeps the last %d events.

Each line is:

  TIME KIND  UPSTREAM  ADDRESS  OLD -> NEW  [reason=REASON]  pid=PID

  2026-11-25T05:04:55.788Z health  app  127.0.0.1:9102  up -> down  reason=bad_status  pid=123

TIME is UTC. KIND is health (OLD and NEW are up, down or checking; REASON is the result that
caused it), passive (an ejection by the data plane), admin (ready, drain or maint; set by hcctl
set or the status page) or owner (OLD and NEW are the pids of the old and the new owner of the
check, 0 for none). PID is the process that appended the event.

When the ring overwrote events before tail read them (it fell more than %d events behind),
it says so: "hcctl: missed N events".

Flags:
  -n N              start with the last N events (default 10; 0 for only new ones)
  --since DURATION  start with the events of the last DURATION (such as 90s, 5m, 2h) instead
  --no-follow       print those events and exit
  --json            one JSON object per line, with the fields seq, time_unix_ms, kind, upstream,
                    address, old, new, reason, pid and extra (the status page's event stream
                    format); missed events are reported as {"missed":N}
  -c FILE, --table PATH
                    as before the command
`, shm.EventCap, shm.EventCap)
}

func (t *tail) Run(ctx context.Context, args []string) error {
	if err := parseFlags(t.fs, t, t.env.stdout, args); err != nil {
		return err
	}
	sinceSet, nSet := false, false
	t.fs.Visit(func(f *flag.Flag) {
		sinceSet = sinceSet || f.Name == "since"
		nSet = nSet || f.Name == "n"
	})
	switch {
	case sinceSet && nSet:
		return usageError("tail: give -n or --since, not both")
	case t.n < 0:
		return usageError(fmt.Sprintf("tail: -n %d: must not be negative", t.n))
	case sinceSet && t.since <= 0:
		return usageError(fmt.Sprintf("tail: --since %v: must be positive", t.since))
	}
	tab, _, err := t.env.openTable(true)
	if err != nil {
		return err
	}
	defer tab.Close()

	head := tab.EventHead()
	f := &follower{t: tab, out: eventWriter{w: t.env.stdout, json: t.json}}
	if sinceSet {
		// Read the whole ring; the ones older than the cutoff are skipped.
		f.from = head - min(head, shm.EventCap)
		f.cutoffMs, f.cutoffBefore = time.Now().Add(-t.since).UnixMilli(), head
	} else {
		f.from = head - min(head, uint64(min(t.n, shm.EventCap)))
	}
	if t.noFollow {
		return f.catchUp(head)
	}
	return f.follow(ctx, tailPoll)
}

// follower reads the event ring from a cursor and writes what it reads.
type follower struct {
	t    *shm.Table
	out  eventWriter
	from uint64 // the sequence number of the next event to read
	// Events older than cutoffMs with a sequence number below cutoffBefore are skipped (--since:
	// the backlog is filtered by time, new events never are).
	cutoffMs     int64
	cutoffBefore uint64
}

// read writes the events from the cursor on that are complete, and what was missed, and reports
// whether it got anything.
func (f *follower) read() (bool, error) {
	evs, next, missed := f.t.ReadEvents(f.from, tailBatch)
	f.from = next
	if missed > 0 {
		if err := f.out.missed(missed); err != nil {
			return false, err
		}
	}
	for _, ev := range evs {
		if ev.Seq < f.cutoffBefore && ev.TimeMs < f.cutoffMs {
			continue
		}
		if err := f.out.event(ev); err != nil {
			return false, err
		}
	}
	return len(evs) > 0 || missed > 0, nil
}

// catchUp writes events until the cursor reaches head, or an event still being written stops it.
func (f *follower) catchUp(head uint64) error {
	for f.from < head {
		got, err := f.read()
		if err != nil {
			return err
		}
		if !got {
			return nil // an entry still being written: do not wait for it
		}
	}
	return nil
}

// follow writes events as they come, polling the ring every poll, until ctx is done.
func (f *follower) follow(ctx context.Context, poll time.Duration) error {
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		for {
			got, err := f.read()
			if err != nil {
				return err
			}
			if !got {
				break
			}
		}
		select {
		case <-ctx.Done():
			return nil // interrupted: the normal end of following
		case <-tick.C:
		}
	}
}

// eventWriter writes events as text lines or JSON lines.
type eventWriter struct {
	w    io.Writer
	json bool
}

func (e eventWriter) event(ev shm.Event) error {
	we := status.NewEvent(ev)
	if e.json {
		return json.NewEncoder(e.w).Encode(we)
	}
	_, err := io.WriteString(e.w, eventLine(we)+"\n")
	return err
}

func (e eventWriter) missed(n uint64) error {
	var err error
	if e.json {
		_, err = fmt.Fprintf(e.w, "{\"missed\":%d}\n", n)
	} else {
		_, err = fmt.Fprintf(e.w, "hcctl: missed %d events\n", n)
	}
	return err
}

// eventLine formats an event for the terminal:
//
//	2026-11-25T05:04:55.788Z health  app  127.0.0.1:9102  up -> down  reason=bad_status  pid=123
//
// Strings from the table are cleaned of control characters and spaces; an empty upstream is "-".
func eventLine(e status.Event) string {
	var b strings.Builder
	b.WriteString(time.UnixMilli(e.TimeUnixMs).UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	b.WriteString(" " + e.Kind)
	for _, s := range []string{orDash(cell(e.Upstream)), orDash(cell(e.Address))} {
		b.WriteString("  " + s)
	}
	b.WriteString("  " + cell(e.Old) + " -> " + cell(e.New))
	if e.Reason != "" {
		b.WriteString("  reason=" + e.Reason)
	}
	if e.Source != "" {
		b.WriteString("  (" + strings.Map(func(r rune) rune {
			if r < ' ' || r == 0x7f {
				return '?'
			}
			return r
		}, e.Source) + ")")
	}
	fmt.Fprintf(&b, "  pid=%d", e.Pid)
	return b.String()
}
