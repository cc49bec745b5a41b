// Command checkbackend is the backend of `make bench-checks` (scripts/bench-checks.sh): many HTTP
// servers on loopback addresses in one process, each answering GET /health with 200 (HTTP/1.1,
// keep-alive honoured), recording the arrival time of every probe, so that a health checker's
// schedule can be measured from the servers' side.
//
// For each server it keeps a constant-size record (probes in the window, first and last arrival,
// sum and sum of squares of the gaps between probes); for the process, a histogram of the gaps
// (100 µs buckets up to 20 s). A window starts at POST /reset on the control port; GET /stats
// returns it, and `checkbackend summary` merges the windows of several processes and reads them
// against the schedule: probes per second against servers/interval, and the lag of each probe,
// |gap - interval|, at p50 and p99.
//
// Usage:
//
//	checkbackend serve -first I -n N [-port 23000] [-ports-per-ip 100] [-ctl 127.0.0.1:0] [-ctl-file FILE] [-interval 1s]
//	checkbackend addrs -first I -n N [-port 23000] [-ports-per-ip 100]
//	checkbackend reset CTL...
//	checkbackend summary [-interval 1s] CTL...
//
// serve listens on servers I..I+N-1 of the layout (server i on 127.0.(1+k/250).(1+k%250), k =
// i/ports-per-ip, port = port + i%ports-per-ip), writes its control address to -ctl-file once
// every listener is bound, and runs until SIGTERM or SIGINT; on SIGUSR1 and at exit it prints
// its own summary line. addrs prints the same layout's addresses, one a line. reset starts a new
// window at each control address; summary prints one line of key=value fields for them all.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// errUsage is a usage error: exit code 2.
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "checkbackend:", err)
		os.Exit(1)
	}
}

const usage = `usage: checkbackend serve -first I -n N [-port P] [-ports-per-ip K] [-ctl ADDR] [-ctl-file FILE] [-interval D]
       checkbackend addrs -first I -n N [-port P] [-ports-per-ip K]
       checkbackend reset CTL...
       checkbackend summary [-interval D] CTL...`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, usage)
		return errUsage
	}
	fs := flag.NewFlagSet("checkbackend "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintln(stderr, usage) }
	var l Layout
	first, n := 0, 0
	layoutFlags := func() {
		fs.IntVar(&first, "first", 0, "index of the first server")
		fs.IntVar(&n, "n", 0, "servers")
		fs.IntVar(&l.Port, "port", 23000, "port of each address's first server")
		fs.IntVar(&l.PortsPerIP, "ports-per-ip", 100, "servers per address")
	}
	interval := time.Second
	intervalFlag := func() { fs.DurationVar(&interval, "interval", time.Second, "the checks' interval, for the summary") }
	parse := func() error {
		if err := fs.Parse(args[1:]); err != nil {
			return errUsage
		}
		return nil
	}
	switch args[0] {
	case "serve":
		layoutFlags()
		intervalFlag()
		ctl := fs.String("ctl", "127.0.0.1:0", "control listener")
		ctlFile := fs.String("ctl-file", "", "write the control address here once ready")
		if err := parse(); err != nil {
			return err
		}
		return serve(ctx, l, first, n, *ctl, *ctlFile, interval, stdout, stderr)
	case "addrs":
		layoutFlags()
		if err := parse(); err != nil {
			return err
		}
		if err := l.validate(first, n); err != nil {
			return err
		}
		var b strings.Builder
		for i := first; i < first+n; i++ {
			fmt.Fprintln(&b, l.Addr(i))
		}
		_, err := io.WriteString(stdout, b.String())
		return err
	case "reset", "summary":
		if args[0] == "summary" {
			intervalFlag()
		}
		if err := parse(); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			fmt.Fprintln(stderr, usage)
			return errUsage
		}
		if args[0] == "reset" {
			return resetAll(ctx, fs.Args())
		}
		s, err := summarizeAll(ctx, fs.Args(), interval)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, s)
		return nil
	default:
		fmt.Fprintln(stderr, usage)
		return errUsage
	}
}

func serve(ctx context.Context, l Layout, first, n int, ctl, ctlFile string, interval time.Duration, stdout, stderr io.Writer) error {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	defer signal.Stop(usr1)
	b, err := startBackend(l, first, n, ctl, stderr)
	if err != nil {
		return err
	}
	defer b.Close()
	if ctlFile != "" {
		if err := writeFileAtomic(ctlFile, []byte(b.ctlAddr+"\n")); err != nil {
			return fmt.Errorf("ctl-file: %w", err)
		}
	}
	serveUntil(ctx, b, usr1, interval, stdout)
	return nil
}

// controlClient bounds every call to a control port.
var controlClient = &http.Client{Timeout: 10 * time.Second}

func resetAll(ctx context.Context, ctls []string) error {
	for _, c := range ctls {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+c+"/reset", nil)
		if err != nil {
			return fmt.Errorf("reset %s: %w", c, err)
		}
		resp, err := controlClient.Do(req)
		if err != nil {
			return fmt.Errorf("reset %s: %w", c, err)
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("reset %s: %s", c, resp.Status)
		}
	}
	return nil
}

// maxStats bounds one /stats answer (a histogram of 200,000 buckets at most, and the per-server
// counts).
const maxStats = 64 << 20

func summarizeAll(ctx context.Context, ctls []string, interval time.Duration) (Summary, error) {
	var all Stats
	for _, c := range ctls {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+c+"/stats", nil)
		if err != nil {
			return Summary{}, fmt.Errorf("stats %s: %w", c, err)
		}
		resp, err := controlClient.Do(req)
		if err != nil {
			return Summary{}, fmt.Errorf("stats %s: %w", c, err)
		}
		var st Stats
		err = json.NewDecoder(io.LimitReader(resp.Body, maxStats)).Decode(&st)
		resp.Body.Close()
		if err != nil {
			return Summary{}, fmt.Errorf("stats %s: %w", c, err)
		}
		if all, err = Merge(all, st); err != nil {
			return Summary{}, err
		}
	}
	return Summarize(all, interval)
}
