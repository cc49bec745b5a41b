package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// writeConfig writes an hcproxy config to a temp dir: a table and pid file in that dir, one
// listener, upstream app with servers and the check given as TOML lines. It returns its path.
func writeConfig(t *testing.T, servers []string, check string) string {
	t.Helper()
	dir := t.TempDir()
	quoted := make([]string, len(servers))
	for i, s := range servers {
		quoted[i] = strconv.Quote(s)
	}
	conf := fmt.Sprintf(`table = "hc.table"
pid_file = "hcproxy.pid"

[[server]]
listen = "127.0.0.1:8080"
upstream = "app"

[upstream.app]
servers = [%s]

[upstream.app.check]
%s
`, strings.Join(quoted, ", "), check)
	path := filepath.Join(dir, "hcproxy.toml")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// hostPort is the host:port of an httptest server.
func hostPort(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// A refused port: one that was just listened on and closed.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// resultFields parses check's "name  value" lines.
func resultFields(out string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

func TestCheck(t *testing.T) {
	var okHits, badHits atomic.Int64
	okSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && r.Header.Get("User-Agent") != "" {
			okHits.Add(1)
		}
		fmt.Fprintln(w, "all good")
	}))
	defer okSrv.Close()
	badSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badHits.Add(1)
		http.Error(w, "overloaded", http.StatusServiceUnavailable)
	}))
	defer badSrv.Close()
	refused := refusedAddr(t)
	cfg := writeConfig(t, []string{hostPort(okSrv), hostPort(badSrv), refused},
		"uri = \"/health\"\ninterval = \"2s\"\ntimeout = \"1s\"\nexpect_body = \"good\"")

	for _, tc := range []struct {
		name, addr string
		code       int
		want       map[string]string
		errs       string
	}{
		{"pass", hostPort(okSrv), 0, map[string]string{"result": "ok", "status": "200", "detail": "-"}, ""},
		{"503", hostPort(badSrv), 1, map[string]string{"result": "bad_status", "status": "503"},
			"hcctl: app " + hostPort(badSrv) + ": check failed: bad_status\n"},
		{"refused", refused, 1, map[string]string{"result": "connect_refused", "status": "-", "bytes": "0"},
			"hcctl: app " + refused + ": check failed: connect_refused\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runHcctl("-c", cfg, "check", "app", tc.addr)
			if code != tc.code || errs != tc.errs {
				t.Fatalf("exit %d, stderr %q; want %d, %q\n%s", code, errs, tc.code, tc.errs, out)
			}
			got := resultFields(out)
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q\n%s", k, got[k], v, out)
				}
			}
			if got["upstream"] != "app" || got["server"] != tc.addr || got["probed"] != tc.addr {
				t.Errorf("upstream, server, probed = %q, %q, %q", got["upstream"], got["server"], got["probed"])
			}
			if !strings.HasPrefix(got["check"], "http GET /health, expect 2xx,3xx") {
				t.Errorf("check = %q", got["check"])
			}
			if rtt, err := time.ParseDuration(got["rtt"]); err != nil || rtt <= 0 || rtt > time.Second {
				t.Errorf("rtt = %q", got["rtt"])
			}
			if tc.code == 1 && got["detail"] == "-" {
				t.Errorf("a failure without detail:\n%s", out)
			}
			if n, _ := strconv.Atoi(got["bytes"]); tc.addr != refused && n < 20 {
				t.Errorf("bytes = %q, want the response's size", got["bytes"])
			}
		})
	}
	if okHits.Load() != 1 || badHits.Load() != 1 {
		t.Errorf("backends saw %d and %d checks, want 1 each", okHits.Load(), badHits.Load())
	}

	// A check port probes that port instead of the server's.
	cfgPort := writeConfig(t, []string{"127.0.0.1:1"}, fmt.Sprintf("type = \"tcp\"\nport = %d", okSrv.Listener.Addr().(*net.TCPAddr).Port))
	code, out, errs := runHcctl("-c", cfgPort, "check", "app", "127.0.0.1:1")
	if got := resultFields(out); code != 0 || got["probed"] != hostPort(okSrv) || got["result"] != "ok" || !strings.HasPrefix(got["check"], "tcp, timeout") {
		t.Errorf("check port: exit %d, stderr %q:\n%s", code, errs, out)
	}

	for _, tc := range []struct {
		args []string
		code int
		errs string
	}{
		{[]string{"-c", cfg, "check", "app", "127.0.0.1:9"}, 1, "hcctl: no server 127.0.0.1:9 in upstream app\n"},
		{[]string{"-c", cfg, "check", "web", hostPort(okSrv)}, 1, "no upstream web in " + cfg + " (have app)"},
		{[]string{"-c", cfg, "check", "app"}, 2, "check: missing ADDRESS"},
		{[]string{"check", "app", hostPort(okSrv)}, 2, "check: needs -c FILE"},
		{[]string{"-c", filepath.Join(t.TempDir(), "none.toml"), "check", "app", hostPort(okSrv)}, 1, "no such file"},
	} {
		code, _, errs := runHcctl(tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.errs) {
			t.Errorf("%q: exit %d, stderr %q; want %d, %q", tc.args, code, errs, tc.code, tc.errs)
		}
	}
}

// With no master running, reload, stop and quit fail with one line naming the pid file.
func TestSignalNoMaster(t *testing.T) {
	cfg := writeConfig(t, []string{"127.0.0.1:9"}, "")
	pidFile := filepath.Join(filepath.Dir(cfg), "hcproxy.pid")
	for _, cmd := range []string{"reload", "stop", "quit"} {
		os.Remove(pidFile)
		code, out, errs := runHcctl("-c", cfg, cmd)
		if code != 1 || out != "" || errs != "hcctl: "+cmd+": open "+pidFile+": no such file or directory\n" {
			t.Errorf("%s, no pid file: exit %d, stdout %q, stderr %q", cmd, code, out, errs)
		}
		if err := os.WriteFile(pidFile, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errs = runHcctl("-c", cfg, cmd)
		if code != 1 || errs != "hcctl: "+cmd+": "+pidFile+" is empty: no master is running\n" {
			t.Errorf("%s, empty pid file: exit %d, stderr %q", cmd, code, errs)
		}
		// A stale pid file (nobody holds its lock) is refused: its pid may be another process now.
		if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errs = runHcctl("-c", cfg, cmd)
		if code != 1 || !strings.Contains(errs, "no master holds it") || strings.Count(errs, "\n") != 1 {
			t.Errorf("%s, stale pid file: exit %d, stderr %q", cmd, code, errs)
		}
		code, _, errs = runHcctl(cmd)
		if code != 2 || !strings.Contains(errs, cmd+": needs -c FILE") {
			t.Errorf("%s without -c: exit %d, stderr %q", cmd, code, errs)
		}
		code, out, _ = runHcctl(cmd, "-h")
		if code != 0 || !strings.Contains(out, "pid file") {
			t.Errorf("%s -h: exit %d:\n%s", cmd, code, out)
		}
	}
}

// With a master holding the pid file (this test process, holding its lock), each command sends
// its signal.
func TestSignalSent(t *testing.T) {
	cfg := writeConfig(t, []string{"127.0.0.1:9"}, "")
	pidFile := filepath.Join(filepath.Dir(cfg), "hcproxy.pid")
	f, err := os.OpenFile(pidFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "%d\n", os.Getpid())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	for cmd, want := range map[string]os.Signal{"reload": syscall.SIGHUP, "stop": syscall.SIGTERM, "quit": syscall.SIGQUIT} {
		code, out, errs := runHcctl("-c", cfg, cmd)
		if code != 0 || out != "" || errs != "" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", cmd, code, out, errs)
			continue
		}
		select {
		case got := <-sigs:
			if got != want {
				t.Errorf("%s sent %v, want %v", cmd, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: no %v within 5s", cmd, want)
		}
	}
}
