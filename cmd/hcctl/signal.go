package main

import (
	"context"
	"flag"
	"fmt"

	"hcproxy/internal/pidfile"
)

// signalCmd sends one signal to the master, whose pid it reads from the pid file the config names.
type signalCmd struct {
	env  *env
	fs   *flag.FlagSet
	name string // reload, stop or quit: a key of pidfile.Signals
}

// signalHelp says what each signal makes the master do.
var signalHelp = map[string]string{
	"reload": `Reload sends SIGHUP to the master: it reads the config again and, when it is valid, starts
workers of the new generation and drains the old ones. Health state and admin states stay in
the table. An invalid config is logged by the master and changes nothing.`,
	"stop": `Stop sends SIGTERM to the master: it stops its workers at once (requests in flight are cut)
and exits.`,
	"quit": `Quit sends SIGQUIT to the master: its workers stop accepting, finish the requests in flight
(up to shutdown_timeout), then the master exits.`,
}

func newSignal(name string) func(*env) command {
	return func(e *env) command {
		s := &signalCmd{env: e, name: name, fs: flag.NewFlagSet(name, flag.ContinueOnError)}
		e.tableFlags(s.fs)
		return s
	}
}

func (s *signalCmd) Usage() string {
	return fmt.Sprintf(`Usage: hcctl -c FILE %s

%s

The master is found through its pid file (pid_file in the config), which it keeps locked while
it runs: the command fails (exit 1) when the file is missing or empty or no master holds it.
It returns once the signal is sent, not when the master has acted on it (see hcctl tail, hcctl
workers and the master's log).

Flags:
  -c FILE   the hcproxy config (required)
`, s.name, signalHelp[s.name])
}

func (s *signalCmd) Run(_ context.Context, args []string) error {
	if err := parseFlags(s.fs, s, s.env.stdout, args); err != nil {
		return err
	}
	cfg, err := s.env.loadConfig(s.name)
	if err != nil {
		return err
	}
	if err := pidfile.Signal(cfg.PidFile, s.name); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}
