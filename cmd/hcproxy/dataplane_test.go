package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"hcproxy/status"
)

// startProxyRaw starts hcproxy on a config given whole; {{listen}}, {{status}} and {{dir}} are
// replaced by the proxy's listen address, status address and directory.
func startProxyRaw(t *testing.T, workers int, cfg string) *proxy {
	t.Helper()
	dir := t.TempDir()
	p := &proxy{t: t, dir: dir, config: filepath.Join(dir, "hcproxy.toml"), listen: freePort(t), status: freePort(t), log: &syncBuffer{}}
	cfg = strings.NewReplacer("{{listen}}", p.listen, "{{status}}", p.status, "{{dir}}", dir).Replace(cfg)
	if err := os.WriteFile(p.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p.start()
	t.Cleanup(p.kill)
	p.waitWorkers(workers)
	return p
}

// portOf returns the port of a host:port.
func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// A backend that refuses connections costs the client nothing when another is up (the request
// is retried), and the passive failure one worker sees takes the server out of rotation for all
// workers: across 40 requests on fresh connections (spread over both workers) exactly one try
// hits the refusing server.
func TestRetriesAndSharedPassiveChecks(t *testing.T) {
	health := startBackends(t, 1)[0] // answers the checks of both servers (check port)
	good := startBackends(t, 1)[0]
	refusing := freePort(t)
	p := startProxyRaw(t, 2, fmt.Sprintf(`workers = 2
pid_file = "hcproxy.pid"
table = "hcproxy.table"
[status]
listen = "{{status}}"
[[server]]
listen = "{{listen}}"
upstream = "app"
access_log = "access.log"
[upstream.app]
servers = [%q, %q]
retries = 1
max_fails = 1
fail_timeout = "60s"
[upstream.app.check]
uri = "/health"
interval = "200ms"
timeout = "150ms"
port = %s
`, refusing, good.Addr, portOf(health.Addr)))
	p.eventually("both servers checked up", 10*time.Second, func(d status.Document) bool {
		for _, b := range d.Backends {
			if b.State != "up" || b.Checks == 0 {
				return false
			}
		}
		return len(d.Backends) == 2
	})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 40; i++ {
		resp, err := client.Get("http://" + p.listen + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), "hello from") {
			t.Fatalf("request %d: %d %q: the refusing server cost the client", i, resp.StatusCode, body)
		}
	}
	d := p.dump()
	b, _ := backendState(d, refusing)
	if b.State != "up" || b.Available {
		t.Errorf("refusing server: state %s available %v, want up (its checks pass) but not available (ejected)", b.State, b.Available)
	}
	var retried int
	waitFor(t, "40 access log lines", func() bool {
		data, _ := os.ReadFile(filepath.Join(p.dir, "access.log"))
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		retried = strings.Count(string(data), " tries=2 ")
		return len(lines) == 40
	})
	if retried != 1 {
		t.Errorf("%d requests were retried after hitting the refusing server, want exactly 1: the ejection is not shared by the workers", retried)
	}
	workers := map[int]bool{}
	for _, w := range d.Workers {
		if w.ChecksOwned >= 0 {
			workers[w.Pid] = true
		}
	}
	if len(workers) != 2 {
		t.Fatalf("workers %v", d.Workers)
	}
}

// Client keep-alive and upstream keep-alive: 50 requests over one client connection use one
// upstream connection (the checks go to another port).
func TestKeepAliveReuse(t *testing.T) {
	health := startBackends(t, 1)[0]
	app := startBackends(t, 1)[0]
	p := startProxyRaw(t, 1, fmt.Sprintf(`workers = 1
pid_file = "hcproxy.pid"
table = "hcproxy.table"
[[server]]
listen = "{{listen}}"
upstream = "app"
[upstream.app]
servers = [%q]
keepalive = 8
[upstream.app.check]
uri = "/health"
port = %s
`, app.Addr, portOf(health.Addr)))
	conn, err := net.Dial("tcp", p.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	for i := 0; i < 50; i++ {
		fmt.Fprintf(conn, "GET /n%d HTTP/1.1\r\nHost: app\r\n\r\n", i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d on one client connection: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("request %d: %d close=%v", i, resp.StatusCode, resp.Close)
		}
	}
	if n := app.Conns(); n != 1 {
		t.Errorf("50 requests used %d upstream connections, want 1", n)
	}
}

// An Upgrade (WebSocket) request passes through: 101, then bytes both ways.
func TestWebSocketPassThrough(t *testing.T) {
	bs := startBackends(t, 1)
	p := startProxy(t, proxyOpts{workers: 1}, bs)
	conn, err := net.Dial("tcp", p.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for _, msg := range []string{"hello", "over the proxy", strings.Repeat("x", 100000)} {
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo of %d bytes: %v", len(msg), err)
		}
	}
}

// The upstream learns who the client is; a request id goes to the upstream and back; Via when
// asked; each request gets an access log line with upstream, tries and request id.
func TestProxyHeadersAndAccessLog(t *testing.T) {
	app := startBackends(t, 1)[0]
	p := startProxyRaw(t, 1, fmt.Sprintf(`workers = 1
pid_file = "hcproxy.pid"
table = "hcproxy.table"
[[server]]
listen = "{{listen}}"
upstream = "app"
access_log = "access.json"
access_log_format = "json"
via = true
forwarded = "both"
[upstream.app]
servers = [%q]
[upstream.app.check]
uri = "/health"
`, app.Addr))
	req, _ := http.NewRequest("GET", "http://"+p.listen+"/headers?x=1", nil)
	req.Host = "shop.example"
	req.Header.Set("X-Request-ID", "abc-123")
	req.Header.Set("Connection", "keep-alive, X-Secret")
	req.Header.Set("X-Secret", "hop-by-hop")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var got http.Header
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	checks := map[string]string{
		"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Host": "shop.example", "X-Forwarded-Proto": "http",
		"X-Request-Id": "abc-123", "Via": "1.1 hcproxy", "Host": "shop.example",
	}
	for h, want := range checks {
		if got.Get(h) != want {
			t.Errorf("upstream saw %s: %q, want %q", h, got.Get(h), want)
		}
	}
	if fw := got.Get("Forwarded"); !strings.Contains(fw, "for=127.0.0.1") || !strings.Contains(fw, `host="shop.example"`) {
		t.Errorf("Forwarded: %q", fw)
	}
	if got.Get("X-Secret") != "" {
		t.Error("a header named in Connection (hop-by-hop) reached the upstream")
	}
	if resp.Header.Get("X-Request-Id") != "abc-123" || resp.Header.Get("Via") == "" {
		t.Errorf("response headers: %v", resp.Header)
	}
	// Without a client id, one is made up and returned.
	resp, err = http.Get("http://" + p.listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	rid := resp.Header.Get("X-Request-Id")
	if len(rid) != 32 {
		t.Errorf("made-up request id %q", rid)
	}
	var lines []map[string]any
	waitFor(t, "two access log lines", func() bool {
		data, _ := os.ReadFile(filepath.Join(p.dir, "access.json"))
		lines = nil
		for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(l), &m) == nil {
				lines = append(lines, m)
			}
		}
		return len(lines) == 2
	})
	if lines[0]["uri"] != "/headers?x=1" || lines[0]["status"] != float64(200) || lines[0]["upstream"] != app.Addr || lines[0]["request_id"] != "abc-123" || lines[1]["request_id"] != rid {
		t.Errorf("access log: %v", lines)
	}
}
