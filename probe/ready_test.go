package probe

// Readiness of the real servers the peer tests start: a server is ready when it answers its
// protocol, not when it accepts TCP (PostgreSQL accepts while it still answers "the database
// system is starting up"; MariaDB and php-fpm may accept before they serve). Each check here
// is written from the protocol, independently of the prober under test, so a broken prober
// fails its test instead of the start-up.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// redisAnswers sends PING and wants +PONG (or -NOAUTH from a server with a password); -LOADING
// and the like mean not yet.
func redisAnswers(c net.Conn) error {
	if _, err := io.WriteString(c, "PING\r\n"); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
		return nil
	}
	return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
}

// postgresAnswers sends a startup message (protocol 3.0) and wants an authentication request
// ('R'); an error response such as 57P03 "the database system is starting up" means not yet.
func postgresAnswers(c net.Conn) error {
	body := []byte{0, 3, 0, 0} // protocol 3.0
	body = append(body, "user\x00pgadmin\x00database\x00postgres\x00\x00"...)
	msg := binary.BigEndian.AppendUint32(nil, uint32(4+len(body)))
	if _, err := c.Write(append(msg, body...)); err != nil {
		return err
	}
	var head [5]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return err
	}
	n := int(binary.BigEndian.Uint32(head[1:]))
	if n < 4 || n > 1<<16 {
		return fmt.Errorf("message %q of %d bytes", head[0], n)
	}
	rest := make([]byte, n-4)
	if _, err := io.ReadFull(c, rest); err != nil {
		return err
	}
	switch head[0] {
	case 'R':
		return nil
	case 'E': // fields: a type byte, a C string; S severity, C code, M message
		var parts []string
		for _, f := range bytes.Split(rest, []byte{0}) {
			if len(f) > 1 && (f[0] == 'C' || f[0] == 'M') {
				parts = append(parts, string(f[1:]))
			}
		}
		return fmt.Errorf("startup answered an error: %s", strings.Join(parts, " "))
	}
	return fmt.Errorf("startup answered message %q", head[0])
}

// mysqlAnswers wants the server's greeting, a handshake packet (protocol version 10), not an
// error packet (0xff).
func mysqlAnswers(c net.Conn) error {
	var head [4]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return err
	}
	n := int(head[0]) | int(head[1])<<8 | int(head[2])<<16
	if n == 0 {
		return errors.New("empty greeting")
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c, p); err != nil {
		return err
	}
	switch p[0] {
	case 10:
		return nil
	case 0xff:
		return fmt.Errorf("greeting is an error: %q", p[min(len(p), 3):])
	}
	return fmt.Errorf("greeting has protocol version %d", p[0])
}

// fastcgiAnswers makes a FastCGI request for /ping (php-fpm's ping.path) and wants "pong" on
// stdout before the end of the request.
func fastcgiAnswers(c net.Conn) error {
	record := func(b []byte, typ byte, content []byte) []byte {
		b = append(b, 1, typ, 0, 1, byte(len(content)>>8), byte(len(content)), 0, 0)
		return append(b, content...)
	}
	var params []byte
	for _, kv := range [][2]string{{"REQUEST_METHOD", "GET"}, {"SCRIPT_NAME", "/ping"}, {"SCRIPT_FILENAME", "/ping"}, {"REQUEST_URI", "/ping"}} {
		params = append(params, byte(len(kv[0])), byte(len(kv[1])))
		params = append(params, kv[0]+kv[1]...)
	}
	req := record(nil, 1, []byte{0, 1, 0, 0, 0, 0, 0, 0}) // BEGIN_REQUEST, responder
	req = record(req, 4, params)                          // PARAMS
	req = record(req, 4, nil)
	req = record(req, 5, nil) // empty STDIN
	if _, err := c.Write(req); err != nil {
		return err
	}
	var stdout []byte
	for {
		var h [8]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return fmt.Errorf("after %q: %w", stdout, err)
		}
		content := make([]byte, (int(h[4])<<8|int(h[5]))+int(h[6])) // content, then padding
		if _, err := io.ReadFull(c, content); err != nil {
			return err
		}
		switch h[1] {
		case 6: // STDOUT
			stdout = append(stdout, content[:len(content)-int(h[6])]...)
		case 3: // END_REQUEST
			if !bytes.Contains(stdout, []byte("pong")) {
				return fmt.Errorf("/ping answered %q", stdout)
			}
			return nil
		}
	}
}

// A server that accepts but does not serve yet is not ready: the checks above refuse the
// answers of a server still starting (TestPostgresRealServer failed 3 of 4 runs on a busy
// machine when accepting TCP counted as ready), and accept a serving one's.
func TestReadinessMeansAnswering(t *testing.T) {
	fields := "SFATAL\x00C57P03\x00Mthe database system is starting up\x00\x00"
	pgErr := "E" + string(binary.BigEndian.AppendUint32(nil, uint32(4+len(fields)))) + fields
	pgAuth := "R\x00\x00\x00\x0c\x00\x00\x00\x05salt"
	for _, tc := range []struct {
		name    string
		answers func(net.Conn) error
		reply   string
		first   bool // the server speaks first (MariaDB)
		ready   bool
	}{
		{"postgres starting up", postgresAnswers, pgErr, false, false},
		{"postgres asks for a password", postgresAnswers, pgAuth, false, true},
		{"postgres accepts and closes", postgresAnswers, "", false, false},
		{"redis loading", redisAnswers, "-LOADING Redis is loading the dataset in memory\r\n", false, false},
		{"redis PONG", redisAnswers, "+PONG\r\n", false, true},
		{"mariadb error greeting", mysqlAnswers, "\x17\x00\x00\x00\xff\x10\x04Too many connections", true, false},
		{"mariadb handshake", mysqlAnswers, "\x05\x00\x00\x00\x0a5.5\x00", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handle := replyThenClose(tc.reply)
			if tc.first {
				handle = replyWith(tc.reply)
			}
			addr := serveConns(t, handle)
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(3 * time.Second))
			if err := tc.answers(c); (err == nil) != tc.ready {
				t.Errorf("ready %v (err %v), want %v", err == nil, err, tc.ready)
			}
		})
	}
}
