package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hcproxy/status"
)

// initial = "checking": a server the table has never seen takes no traffic until its first
// passing probe; a first failing probe marks it down.
func TestInitialChecking(t *testing.T) {
	bs := startBackends(t, 2)
	bs[1].SetFailing(true)
	p := startProxy(t, proxyOpts{workers: 2, interval: "1s", extra: `initial = "checking"`}, bs)
	d := p.dump()
	for _, b := range d.Backends {
		if b.Checks == 0 && (b.State != "checking" || b.Available) {
			t.Errorf("unchecked server %s: state %s available %v", b.Address, b.State, b.Available)
		}
	}
	d = p.eventually("first probes", 10*time.Second, func(d status.Document) bool {
		for _, b := range d.Backends {
			if b.Checks == 0 {
				return false
			}
		}
		return true
	})
	b0, _ := backendState(d, bs[0].Addr)
	b1, _ := backendState(d, bs[1].Addr)
	if b0.State != "up" || b1.State != "down" {
		t.Fatalf("after one probe each: %s is %s (want up), %s is %s (want down)", b0.Address, b0.State, b1.Address, b1.State)
	}
}

// USR1 reopens error_log, so logrotate can move the file away.
func TestReopenLogs(t *testing.T) {
	bs := startBackends(t, 1)
	p := startProxy(t, proxyOpts{workers: 1}, bs)
	logPath := filepath.Join(p.dir, "error.log")
	cfg, _ := os.ReadFile(p.config)
	os.WriteFile(p.config, []byte(`error_log = "error.log"`+"\n"+string(cfg)), 0o644)
	p.signal(syscall.SIGHUP) // the new generation logs to the file
	p.eventually("reloaded", 10*time.Second, func(d status.Document) bool { return d.Generation == 2 && readyWorkers(d) == 1 })
	waitFor(t, "worker logs in error.log", func() bool { b, _ := os.ReadFile(logPath); return strings.Contains(string(b), "worker ready") })
	os.Rename(logPath, logPath+".1")
	p.signal(syscall.SIGUSR1)
	time.Sleep(200 * time.Millisecond) // let the reopen land before the line we look for
	bs[0].SetFailing(true)
	waitFor(t, "transition logged in the reopened file", func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "server down")
	})
	resp, err := http.Get("http://" + p.listen + "/")
	if err == nil {
		resp.Body.Close()
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
