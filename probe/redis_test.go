package probe

import (
	"bufio"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startRedis runs redis-server from the Debian package on a free loopback
// port with extra arguments, or skips.
func startRedis(t *testing.T, args ...string) string {
	t.Helper()
	bin := findServer(t, "redis-server", "redis-server")
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	argv := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", t.TempDir(),
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"}, args...)
	startServer(t, exec.Command(bin, argv...), addr, redisAnswers)
	return addr
}

func TestRedisRealServer(t *testing.T) {
	open := startRedis(t)
	locked := startRedis(t, "--requirepass", "s3cret-pw")
	replica := startRedis(t, "--replicaof", strings.Replace(open, ":", " ", 1))
	tests := []struct {
		name       string
		addr       string
		opt        RedisOptions
		want       Reason
		wantDetail string
	}{
		{"PING", open, RedisOptions{}, OK, ""},
		{"role master", open, RedisOptions{Role: "master"}, OK, ""},
		{"replica is not master", replica, RedisOptions{Role: "master"}, Unexpected, `role "slave", want "master"`},
		{"replica role slave", replica, RedisOptions{Role: "slave"}, OK, ""},
		{"AUTH", locked, RedisOptions{Password: "s3cret-pw", Role: "master"}, OK, ""},
		{"no password", locked, RedisOptions{}, AuthFailed, "NOAUTH"},
		{"wrong password", locked, RedisOptions{Password: "wrong-pw"}, AuthFailed, "AUTH: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := probeCtx(t, NewRedis(tt.opt), tt.addr, 2*time.Second)
			checkResult(t, got, tt.want, 0, tt.wantDetail)
			if tt.opt.Password != "" && strings.Contains(got.Detail, tt.opt.Password) {
				t.Errorf("detail %q shows the password", got.Detail)
			}
		})
	}
}

func TestRedisFakes(t *testing.T) {
	tests := []struct {
		name       string
		reply      string
		opt        RedisOptions
		max        int64
		want       Reason
		wantDetail string
	}{
		{"pong", "+PONG\r\n", RedisOptions{}, 0, OK, ""},
		{"loading", "-LOADING Redis is loading the dataset in memory\r\n", RedisOptions{}, 0, ServerError, "LOADING"},
		{"garbage", "SSH-2.0-OpenSSH\r\n", RedisOptions{}, 0, BadResponse, "unknown RESP type"},
		{"half reply", "+PO|close", RedisOptions{}, 0, EarlyClose, "PING reply"},
		{"no CRLF", "+PONG\n", RedisOptions{}, 0, BadResponse, "CRLF"},
		{"other reply", ":1\r\n", RedisOptions{}, 0, Unexpected, "integer 1"},
		{"password echoed back is scrubbed", "-ERR bad password hunter2\r\n", RedisOptions{Password: "hunter2"}, 0, AuthFailed, "bad password ***"},
		{"huge bulk length", "+PONG\r\n$99999999999\r\nxx|close", RedisOptions{Role: "master"}, 200, EarlyClose, "ROLE reply"},
		{"ROLE not an array", "+PONG\r\n+master\r\n", RedisOptions{Role: "master"}, 0, BadResponse, "ROLE answered"},
		{"nested too deep", "+PONG\r\n*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n*0\r\n", RedisOptions{Role: "master"}, 0, BadResponse, "nested"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handler := replyWith(tt.reply)
			if r, ok := strings.CutSuffix(tt.reply, "|close"); ok {
				handler = replyThenClose(r)
			}
			addr := serveConns(t, handler)
			got := probeCtx(t, NewRedis(RedisOptions{Password: tt.opt.Password, Role: tt.opt.Role, MaxResponse: tt.max}), addr, time.Second)
			checkResult(t, got, tt.want, 0, tt.wantDetail)
		})
	}
	t.Run("stall", func(t *testing.T) {
		got := probeCtx(t, NewRedis(RedisOptions{}), serveConns(t, stall), 300*time.Millisecond)
		checkResult(t, got, Timeout, 0, "PING reply")
	})
	t.Run("oversized", func(t *testing.T) {
		addr := serveConns(t, func(c net.Conn, done <-chan struct{}) { writeForever(c, done, "+PONGPONGPONG") })
		got := probeCtx(t, NewRedis(RedisOptions{MaxResponse: 100}), addr, time.Second)
		checkResult(t, got, TooLarge, 0, "more than 100 bytes")
		if got.Bytes > 100 {
			t.Errorf("read %d bytes, max 100", got.Bytes)
		}
	})
	t.Run("commands on the wire", func(t *testing.T) {
		got := make(chan string, 1)
		addr := serveConns(t, func(c net.Conn, done <-chan struct{}) {
			r := bufio.NewReader(c)
			var sb strings.Builder
			for range 3 * 2 * 2 { // AUTH pw, PING, ROLE: header+args lines
				line, err := r.ReadString('\n')
				if err != nil {
					break
				}
				sb.WriteString(line)
				if strings.HasSuffix(sb.String(), "ROLE\r\n") {
					break
				}
			}
			got <- sb.String()
			c.Write([]byte("+OK\r\n+PONG\r\n*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n"))
		})
		res := probeCtx(t, NewRedis(RedisOptions{Password: "pw", Role: "master"}), addr, time.Second)
		checkResult(t, res, OK, 0, "")
		want := "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nROLE\r\n"
		if s := <-got; s != want {
			t.Errorf("server received %q, want %q", s, want)
		}
	})
}
