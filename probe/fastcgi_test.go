package probe

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startPHPFPM runs php-fpm from the Debian package (php-fpm) on a free
// loopback port with ping.path /ping answering "pong", or skips. It returns
// the address and a directory whose PHP scripts it serves.
func startPHPFPM(t *testing.T) (addr, docroot string) {
	t.Helper()
	bin := findServer(t, "php-fpm", "php-fpm", "php-fpm8.4", "php-fpm8.3", "php-fpm8.2", "php-fpm8.1", "php-fpm7.4")
	dir := t.TempDir()
	docroot = filepath.Join(dir, "www")
	os.MkdirAll(docroot, 0o755)
	os.Chmod(dir, 0o755)
	traversable(docroot)
	port := freePort(t)
	addr = "127.0.0.1:" + strconv.Itoa(port)
	user := ""
	args := []string{"--nodaemonize", "--fpm-config", filepath.Join(dir, "fpm.conf")}
	if os.Geteuid() == 0 {
		user = "user = nobody\ngroup = nogroup\n"
		args = append(args, "--allow-to-run-as-root")
	}
	conf := fmt.Sprintf(`[global]
error_log = %s/fpm.log
pid = %s/fpm.pid
daemonize = no
[check]
%slisten = %s
pm = static
pm.max_children = 2
ping.path = /ping
ping.response = pong
`, dir, dir, user, addr)
	if err := os.WriteFile(filepath.Join(dir, "fpm.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	startServer(t, exec.Command(bin, args...), addr, fastcgiAnswers)
	return addr, docroot
}

func TestFastCGIRealServer(t *testing.T) {
	addr, docroot := startPHPFPM(t)
	os.WriteFile(filepath.Join(docroot, "ok.php"), []byte(`<?php echo "db: ok\n";`), 0o644)
	os.WriteFile(filepath.Join(docroot, "fail.php"), []byte(`<?php http_response_code(503); echo "db: down\n";`), 0o644)
	tests := []struct {
		name       string
		opt        FastCGIOptions
		want       Reason
		status     int
		wantDetail string
	}{
		{"ping/pong", FastCGIOptions{URI: "/ping", ExpectBody: "pong"}, OK, 200, ""},
		{"ping, wrong expectation", FastCGIOptions{URI: "/ping", ExpectBody: "pang"}, BodyMismatch, 200, `does not contain "pang"`},
		{"script", FastCGIOptions{URI: "/ok.php?verbose=1", ScriptFilename: filepath.Join(docroot, "ok.php"), BodyRegexp: regexp.MustCompile(`db: ok`)}, OK, 200, ""},
		{"script says 503", FastCGIOptions{URI: "/fail.php", ScriptFilename: filepath.Join(docroot, "fail.php")}, BadStatus, 503, "status 503"},
		{"no such script", FastCGIOptions{URI: "/nope.php", ScriptFilename: filepath.Join(docroot, "nope.php")}, BadStatus, 404, "status 404"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := probeCtx(t, NewFastCGI(tt.opt), addr, 5*time.Second)
			checkResult(t, got, tt.want, tt.status, tt.wantDetail)
		})
	}
}

// fcgiReply frames records of request 1 for the fakes.
func fcgiReply(recs ...[2]string) string {
	var b []byte
	for _, r := range recs {
		b = fcgiRecord(b, r[0][0], []byte(r[1]))
	}
	return string(b)
}

func TestFastCGIFakes(t *testing.T) {
	out := func(s string) [2]string { return [2]string{string(rune(fcgiStdout)), s} }
	end := func(ps byte) [2]string {
		return [2]string{string(rune(fcgiEndRequest)), "\x00\x00\x00\x00" + string(rune(ps)) + "\x00\x00\x00"}
	}
	errRec := [2]string{string(rune(fcgiStderr)), "Primary script unknown"}
	tests := []struct {
		name       string
		reply      string
		max        int64
		want       Reason
		status     int
		wantDetail string
	}{
		{"pong", fcgiReply(out("Content-type: text/plain\r\n\r\npong"), end(0)), 0, OK, 200, ""},
		{"split stdout", fcgiReply(out("Status: 200 OK\nX: y\n\npo"), out("ng"), end(0)), 0, OK, 200, ""},
		{"404 with stderr", fcgiReply(errRec, out("Status: 404 Not Found\r\n\r\nFile not found.\n"), end(0)), 0, BadStatus, 404, "stderr: Primary script unknown"},
		{"overloaded", fcgiReply(end(2)), 0, BadResponse, 0, "overloaded"},
		{"bad CGI headers", fcgiReply(out("pong"), end(0)), 0, BadResponse, 0, "CGI headers not terminated"},
		{"garbage", "HTTP/1.1 200 OK\r\n\r\npong", 0, BadResponse, 0, "FastCGI version"},
		{"half record|close", fcgiReply(out("Status: 200\r\n\r\npong"))[:12], 0, EarlyClose, 0, "FastCGI response"},
		{"no END_REQUEST|close", fcgiReply(out("Status: 200\r\n\r\npong")), 0, EarlyClose, 0, "FastCGI response"},
		{"oversized", fcgiReply(out(strings.Repeat("x", 3000)), end(0)), 1000, TooLarge, 0, "more than 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handler := replyWith(tt.reply)
			if strings.HasSuffix(tt.name, "|close") {
				handler = replyThenClose(tt.reply)
			}
			p := NewFastCGI(FastCGIOptions{ExpectBody: "pong", MaxResponse: tt.max})
			got := probeCtx(t, p, serveConns(t, handler), 500*time.Millisecond)
			checkResult(t, got, tt.want, tt.status, tt.wantDetail)
		})
	}
	t.Run("stall", func(t *testing.T) {
		got := probeCtx(t, NewFastCGI(FastCGIOptions{}), serveConns(t, stall), 300*time.Millisecond)
		checkResult(t, got, Timeout, 0, "FastCGI response")
	})
}

// TestSessionProbePanicRecovered pins that a panicking hook in a
// session-based check (here the FastCGI status hook) becomes an Internal
// result and that the check's connection is still closed.
func TestSessionProbePanicRecovered(t *testing.T) {
	closed := make(chan error, 1)
	addr := serveConns(t, func(c net.Conn, done <-chan struct{}) {
		c.Write([]byte(fcgiReply([2]string{string(rune(fcgiStdout)), "Status: 200\r\n\r\npong"},
			[2]string{string(rune(fcgiEndRequest)), "\x00\x00\x00\x00\x00\x00\x00\x00"})))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c) // nil once the prober closes its end
		closed <- err
	})
	p := NewFastCGI(FastCGIOptions{StatusOK: func(int) bool { panic("boom") }})
	checkResult(t, probeCtx(t, p, addr, 2*time.Second), Internal, 0, "panic: boom")
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("the prober did not close its connection: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server never finished reading")
	}
}
