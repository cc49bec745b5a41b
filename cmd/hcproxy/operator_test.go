package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"hcproxy/worker"
)

// TestWorkersNamedInComm pins that workers showed as "exe" in /proc/PID/comm (they run
// /proc/self/exe), so pgrep, top and ss -p named them "exe".
func TestWorkersNamedInComm(t *testing.T) {
	p := startProxy(t, proxyOpts{workers: 2}, startBackends(t, 1))
	pids := p.workerPids()
	if len(pids) != 2 {
		t.Fatalf("workers %v", pids)
	}
	for _, pid := range pids {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(string(b)); got != worker.ProcName || len(got) != 15 {
			t.Errorf("worker %d comm %q, want %q", pid, got, worker.ProcName)
		}
	}
	out, err := exec.Command("pgrep", "-x", "-P", strconv.Itoa(p.cmd.Process.Pid), worker.ProcName).Output()
	if err == nil && strings.Count(string(out), "\n") != 2 {
		t.Errorf("pgrep -x %q: %q", worker.ProcName, out)
	}
}

// TestConfigTestChecksLogAndPidDirectories pins that hcproxy -t passed a config whose
// error_log, access_log or pid_file directory did not exist (the start then failed).
func TestConfigTestChecksLogAndPidDirectories(t *testing.T) {
	dir := t.TempDir()
	base := "[[server]]\nlisten = \"127.0.0.1:1\"\nupstream = \"a\"\n%s\n[upstream.a]\nservers = [\"127.0.0.1:2\"]\n"
	for _, tc := range []struct{ top, server, want string }{
		{`pid_file = "hc.pid"`, "", ""},
		{`pid_file = "nope/hc.pid"`, "", "pid_file: "},
		{`pid_file = "hc.pid"` + "\n" + `error_log = "nope/e.log"`, "", "error_log: "},
		{`pid_file = "hc.pid"`, `access_log = "nope/a.log"`, "server[0].access_log: "},
	} {
		cfg := filepath.Join(dir, "hc.toml")
		os.WriteFile(cfg, []byte(tc.top+"\n"+strings.Replace(base, "%s", tc.server, 1)), 0o644)
		out, err := exec.Command(bin.hcproxy, "-t", "-c", cfg).CombinedOutput()
		if tc.want == "" {
			if err != nil || !strings.Contains(string(out), "test is successful") {
				t.Errorf("%s: %v %s", tc.top, err, out)
			}
			continue
		}
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "does not exist") {
			t.Errorf("%s %s: %v %q, want exit 1 naming %q", tc.top, tc.server, err, out, tc.want)
		}
	}
}

// TestReopenLogsOneLine pins that -s reopen left no trace in the log: the master now writes
// exactly one line per USR1.
func TestReopenLogsOneLine(t *testing.T) {
	p := startProxy(t, proxyOpts{workers: 2, top: `error_log = "error.log"`}, startBackends(t, 1))
	if out, err := exec.Command(bin.hcproxy, "-s", "reopen", "-c", p.config).CombinedOutput(); err != nil {
		t.Fatalf("-s reopen: %v %s", err, out)
	}
	log := filepath.Join(p.dir, "error.log")
	waitFor(t, "the reopen line", func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "reopening logs")
	})
	// A reload is handled after the reopen (one loop reads the signals in order): once it is
	// logged, any second line about the reopen would be there too.
	if out, err := exec.Command(bin.hcproxy, "-s", "reload", "-c", p.config).CombinedOutput(); err != nil {
		t.Fatalf("-s reload: %v %s", err, out)
	}
	waitFor(t, "the reload line", func() bool {
		b, _ := os.ReadFile(log)
		return strings.Contains(string(b), "reloaded")
	})
	b, _ := os.ReadFile(log)
	if n := strings.Count(string(b), "reopen"); n != 1 {
		t.Errorf("%d lines about reopening, want 1:\n%s", n, b)
	}
}

// TestDumpOfKilledMasterSaysSo pins that hcctl dump of a table whose master was killed looked
// live (its pid, servers up, exit 0): it now says "master not running; table last written at
// T" and exits 3, and the JSON document says master_running false.
func TestDumpOfKilledMasterSaysSo(t *testing.T) {
	p := startProxy(t, proxyOpts{workers: 1}, startBackends(t, 1))
	table := filepath.Join(p.dir, "hcproxy.table")
	out, err := exec.Command(bin.hcctl, "--table", table, "dump").CombinedOutput()
	if err != nil || strings.Contains(string(out), "not running") {
		t.Fatalf("live table: %v %s", err, out)
	}
	workers := p.workerPids()
	p.cmd.Process.Kill()
	<-p.done
	for _, pid := range workers { // they drain and exit when the lifeline closes
		waitFor(t, "worker gone", func() bool { return !alive(pid) })
	}
	cmd := exec.Command(bin.hcctl, "--table", table, "dump")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("dump of a dead table: %v, want exit 3", err)
	}
	for _, s := range []string{stdout.String(), stderr.String()} {
		if !strings.Contains(s, "master not running; table last written at 20") {
			t.Errorf("output lacks the stale line:\nstdout %s\nstderr %s", stdout.String(), stderr.String())
		}
	}
	if _, err := p.dumpErr(); err == nil {
		t.Error("dump --json of a dead table exits 0")
	}
	js, _ := exec.Command(bin.hcctl, "--table", table, "dump", "--json").Output()
	if !strings.Contains(string(js), `"master_running": false`) {
		t.Errorf("--json: %s", js)
	}
}
