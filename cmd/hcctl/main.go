// Command hcctl inspects and controls a running (or stopped) hcproxy through its health table.
//
//	hcctl [-c FILE | --table PATH] COMMAND [flags] [args]
//
// dump, tail and workers read the table file directly (read-only), so they answer while the
// workers are saturated and after the proxy stopped; set writes an admin state into it, which
// every worker's balancer honours at once. reload, stop and quit signal the master through the
// pid file the config names; check runs one probe from this process with the configured check.
// Each command is a small type with its own FlagSet and usage text (one file each).
//
// Exit status: 0 ok (check: the check passed), 1 failure (one line on stderr), 2 usage error,
// 3 dump printed a table whose master is not running ("master not running; table last written
// at T" on stderr and atop the text dump).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"hcproxy/config"
	"hcproxy/shm"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// command is one hcctl subcommand: its own FlagSet, usage text and action.
type command interface {
	// Usage returns the command's help text (printed for -h and after a usage error).
	Usage() string
	// Run parses args with the command's FlagSet and does the work.
	Run(ctx context.Context, args []string) error
}

// commands lists the subcommands in the order the usage text shows them.
var commands = []struct {
	name, synopsis string
	new            func(*env) command
}{
	{"dump", "print every server's health, and the workers, from the table", newDump},
	{"tail", "print the last events of the event ring, then follow it", newTail},
	{"workers", "print the worker table: pids, generations, states, load", newWorkers},
	{"fleet", "print the fleet: members, who checks what, votes, disagreements", newFleet},
	{"set", "set a server's admin state: drain, maint or ready", newSet},
	{"check", "run one health check of a server now and print the result", newCheck},
	{"reload", "tell the master to reload its config (SIGHUP)", newSignal("reload")},
	{"stop", "tell the master to stop at once (SIGTERM)", newSignal("stop")},
	{"quit", "tell the master to stop gracefully (SIGQUIT)", newSignal("quit")},
}

// env is what every command shares: output streams and the table location from -c or --table
// (given before or after the command name).
type env struct {
	stdout     io.Writer
	configPath string
	tablePath  string
}

// tableFlags registers -c and --table on fs.
func (e *env) tableFlags(fs *flag.FlagSet) {
	fs.StringVar(&e.configPath, "c", e.configPath, "hcproxy config `FILE`; its table setting names the table")
	fs.StringVar(&e.tablePath, "table", e.tablePath, "health table `PATH` (instead of -c)")
}

// resolveTable returns the table path from --table, or from the config that -c names.
func (e *env) resolveTable() (string, error) {
	switch {
	case e.configPath == "" && e.tablePath == "":
		return "", usageError("give -c FILE or --table PATH")
	case e.configPath != "" && e.tablePath != "":
		return "", usageError("give -c FILE or --table PATH, not both")
	case e.tablePath != "":
		return e.tablePath, nil
	}
	cfg, err := config.Load(e.configPath)
	if err != nil {
		return "", err
	}
	return cfg.Table, nil
}

// loadConfig loads the config that -c names; cmd is the command that needs it, for the error.
func (e *env) loadConfig(cmd string) (*config.Config, error) {
	if e.configPath == "" {
		return nil, usageError(cmd + ": needs -c FILE (the hcproxy config)")
	}
	return config.Load(e.configPath)
}

// openTable attaches the table named by -c or --table.
func (e *env) openTable(readOnly bool) (*shm.Table, string, error) {
	path, err := e.resolveTable()
	if err != nil {
		return nil, "", err
	}
	t, err := shm.Open(path, readOnly)
	if err != nil {
		return nil, "", err
	}
	return t, path, nil
}

// staleError says the command printed a table whose master is not running: exit status 3, so
// a script can tell a leftover table from a live one (and from a failure, 1).
type staleError string

func (e staleError) Error() string { return string(e) }

// usageError is a mistake on the command line: exit status 2.
type usageError string

func (e usageError) Error() string { return string(e) }

// run runs hcctl with args (without the program name) and returns the exit status: 0 ok, 1
// failure, 2 usage error. Help goes to stdout; errors, one line each, to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	err := dispatch(ctx, args, stdout)
	var ue usageError
	var se staleError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &se):
		fmt.Fprintf(stderr, "hcctl: %s\n", se)
		return 3
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "hcctl: %v\n(hcctl -h for help)\n", err)
		return 2
	}
	fmt.Fprintf(stderr, "hcctl: %s\n", oneLine(err.Error()))
	return 1
}

func dispatch(ctx context.Context, args []string, stdout io.Writer) error {
	e := &env{stdout: stdout}
	fs := flag.NewFlagSet("hcctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	e.tableFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, usage())
			return err
		}
		return usageError(err.Error())
	}
	if fs.NArg() == 0 {
		return usageError("no command given")
	}
	name := fs.Arg(0)
	for _, c := range commands {
		if c.name == name {
			return c.new(e).Run(ctx, fs.Args()[1:])
		}
	}
	if name == "help" {
		io.WriteString(stdout, usage())
		return nil
	}
	return usageError(fmt.Sprintf("unknown command %q", name))
}

// parseFlags parses a command's flags; -h prints its usage to stdout.
func parseFlags(fs *flag.FlagSet, c command, stdout io.Writer, args []string) error {
	if err := parseFlagsOnly(fs, c, stdout, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError(fmt.Sprintf("%s: unexpected argument %q", fs.Name(), fs.Arg(0)))
	}
	return nil
}

// parseArgs parses a command's flags, which may come before, between or after its positional
// arguments, and returns exactly len(names) positional arguments (names are for the error). After
// "--" everything is positional. -h prints its usage to stdout.
func parseArgs(fs *flag.FlagSet, c command, stdout io.Writer, args []string, names ...string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlagsOnly(fs, c, stdout, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	switch {
	case len(pos) < len(names):
		return nil, usageError(fmt.Sprintf("%s: missing %s", fs.Name(), strings.Join(names[len(pos):], " ")))
	case len(pos) > len(names):
		return nil, usageError(fmt.Sprintf("%s: unexpected argument %q", fs.Name(), pos[len(names)]))
	}
	return pos, nil
}

// parseFlagsOnly parses flags up to the first positional argument.
func parseFlagsOnly(fs *flag.FlagSet, c command, stdout io.Writer, args []string) error {
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			io.WriteString(stdout, c.Usage())
			return err
		}
		return usageError(fs.Name() + ": " + err.Error())
	}
	return nil
}

func usage() string {
	var b strings.Builder
	b.WriteString(`hcctl inspects and controls hcproxy through its shared health table.

Usage:
  hcctl [-c FILE | --table PATH] COMMAND [flags] [args]

Options (also accepted after COMMAND):
  -c FILE       hcproxy config file; its "table" setting names the table
  --table PATH  the health table file itself

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.synopsis)
	}
	b.WriteString(`
Run "hcctl COMMAND -h" for a command's flags.

Exit status:
  0  ok (for check: the check passed)
  1  failure: unreadable or corrupt table, bad config, no such server, no master running,
     a check that failed; the reason is one line on stderr
  2  usage error: unknown command or flag, missing or extra argument, bad value
`)
	return b.String()
}

// oneLine folds a multi-line error (a config with several problems) into one line.
func oneLine(s string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ")
}
