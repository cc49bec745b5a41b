package probe

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startPostgres initialises a cluster in a temporary directory (superuser
// "pgadmin" with password "pg-s3cret", SCRAM over TCP) and runs postgres from
// the Debian package on a free loopback port, or skips.
func startPostgres(t *testing.T) string {
	t.Helper()
	initdb := findServer(t, "postgresql", "initdb")
	postgres := filepath.Join(filepath.Dir(initdb), "postgres")
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	pwfile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwfile, []byte("pg-s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := asServiceUser(t, "postgres", dir, initdb, "-D", data, "-U", "pgadmin", "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	// md5 for one (non-existent) role, to exercise the md5 exchange.
	hba := filepath.Join(data, "pg_hba.conf")
	old, _ := os.ReadFile(hba)
	os.WriteFile(hba, append([]byte("host all md5user 127.0.0.1/32 md5\n"), old...), 0o600)
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	startServer(t, asServiceUser(t, "postgres", dir, postgres, "-D", data, "-p", strconv.Itoa(port),
		"-k", dir, "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"), addr, postgresAnswers)
	return addr
}

func TestPostgresRealServer(t *testing.T) {
	addr := startPostgres(t)
	tests := []struct {
		name       string
		opt        PostgresOptions
		want       Reason
		wantDetail string
	}{
		{"no credentials: asked to authenticate means alive", PostgresOptions{}, OK, ""},
		{"SCRAM login", PostgresOptions{User: "pgadmin", Password: "pg-s3cret", Database: "postgres"}, OK, ""},
		{"wrong password", PostgresOptions{User: "pgadmin", Password: "nope-pw", Database: "postgres"}, AuthFailed, "28P01"},
		{"unknown database", PostgresOptions{User: "pgadmin", Password: "pg-s3cret", Database: "nosuchdb"}, ServerError, "3D000"},
		{"md5 exchange, unknown role", PostgresOptions{User: "md5user", Password: "whatever-pw"}, AuthFailed, "28P01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := probeCtx(t, NewPostgres(tt.opt), addr, 5*time.Second)
			checkResult(t, got, tt.want, 0, tt.wantDetail)
			if tt.opt.Password != "" && strings.Contains(got.Detail, tt.opt.Password) {
				t.Errorf("detail %q shows the password", got.Detail)
			}
		})
	}
}

// pgMsg frames a backend message for the fakes.
func pgMsg(typ byte, payload string) string {
	return string(typ) + string(binary.BigEndian.AppendUint32(nil, uint32(len(payload)+4))) + payload
}

func TestPostgresFakes(t *testing.T) {
	authOK := pgMsg('R', "\x00\x00\x00\x00")
	tests := []struct {
		name       string
		reply      string
		opt        PostgresOptions
		max        int64
		want       Reason
		wantDetail string
	}{
		{"trust: ready for query", authOK + pgMsg('S', "a\x00b\x00") + pgMsg('Z', "I"), PostgresOptions{Password: "pw"}, 0, OK, ""},
		{"starting up", pgMsg('E', "SFATAL\x00C57P03\x00Mthe database system is starting up\x00\x00"), PostgresOptions{}, 0, ServerError, "57P03"},
		{"too many connections", pgMsg('E', "SFATAL\x00C53300\x00Msorry, too many clients already\x00\x00"), PostgresOptions{}, 0, ServerError, "too many clients"},
		{"no hba entry is alive without credentials", pgMsg('E', "SFATAL\x00C28000\x00Mno pg_hba.conf entry\x00\x00"), PostgresOptions{}, 0, OK, ""},
		{"garbage", "HTTP/1.1 400 Bad Request\r\n\r\n", PostgresOptions{}, 0, BadResponse, "message type 'H'"},
		{"half message|close", "R\x00\x00\x00\x08\x00", PostgresOptions{}, 0, EarlyClose, "startup reply"},
		{"huge length", "R\x7f\xff\xff\xff", PostgresOptions{}, 100, TooLarge, "more than 100"},
		{"unsupported method", pgMsg('R', "\x00\x00\x00\x07"), PostgresOptions{Password: "pw"}, 0, AuthFailed, "method 7"},
		{"SCRAM with a nonce that does not extend ours", pgMsg('R', "\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00") + pgMsg('R', "\x00\x00\x00\x0br=x,s=c2FsdA==,i=999999999"), PostgresOptions{Password: "pw"}, 0, BadResponse, "nonce"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			handler := replyWith(tt.reply)
			if strings.HasSuffix(tt.name, "|close") {
				handler = replyThenClose(tt.reply)
			}
			got := probeCtx(t, NewPostgres(PostgresOptions{Password: tt.opt.Password, MaxResponse: tt.max}), serveConns(t, handler), 500*time.Millisecond)
			checkResult(t, got, tt.want, 0, tt.wantDetail)
		})
	}
	t.Run("stall", func(t *testing.T) {
		got := probeCtx(t, NewPostgres(PostgresOptions{}), serveConns(t, stall), 300*time.Millisecond)
		checkResult(t, got, Timeout, 0, "startup reply")
	})
}
