package main

import (
	"context"
	"encoding/json"
	"errors"
	"hcproxy/internal/syncbuf"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"hcproxy/config"
)

// syncBuffer collects output written while the test reads it.
type syncBuffer = syncbuf.Buffer

// TestConfigMatchesExample checks that the config the demo writes is testdata/demo.toml with
// its paths moved.
func TestConfigMatchesExample(t *testing.T) {
	dir := t.TempDir()
	got, err := config.Parse([]byte(configText(dir)), filepath.Join(dir, "hcproxy.toml"))
	if err != nil {
		t.Fatalf("the demo's config is invalid: %v", err)
	}
	want, err := config.Load("../../testdata/demo.toml")
	if err != nil {
		t.Fatal(err)
	}
	if got.PidFile != filepath.Join(dir, "hcproxy.pid") || got.Table != filepath.Join(dir, "hcproxy.table") {
		t.Errorf("pid_file %s, table %s: want both in %s", got.PidFile, got.Table, dir)
	}
	got.Path, got.PidFile, got.Table = "", "", ""
	want.Path, want.PidFile, want.Table = "", "", ""
	if !reflect.DeepEqual(got, want) {
		gj, _ := json.MarshalIndent(got, "", "  ")
		wj, _ := json.MarshalIndent(want, "", "  ")
		t.Errorf("the demo's config differs from testdata/demo.toml:\n%s\nwant:\n%s", gj, wj)
	}
}

// TestDemo builds hcproxy, runs the demo, talks to the proxy and the status page, then cancels
// the demo and checks that hcproxy is gone.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hcproxy and runs the demo for several seconds")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH to build hcproxy")
	}
	if err := checkPorts(); err != nil {
		t.Skipf("the demo needs fixed ports (8080, 8081, 19101-19103): %v", err)
	}
	bin := filepath.Join(t.TempDir(), "hcproxy")
	if out, err := exec.Command(goBin, "build", "-o", bin, "hcproxy/cmd/hcproxy").CombinedOutput(); err != nil {
		t.Fatalf("go build hcproxy: %v\n%s", err, out)
	}

	var out syncBuffer
	defer func() {
		if t.Failed() {
			t.Logf("demo output:\n%s", out.String())
		}
	}()
	ready := make(chan int, 1)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	result := make(chan error, 1)
	go func() {
		result <- run(ctx, options{
			HCProxy: bin,
			Dir:     dir,
			Stdout:  &out,
			Stderr:  &out,
			OnReady: func(pid int, _ string) { ready <- pid },
		})
	}()

	var pid int
	select {
	case pid = <-ready:
	case err := <-result:
		t.Fatalf("run returned before the demo was ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("the demo was not ready within 30s")
	}
	if !strings.Contains(out.String(), "hcproxy demo is running (master pid ") {
		t.Errorf("no banner in the output")
	}

	// The proxy answers with a backend's greeting.
	client := &http.Client{Timeout: 2 * time.Second}
	for i := 0; i < 4; i++ {
		code, body := get(t, client, "http://127.0.0.1:8080/")
		if code != http.StatusOK || !strings.HasPrefix(body, "hello from app-") {
			t.Errorf("GET :8080/ = %d %q, want 200 \"hello from app-...\"", code, body)
		}
	}

	// The status page lists the three backends, and app-3, failing since the start, goes down
	// (fall 2 at 1s intervals) well within its first 8 s.
	var doc struct {
		MasterPid int `json:"master_pid"`
		Workers   []struct {
			Pid int `json:"pid"`
		} `json:"workers"`
		Backends []struct {
			Address string `json:"address"`
			State   string `json:"state"`
		} `json:"backends"`
	}
	deadline := time.Now().Add(6 * time.Second)
	for {
		code, body := get(t, client, "http://127.0.0.1:8081/status?format=json")
		if code != http.StatusOK {
			t.Fatalf("GET :8081/status?format=json = %d %q", code, body)
		}
		if err := json.Unmarshal([]byte(body), &doc); err != nil {
			t.Fatalf("status JSON: %v\n%s", err, body)
		}
		states := map[string]string{}
		for _, b := range doc.Backends {
			states[b.Address] = b.State
		}
		if len(doc.Backends) == 3 && states["127.0.0.1:19103"] == "down" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status page: want 3 backends with 127.0.0.1:19103 down, got %s", body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if doc.MasterPid != pid {
		t.Errorf("status page master_pid %d, want %d", doc.MasterPid, pid)
	}

	// Stop: run returns nil, and the master and its workers are gone.
	cancel()
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("run returned %v, want nil", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return within 20s of the cancel")
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("master pid %d still there after run returned (kill 0: %v)", pid, err)
	}
	for _, w := range doc.Workers {
		waitGone(t, w.Pid, 5*time.Second)
	}
	if !strings.Contains(out.String(), "demo: hcproxy stopped") {
		t.Errorf("no \"demo: hcproxy stopped\" in the output")
	}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}

// waitGone waits for a worker, which is not our child, to be gone.
func waitGone(t *testing.T, pid int, d time.Duration) {
	t.Helper()
	if pid <= 0 {
		return
	}
	deadline := time.Now().Add(d)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Errorf("worker pid %d still there %v after the demo stopped", pid, d)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}
