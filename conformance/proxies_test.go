package conformance

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The proxies under test, each a real process in front of its own recorders (one per lane):
// hcproxy with each engine, and nginx and HAProxy as oracles. Each listens on one loopback port
// per lane and forwards to that lane's recorder with keep-alive upstream connections.

const (
	fastName    = "fast"
	stdName     = "std"
	nginxName   = "nginx"
	haproxyName = "haproxy"
)

// proxyNames lists the proxies in the order of the report.
var proxyNames = []string{fastName, stdName, nginxName, haproxyName}

// proc is a running proxy process.
type proc struct {
	name   string
	dir    string
	logs   []string // its log files
	listen []string
	cmd    *exec.Cmd
	done   chan struct{}
}

// stop sends SIGTERM to the process, waits for it, and kills what is left of its process group
// (hcproxy's workers) by the group's id.
func (p *proc) stop() {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// log returns the end of each of its log files.
func (p *proc) log() string {
	var out strings.Builder
	for _, f := range p.logs {
		b, _ := os.ReadFile(f)
		if len(b) > 3000 {
			b = b[len(b)-3000:]
		}
		fmt.Fprintf(&out, "--- %s\n%s", filepath.Base(f), b)
	}
	return out.String()
}

// start runs argv in dir in its own process group with output to logf and stops it at cleanup.
func start(t *testing.T, name, dir string, listen []string, argv ...string) *proc {
	t.Helper()
	logf := filepath.Join(dir, "output.log")
	out, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, dir: dir, logs: []string{logf}, listen: listen, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	return p
}

// reservePorts returns n distinct free loopback addresses (held together while chosen, so no
// two are the same): reserve the ports of every proxy in one call.
func reservePorts(t *testing.T, n int) []string {
	t.Helper()
	var lns []net.Listener
	var addrs []string
	for i := 0; i < n; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	for _, ln := range lns {
		ln.Close()
	}
	return addrs
}

// lookOracle finds an oracle binary on PATH or in /usr/sbin (where Debian puts both).
func lookOracle(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := filepath.Join("/usr/sbin", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s: not on PATH nor in /usr/sbin", name)
	}
	return p, nil
}

// hcproxyBinary returns $HCPROXY_BIN, or builds cmd/hcproxy into the test's temporary
// directory (with -race when HCPROXY_RACE=1, as make test sets it for the integration tests).
func hcproxyBinary(t *testing.T) (string, error) {
	if p := os.Getenv("HCPROXY_BIN"); p != "" {
		return p, nil
	}
	out := filepath.Join(t.TempDir(), "hcproxy")
	args := []string{"build", "-o", out}
	if os.Getenv("HCPROXY_RACE") == "1" {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "hcproxy/cmd/hcproxy")...)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build hcproxy: %w\n%s", err, b)
	}
	return out, nil
}

// startHcproxy runs hcproxy with one worker and the given engine: one [[server]] per lane, each
// with its own upstream of one server (the lane's recorder), no retries and no passive
// ejection (a case must reach the recorder once or not at all), and tcp checks on the health
// port so that no probe reaches a recorder.
func startHcproxy(t *testing.T, bin, engine string, listen []string, recs []*recorder, health int) *proc {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	fmt.Fprintf(&b, "workers = 1\nengine = %q\npid_file = \"hcproxy.pid\"\ntable = \"hcproxy.table\"\n", engine)
	b.WriteString("shutdown_timeout = \"1s\"\nerror_log = \"error.log\"\nlog_level = \"warn\"\n")
	for i, r := range recs {
		fmt.Fprintf(&b, "\n[[server]]\nlisten = %q\nupstream = \"lane%d\"\n", listen[i], i)
		fmt.Fprintf(&b, "[upstream.lane%d]\nservers = [%q]\nretries = 0\nmax_fails = 0\nkeepalive = 8\n", i, r.addr())
		fmt.Fprintf(&b, "[upstream.lane%d.check]\ntype = \"tcp\"\nport = %d\ninterval = \"10s\"\ntimeout = \"1s\"\n", i, health)
	}
	if err := os.WriteFile(filepath.Join(dir, "hcproxy.toml"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, engine, dir, listen, bin, "-c", filepath.Join(dir, "hcproxy.toml"))
	p.logs = append(p.logs, filepath.Join(dir, "error.log"))
	return p
}

// startNginx runs nginx in one process (master_process off), with an upstream per lane kept
// alive (proxy_http_version 1.1, an empty Connection), and Host set to $host: the target's
// authority for an absolute-form request, else the Host field without its port.
func startNginx(t *testing.T, bin string, listen []string, recs []*recorder) *proc {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tmp"), 0o700); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if os.Geteuid() == 0 {
		b.WriteString("user root;\n")
	}
	b.WriteString(`daemon off;
master_process off;
worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;
    uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;
`)
	for i, r := range recs {
		fmt.Fprintf(&b, "    upstream lane%d { server %s; keepalive 8; }\n", i, r.addr())
		fmt.Fprintf(&b, `    server {
        listen %s;
        location / {
            proxy_pass http://lane%d;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }
    }
`, listen[i], i)
	}
	b.WriteString("}\n")
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	p := start(t, nginxName, dir, listen, bin, "-p", dir+"/", "-c", "nginx.conf", "-e", "error.log")
	p.logs = append(p.logs, filepath.Join(dir, "error.log"))
	return p
}

// startHaproxy runs HAProxy in the foreground (-db), mode http with keep-alive on both sides
// and idle server connections shared between clients (http-reuse always, as a pooling proxy).
func startHaproxy(t *testing.T, bin string, listen []string, recs []*recorder) *proc {
	t.Helper()
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString(`global
    maxconn 4096
defaults
    mode http
    option http-keep-alive
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout http-request 10s
    timeout http-keep-alive 10s
`)
	for i, r := range recs {
		fmt.Fprintf(&b, "frontend lane%d\n    bind %s\n    default_backend lane%d\n", i, listen[i], i)
		fmt.Fprintf(&b, "backend lane%d\n    http-reuse always\n    server s%d %s\n", i, i, r.addr())
	}
	if err := os.WriteFile(filepath.Join(dir, "haproxy.cfg"), []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return start(t, haproxyName, dir, listen, bin, "-db", "-f", "haproxy.cfg")
}

// versionOf returns the first line a binary prints for its version flag.
func versionOf(bin string, flag string) string {
	out, err := exec.Command(bin, flag).CombinedOutput()
	if err != nil && len(out) == 0 {
		return filepath.Base(bin) + ": " + err.Error()
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return first
}

// warmRequest is what waitReady sends through every lane of every proxy.
const warmRequest = "GET /warm-up HTTP/1.1\r\nHost: warm.test\r\n\r\n"

var errNotReady = errors.New("conformance: proxy not ready")

// waitReady polls each lane of p with a request until every lane answers with a recorder's 200,
// or the deadline passes.
func waitReady(p *proc, deadline time.Duration) error {
	end := time.Now().Add(deadline)
	for _, addr := range p.listen {
		for {
			a := exchange(addr, []byte(warmRequest), 1, nil)
			if len(a.statuses) == 1 && a.statuses[0] == 200 && a.serials[0] > 0 {
				break
			}
			if p.exited() {
				return fmt.Errorf("%w: %s exited:\n%s", errNotReady, p.name, p.log())
			}
			if time.Now().After(end) {
				return fmt.Errorf("%w: %s on %s after %v (last answer %+v):\n%s", errNotReady, p.name, addr, deadline, a, p.log())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}
