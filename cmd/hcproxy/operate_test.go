package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"hcproxy/status"
)

// hcctl set drain takes a server out of rotation in every worker at once (the admin state is in
// the shared table), survives a reload, and set ready brings it back.
func TestSetDrainEveryWorkerAndAcrossReload(t *testing.T) {
	bs := startBackends(t, 2)
	p := startProxy(t, proxyOpts{workers: 2}, bs)
	p.eventually("checked", 10*time.Second, func(d status.Document) bool { return len(d.Backends) == 2 && d.Backends[0].Checks > 0 })
	table := filepath.Join(p.dir, "hcproxy.table")
	out, err := exec.Command(bin.hcctl, "--table", table, "set", "app", bs[1].Addr, "drain").CombinedOutput()
	if err != nil {
		t.Fatalf("hcctl set: %v %s", err, out)
	}
	// Every request from now on, on fresh connections spread over both workers, avoids it.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	drainedHits := func(n int) int64 {
		before := bs[1].Hits()
		for i := 0; i < n; i++ {
			resp, err := client.Get("http://" + p.listen + "/")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
		return bs[1].Hits() - before
	}
	if n := drainedHits(40); n != 0 {
		t.Fatalf("a drained server got %d of 40 requests", n)
	}
	d := p.dump()
	if b, _ := backendState(d, bs[1].Addr); b.Admin != "drain" || b.Available || b.State != "up" {
		t.Fatalf("drained server in the table: %+v", b)
	}
	p.signal(syscall.SIGHUP)
	p.eventually("reloaded", 15*time.Second, func(d status.Document) bool { return d.Generation == 2 && readyWorkers(d) == 2 })
	if b, _ := backendState(p.dump(), bs[1].Addr); b.Admin != "drain" {
		t.Fatalf("admin state lost across a reload: %+v", b)
	}
	if n := drainedHits(20); n != 0 {
		t.Fatalf("after the reload a drained server got %d of 20 requests", n)
	}
	if out, err := exec.Command(bin.hcctl, "--table", table, "set", "app", bs[1].Addr, "ready").CombinedOutput(); err != nil {
		t.Fatalf("hcctl set ready: %v %s", err, out)
	}
	if n := drainedHits(20); n == 0 {
		t.Fatal("a server set ready again gets no traffic")
	}
}

// The live event stream delivers a transition within one interval of the change, and hcctl tail
// sees it too.
func TestEventStreamDeliversTransitions(t *testing.T) {
	bs := startBackends(t, 1)
	p := startProxy(t, proxyOpts{workers: 2, interval: "200ms", fall: 1}, bs)
	p.eventually("checked", 10*time.Second, func(d status.Document) bool { return len(d.Backends) == 1 && d.Backends[0].Checks > 0 })
	resp, err := http.Get("http://" + p.status + "/status/events?format=text&n=0")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	changed := time.Now()
	bs[0].SetFailing(true)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("event stream ended")
			}
			if strings.Contains(l, "health") && strings.Contains(l, bs[0].Addr) && strings.Contains(l, "down") {
				// fall = 1 at a 200ms interval: the next check sees it.
				if took := time.Since(changed); took > 2*time.Second {
					t.Errorf("transition delivered %v after the change", took)
				}
				goto tail
			}
		case <-deadline:
			t.Fatal("no health transition on the event stream")
		}
	}
tail:
	out, err := exec.Command(bin.hcctl, "--table", filepath.Join(p.dir, "hcproxy.table"), "tail", "--no-follow", "--json", "-n", "50").Output()
	if err != nil {
		t.Fatalf("hcctl tail: %v", err)
	}
	found := false
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(l), &ev) == nil && ev["kind"] == "health" && ev["address"] == bs[0].Addr && ev["new"] == "down" {
			found = true
		}
	}
	if !found {
		t.Fatalf("hcctl tail does not show the transition:\n%s", out)
	}
}
