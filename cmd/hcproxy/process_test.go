package main

import (
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hcproxy/status"
)

// A reload keeps every backend's state (a down one stays down, counters continue) and the new
// workers take the checks over within one interval, with no burst of probes.
func TestReloadKeepsStateAndHandsChecksOver(t *testing.T) {
	bs := startBackends(t, 4)
	p := startProxy(t, proxyOpts{workers: 2, interval: "200ms"}, bs)
	bs[0].SetFailing(true)
	before := p.eventually("b0 down, others checked", 10*time.Second, func(d status.Document) bool {
		b, _ := backendState(d, bs[0].Addr)
		return b.State == "down" && b.Checks >= 5
	})
	oldPids := map[int]bool{}
	for _, w := range before.Workers {
		oldPids[w.Pid] = true
	}
	reloadAt := time.Now()
	p.signal(syscall.SIGHUP)
	after := p.eventually("new generation owns every check", 10*time.Second, func(d status.Document) bool {
		if d.Generation != before.Generation+1 {
			return false
		}
		for _, b := range d.Backends {
			if b.OwnerPid == 0 || oldPids[b.OwnerPid] {
				return false
			}
		}
		return true
	})
	for _, b0 := range before.Backends {
		b1, _ := backendState(after, b0.Address)
		if b1.State != b0.State || b1.Checks < b0.Checks || b1.Slot != b0.Slot {
			t.Errorf("%s: before reload %s/%d checks slot %d, after %s/%d slot %d", b0.Address, b0.State, b0.Checks, b0.Slot, b1.State, b1.Checks, b1.Slot)
		}
	}
	// The down backend never came up, and no backend was checked twice in an interval or left
	// unchecked for more than two.
	time.Sleep(time.Second)
	if b, _ := backendState(p.dump(), bs[0].Addr); b.State != "down" || b.Transitions != 1 {
		t.Errorf("down backend after reload: state %s transitions %d", b.State, b.Transitions)
	}
	for _, b := range bs {
		gaps := probeGaps(b, reloadAt.Add(-time.Second))
		lo, hi := minMax(gaps)
		var sum time.Duration
		for _, g := range gaps {
			sum += g
		}
		// One check per 200ms interval: no gap of two intervals (a lost handover), no burst
		// (two checkers), and the same count as without a reload.
		if lo < 50*time.Millisecond || hi > 400*time.Millisecond || len(gaps) == 0 || sum/time.Duration(len(gaps)) < 180*time.Millisecond {
			t.Errorf("backend %s: %d check gaps across the reload, from %v to %v at a 200ms interval", b.Addr, len(gaps), lo, hi)
		}
	}
	// The old workers are gone.
	p.eventually("old workers gone", 15*time.Second, func(d status.Document) bool {
		for pid := range oldPids {
			if alive(pid) {
				return false
			}
		}
		return true
	})
}

// A reload that adds and removes servers frees the removed slot and allocates the new one.
func TestReloadAddsAndRemovesServers(t *testing.T) {
	bs := startBackends(t, 3)
	p := startProxy(t, proxyOpts{workers: 2}, bs[:2])
	d := p.eventually("two checked", 10*time.Second, func(d status.Document) bool { return len(d.Backends) == 2 })
	p.writeConfig(proxyOpts{workers: 2}, bs[1:])
	p.signal(syscall.SIGHUP)
	d = p.eventually("reloaded with b1, b2", 15*time.Second, func(d status.Document) bool {
		_, has0 := backendState(d, bs[0].Addr)
		b2, has2 := backendState(d, bs[2].Addr)
		return !has0 && has2 && b2.Checks > 0 && readyWorkers(d) == 2
	})
	if len(d.Backends) != 2 {
		t.Fatalf("backends after reload: %+v", d.Backends)
	}
}

// kill -9 of a worker: its checks move to the others within two intervals, and the master
// respawns it.
func TestWorkerKillMovesChecksAndRespawns(t *testing.T) {
	bs := startBackends(t, 8)
	p := startProxy(t, proxyOpts{workers: 3, interval: "200ms"}, bs)
	d := p.eventually("all checks owned", 10*time.Second, func(d status.Document) bool {
		for _, b := range d.Backends {
			if b.OwnerPid == 0 || b.Checks < 2 {
				return false
			}
		}
		return true
	})
	victim := d.Backends[0].OwnerPid
	var victims []string
	for _, b := range d.Backends {
		if b.OwnerPid == victim {
			victims = append(victims, b.Address)
		}
	}
	killedAt := time.Now()
	if err := syscall.Kill(victim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.eventually("victim's checks owned by live workers", 5*time.Second, func(d status.Document) bool {
		for _, b := range d.Backends {
			if b.OwnerPid == 0 || b.OwnerPid == victim {
				return false
			}
		}
		return true
	})
	d = p.eventually("worker respawned", 10*time.Second, func(d status.Document) bool {
		if readyWorkers(d) != 3 {
			return false
		}
		for _, w := range d.Workers {
			if w.Pid == victim {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second)
	for _, b := range bs {
		for _, a := range victims {
			if a != b.Addr {
				continue
			}
			if _, hi := minMax(probeGaps(b, killedAt.Add(-500*time.Millisecond))); hi > 400*time.Millisecond {
				t.Errorf("backend %s of the killed worker went %v without a check (interval 200ms)", b.Addr, hi)
			}
		}
	}
	if !strings.Contains(p.log.String(), "worker exited unexpectedly") {
		t.Error("the master did not log the crash")
	}
}

// kill -9 of the master: the workers notice (lifeline) and exit; a new master reuses the table,
// with its state, and the ports.
func TestMasterKillWorkersExitAndStateSurvives(t *testing.T) {
	bs := startBackends(t, 2)
	p := startProxy(t, proxyOpts{workers: 2, fall: 1}, bs)
	bs[1].SetFailing(true)
	d := p.eventually("b1 down", 10*time.Second, func(d status.Document) bool {
		b, _ := backendState(d, bs[1].Addr)
		return b.State == "down"
	})
	pids := p.workerPids()
	p.cmd.Process.Kill()
	<-p.done
	deadline := time.Now().Add(15 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("worker %d still running after its master was killed", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	p.start()
	d2 := p.waitWorkers(2)
	if d2.Generation <= d.Generation {
		t.Errorf("generation %d after restart, was %d", d2.Generation, d.Generation)
	}
	b, _ := backendState(d2, bs[1].Addr)
	if b.State != "down" {
		t.Errorf("state lost across master restart: %+v", b)
	}
	resp, err := http.Get("http://" + p.listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("proxy after restart: %d", resp.StatusCode)
	}
}

// A bad config is refused by -t (exit 1, with the reason) and by a reload, which leaves the
// running workers as they are.
func TestBadConfigRefusedByTestAndReload(t *testing.T) {
	bs := startBackends(t, 1)
	p := startProxy(t, proxyOpts{workers: 2}, bs)
	before := p.dump()
	good, _ := os.ReadFile(p.config)
	bad := strings.Replace(string(good), `interval = "200ms"`, `interval = "fast"`, 1)
	os.WriteFile(p.config, []byte(bad), 0o644)

	out, err := exec.Command(bin.hcproxy, "-t", "-c", p.config).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("-t on a bad config: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "upstream.app.check.interval") || !strings.Contains(string(out), p.config) {
		t.Errorf("-t does not name the file and key: %s", out)
	}
	p.signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.log.String(), "reload failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no 'reload failed' in the log:\n%s", p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	after := p.dump()
	if after.Generation != before.Generation || len(after.Workers) != len(before.Workers) {
		t.Errorf("a rejected reload changed the workers: %+v -> %+v", before.Workers, after.Workers)
	}
	for i := range before.Workers {
		if !alive(before.Workers[i].Pid) {
			t.Errorf("worker %d died after a rejected reload", before.Workers[i].Pid)
		}
	}
	resp, err := http.Get("http://" + p.listen + "/")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("proxy after a rejected reload: %v", err)
	}
	resp.Body.Close()
	// -t on the good config passes.
	os.WriteFile(p.config, good, 0o644)
	if out, err := exec.Command(bin.hcproxy, "-t", "-c", p.config).CombinedOutput(); err != nil {
		t.Fatalf("-t on a good config: %v %s", err, out)
	}
}

// A second master on the same pid file refuses to start; -s reaches the running one.
func TestSecondMasterRefusedAndSignals(t *testing.T) {
	bs := startBackends(t, 1)
	p := startProxy(t, proxyOpts{workers: 1}, bs)
	out, err := exec.Command(bin.hcproxy, "-c", p.config).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another hcproxy master is running") {
		t.Fatalf("second master: %v %s", err, out)
	}
	gen := p.dump().Generation
	if out, err := exec.Command(bin.hcproxy, "-s", "reload", "-c", p.config).CombinedOutput(); err != nil {
		t.Fatalf("-s reload: %v %s", err, out)
	}
	p.eventually("reloaded through -s", 10*time.Second, func(d status.Document) bool { return d.Generation == gen+1 && readyWorkers(d) == 1 })
	if out, err := exec.Command(bin.hcproxy, "-s", "quit", "-c", p.config).CombinedOutput(); err != nil {
		t.Fatalf("-s quit: %v %s", err, out)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatal("master did not stop on -s quit")
	}
	out, err = exec.Command(bin.hcproxy, "-s", "reload", "-c", p.config).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no master is running") {
		t.Fatalf("-s with no master: %v %s", err, out)
	}
}

// The status page is served by the workers from the table, as HTML and as JSON with hcctl's
// field names.
func TestStatusPage(t *testing.T) {
	bs := startBackends(t, 2)
	p := startProxy(t, proxyOpts{workers: 2}, bs)
	bs[0].SetFailing(true)
	p.eventually("b0 down", 10*time.Second, func(d status.Document) bool {
		b, _ := backendState(d, bs[0].Addr)
		return b.State == "down"
	})
	resp, err := http.Get("http://" + p.status + "/status?format=json")
	if err != nil {
		t.Fatal(err)
	}
	var d status.Document
	err = json.NewDecoder(resp.Body).Decode(&d)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if b, ok := backendState(d, bs[0].Addr); !ok || b.State != "down" || len(d.Workers) != 2 {
		t.Fatalf("status JSON: %+v", d)
	}
	resp, err = http.Get("http://" + p.status + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	html := sb.String()
	if !strings.Contains(html, bs[0].Addr) || !strings.Contains(html, bs[1].Addr) || !strings.Contains(html, `class="down`) {
		t.Fatalf("status HTML lacks the rows or the down marker:\n%s", html)
	}
}

// hcctl refuses a corrupt table with one clear line.
func TestHcctlCorruptTable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.table")
	os.WriteFile(path, []byte(strings.Repeat("not a table ", 1000)), 0o600)
	out, err := exec.Command(bin.hcctl, "--table", path, "dump").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("hcctl on a corrupt table: %v", err)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "not a health table") || !strings.Contains(lines[0], path) {
		t.Fatalf("hcctl error: %q", out)
	}
}

// A worker that keeps crashing young (here SIGABRT: the Go runtime's crash path, exit status 2)
// is respawned with a doubling delay, so a crash loop cannot spin the CPU; one killed from
// outside (SIGKILL) is replaced at once.
func TestCrashLoopBacksOff(t *testing.T) {
	bs := startBackends(t, 1)
	p := startProxy(t, proxyOpts{workers: 1}, bs)
	for i := 0; i < 4; i++ {
		d := p.waitWorkers(1)
		for _, w := range d.Workers {
			if w.State == "ready" {
				syscall.Kill(w.Pid, syscall.SIGABRT)
			}
		}
		waitFor(t, "crash logged", func() bool { return strings.Count(p.log.String(), "worker exited unexpectedly") > i })
	}
	var delays []string
	for _, line := range strings.Split(p.log.String(), "\n") {
		if i := strings.Index(line, "respawn_in="); i >= 0 {
			delays = append(delays, strings.Fields(line[i+len("respawn_in="):])[0])
		}
	}
	want := []string{"100ms", "200ms", "400ms", "800ms"}
	if strings.Join(delays, " ") != strings.Join(want, " ") {
		t.Fatalf("respawn delays %v, want %v", delays, want)
	}
	d := p.waitWorkers(1)
	syscall.Kill(d.Workers[len(d.Workers)-1].Pid, syscall.SIGKILL)
	waitFor(t, "kill logged", func() bool { return strings.Count(p.log.String(), "worker exited unexpectedly") == 5 })
	if !strings.Contains(p.log.String(), "respawn_in=0s") {
		t.Error("a worker killed from outside was not replaced at once")
	}
	p.waitWorkers(1)
}
