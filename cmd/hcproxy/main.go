// Command hcproxy is a prefork HTTP reverse proxy with active health checks shared between its
// workers. It takes nginx's command line: -c FILE, -t, -s reload|quit|stop|reopen, -v.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"hcproxy/config"
	"hcproxy/internal/handoff"
	"hcproxy/internal/pidfile"
	"hcproxy/master"
	"hcproxy/version"
	"hcproxy/worker"
)

func main() {
	if os.Getenv(handoff.EnvRole) == "worker" {
		os.Exit(worker.Main())
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

const usage = `usage: hcproxy [-c FILE] [-t] [-s reload|quit|stop|reopen] [-v]

  -c FILE   config file (default /etc/hcproxy/hcproxy.toml)
  -t        test the config and exit: 0 valid, 1 invalid with the reason (the
            directories of error_log, access_log and pid_file must exist and
            be writable)
  -s SIGNAL send SIGNAL to the running master (found through its pid file):
            reload (HUP), quit (QUIT, graceful), stop (TERM, fast), reopen (USR1, logs)
  -v        print the version and exit

Without -t, -s or -v, hcproxy runs the master in the foreground.
Exit codes: 0 ok, 1 failure, 2 usage error.
`

// run parses the command line and does what it asks; the result is the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	err := dispatch(args, stdout)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "hcproxy: %v\n%s", err, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "hcproxy: %v\n", err)
		return 1
	}
}

func dispatch(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("hcproxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	file := fs.String("c", "/etc/hcproxy/hcproxy.toml", "config file")
	test := fs.Bool("t", false, "test the config")
	sig := fs.String("s", "", "signal the master")
	ver := fs.Bool("v", false, "print version")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return nil
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	switch {
	case *ver:
		fmt.Fprintf(stdout, "hcproxy version %s\n", version.Version)
		return nil
	case *test:
		cfg, err := config.Load(*file)
		if err != nil {
			return err
		}
		if err := config.CheckPaths(cfg); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "hcproxy: the configuration file %s syntax is ok\nhcproxy: configuration file %s test is successful (%d upstreams, %d listeners)\n",
			cfg.Path, cfg.Path, len(cfg.Upstreams), len(cfg.Servers))
		return nil
	case *sig != "":
		if _, ok := pidfile.Signals[*sig]; !ok {
			return usageError{fmt.Sprintf("-s %q: want reload, quit, stop or reopen", *sig)}
		}
		cfg, err := config.Load(*file)
		if err != nil {
			return err
		}
		return pidfile.Signal(cfg.PidFile, *sig)
	}
	return master.Run(*file)
}
