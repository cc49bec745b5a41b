package probe

import (
	"encoding/binary"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startMariaDB initialises a data directory and runs mariadbd from the
// Debian package (mariadb-server) on a free loopback port, or skips.
func startMariaDB(t *testing.T) string {
	t.Helper()
	server := findServer(t, "mariadb-server", "mariadbd", "mysqld")
	install, err := exec.LookPath("mariadb-install-db")
	if err != nil {
		if install, err = exec.LookPath("mysql_install_db"); err != nil {
			t.Skip("SKIP: mariadb-install-db is not installed (apt-get install mariadb-server)")
		}
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cmd := asServiceUser(t, "mysql", dir, install, "--no-defaults", "--datadir="+data, "--auth-root-authentication-method=normal",
		"--skip-test-db", "--skip-name-resolve")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startServer(t, asServiceUser(t, "mysql", dir, server, "--no-defaults", "--datadir="+data, "--port="+strconv.Itoa(port),
		"--bind-address=127.0.0.1", "--socket="+filepath.Join(dir, "sock"), "--pid-file="+filepath.Join(dir, "pid"),
		"--skip-log-bin", "--innodb-buffer-pool-size=16M", "--skip-name-resolve", "--log-error="+filepath.Join(dir, "err")), addr, mysqlAnswers)
	return addr
}

func TestMySQLRealServer(t *testing.T) {
	addr := startMariaDB(t)
	tests := []struct {
		name       string
		opt        MySQLOptions
		want       Reason
		wantDetail string
	}{
		{"handshake", MySQLOptions{}, OK, ""},
		{"login as an unknown user", MySQLOptions{User: "nosuchuser"}, AuthFailed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := probeCtx(t, NewMySQL(tt.opt), addr, 5*time.Second)
			checkResult(t, got, tt.want, 0, tt.wantDetail)
		})
	}
}

// myPacket frames a server packet for the fakes.
func myPacket(seq byte, payload string) string {
	n := len(payload)
	return string([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}) + payload
}

// myHandshake is a protocol 10 handshake payload with protocol 4.1 capabilities.
func myHandshake() string {
	b := []byte{10}
	b = append(b, "10.11.6-MariaDB\x00"...)
	b = binary.LittleEndian.AppendUint32(b, 7)
	b = append(b, "abcdefgh\x00"...)
	b = binary.LittleEndian.AppendUint16(b, 0xf7ff) // capabilities low
	b = append(b, 45, 2, 0)
	b = binary.LittleEndian.AppendUint16(b, 0x81ff) // capabilities high
	b = append(b, 21, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	b = append(b, "ijklmnopqrst\x00mysql_native_password\x00"...)
	return string(b)
}

func TestMySQLFakes(t *testing.T) {
	tests := []struct {
		name       string
		reply      string
		opt        MySQLOptions
		max        int64
		want       Reason
		wantDetail string
	}{
		{"handshake", myPacket(0, myHandshake()), MySQLOptions{}, 0, OK, ""},
		{"too many connections", myPacket(0, "\xff\x10\x04Too many connections"), MySQLOptions{}, 0, ServerError, "1040: Too many connections"},
		{"host blocked", myPacket(0, "\xff\x69\x04Host '10.0.0.1' is blocked"), MySQLOptions{}, 0, ServerError, "1129"},
		{"protocol 9", myPacket(0, "\x09old\x00"), MySQLOptions{}, 0, BadResponse, "protocol version 9"},
		{"garbage", "SSH-2.0-OpenSSH_9.6\r\n", MySQLOptions{}, 0, BadResponse, "packet sequence 45"},
		{"oversized packet", "\xff\xff\x00\x00" + strings.Repeat("x", 200), MySQLOptions{}, 100, TooLarge, "more than 100"},
		{"truncated handshake", myPacket(0, "\x0a5.7\x00\x01\x02"), MySQLOptions{}, 0, BadResponse, "truncated"},
		{"half packet|close", "\x50\x00\x00\x00\x0a5.7", MySQLOptions{}, 0, EarlyClose, "handshake packet"},
		{"login OK", myPacket(0, myHandshake()) + myPacket(2, "\x00\x00\x00\x02\x00\x00\x00"), MySQLOptions{User: "hc"}, 0, OK, ""},
		{"login denied", myPacket(0, myHandshake()) + myPacket(2, "\xff\x15\x04#28000Access denied for user 'hc'"), MySQLOptions{User: "hc"}, 0, AuthFailed, "1045 (28000)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, handler := tt.reply, replyWith(tt.reply)
			if strings.HasSuffix(tt.name, "|close") {
				handler = func(c net.Conn, _ <-chan struct{}) { c.Write([]byte(reply)) }
			}
			got := probeCtx(t, NewMySQL(MySQLOptions{User: tt.opt.User, MaxResponse: tt.max}), serveConns(t, handler), 500*time.Millisecond)
			checkResult(t, got, tt.want, 0, tt.wantDetail)
		})
	}
	t.Run("stall", func(t *testing.T) {
		got := probeCtx(t, NewMySQL(MySQLOptions{}), serveConns(t, stall), 300*time.Millisecond)
		checkResult(t, got, Timeout, 0, "handshake packet")
	})
}
