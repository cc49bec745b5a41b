package probe

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
)

// MySQLOptions configures a mysql check.
type MySQLOptions struct {
	// User, if not "", logs in as this user without a password after the
	// handshake and then sends COM_QUIT (as HAProxy's mysql-check with a
	// user), so the server does not count the check as an aborted connect;
	// the user must exist and need no password. "" only reads the
	// server's initial handshake packet.
	User string
	// MaxResponse bounds the packets read; <= 0 means DefaultMaxResponse.
	MaxResponse int64
}

// mysqlProber is the Prober NewMySQL returns.
type mysqlProber struct{ opt MySQLOptions }

var _ Prober = (*mysqlProber)(nil)

// NewMySQL returns a Prober that reads a MySQL/MariaDB server's initial
// handshake packet: protocol 10 passes; an error packet (too many
// connections, host blocked) fails with ServerError and its message.
func NewMySQL(o MySQLOptions) Prober { return &mysqlProber{opt: o} }

// MySQLError is an error packet of the server.
type MySQLError struct {
	Code     uint16
	SQLState string // "" for pre-4.1 style packets (as sent before the handshake)
	Message  string
}

func (e *MySQLError) Error() string {
	if e.SQLState == "" {
		return fmt.Sprintf("mysql error %d: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("mysql error %d (%s): %s", e.Code, e.SQLState, e.Message)
}

// Probe implements Prober.
func (p *mysqlProber) Probe(ctx context.Context, addr string) Result {
	return sessionProbe(ctx, addr, p.opt.MaxResponse, p.exchange)
}

func (p *mysqlProber) exchange(s *session) Result {
	payload, seq, err := readMySQLPacket(s, 0)
	if err != nil {
		return readFailure(err, "the handshake packet", s.read(), s.max)
	}
	_, caps, err := ParseMySQLHandshake(payload)
	if res, failed := mysqlFailure(err, s); failed {
		return res
	}
	if p.opt.User == "" {
		return Result{Bytes: s.read()}
	}
	if caps&mysqlProtocol41 == 0 {
		return Result{Reason: BadResponse, Bytes: s.read(), Detail: "server does not speak protocol 4.1"}
	}
	if err := s.write(mysqlLogin(p.opt.User, seq+1)); err != nil {
		return sendFailure(err, "the login packet")
	}
	payload, _, err = readMySQLPacket(s, seq+2)
	if err != nil {
		return readFailure(err, "the login reply", s.read(), s.max)
	}
	switch {
	case len(payload) > 0 && payload[0] == 0x00:
		s.write([]byte{1, 0, 0, 0, 0x01}) // COM_QUIT; the server closes
		return Result{Bytes: s.read()}
	case len(payload) > 0 && payload[0] == 0xff:
		me := parseMySQLError(payload)
		reason := ServerError
		if me.Code == 1045 || me.Code == 1044 || me.Code == 1698 { // access denied
			reason = AuthFailed
		}
		return Result{Reason: reason, Bytes: s.read(), Detail: truncate(me.Error(), 110)}
	case len(payload) > 0 && payload[0] == 0xfe:
		return Result{Reason: AuthFailed, Bytes: s.read(), Detail: "server asks for a password (auth switch)"}
	}
	return Result{Reason: BadResponse, Bytes: s.read(), Detail: "login reply is neither OK nor error"}
}

// mysqlFailure turns a ParseMySQLHandshake error into a Result.
func mysqlFailure(err error, s *session) (Result, bool) {
	if err == nil {
		return Result{}, false
	}
	var me *MySQLError
	if errors.As(err, &me) {
		return Result{Reason: ServerError, Bytes: s.read(), Detail: truncate(me.Error(), 110)}, true
	}
	r := readFailure(err, "the handshake packet", s.read(), s.max)
	return r, true
}

const (
	mysqlProtocol41     = 0x00000200
	mysqlSecureConn     = 0x00008000
	mysqlPluginAuth     = 0x00080000
	mysqlLongPassword   = 0x00000001
	mysqlMaxPacket      = 1<<24 - 1
	mysqlUTF8MB4Collate = 45
)

// mysqlLogin builds a HandshakeResponse41 for user with an empty password.
func mysqlLogin(user string, seq byte) []byte {
	var b []byte
	b = binary.LittleEndian.AppendUint32(b, mysqlProtocol41|mysqlSecureConn|mysqlLongPassword|mysqlPluginAuth)
	b = binary.LittleEndian.AppendUint32(b, mysqlMaxPacket)
	b = append(b, mysqlUTF8MB4Collate)
	b = append(b, make([]byte, 23)...)
	b = append(b, user...)
	b = append(b, 0, 0) // NUL, then an empty auth response (length 0)
	b = append(b, "mysql_native_password"...)
	b = append(b, 0)
	hdr := []byte{byte(len(b)), byte(len(b) >> 8), byte(len(b) >> 16), seq}
	return append(hdr, b...)
}

// readMySQLPacket reads one packet, which must have sequence number
// wantSeq, and returns its payload and sequence number. A length beyond the session's budget is ErrTooLarge before any of
// the payload is read.
func readMySQLPacket(s *session, wantSeq byte) ([]byte, byte, error) {
	var hdr [4]byte
	if err := s.full(hdr[:]); err != nil {
		return nil, 0, err
	}
	if hdr[3] != wantSeq {
		return nil, 0, protoError("packet sequence %d, want %d", hdr[3], wantSeq)
	}
	n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
	if int64(n) > s.max-int64(s.read())+int64(s.r.Buffered()) {
		return nil, 0, ErrTooLarge
	}
	payload := make([]byte, n)
	if err := s.full(payload); err != nil {
		return nil, 0, err
	}
	return payload, hdr[3], nil
}

// ParseMySQLHandshake parses the payload of a server's first packet. It
// returns the server version and capability flags of a protocol 10
// handshake, a *MySQLError for an error packet, or an error wrapping
// ErrMalformed. It never reads outside payload.
func ParseMySQLHandshake(payload []byte) (version string, caps uint32, err error) {
	if len(payload) == 0 {
		return "", 0, protoError("empty handshake packet")
	}
	switch payload[0] {
	case 0xff:
		return "", 0, parseMySQLError(payload)
	case 10:
	default:
		return "", 0, protoError("handshake protocol version %d, want 10", payload[0])
	}
	rest := payload[1:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return "", 0, protoError("server version not terminated")
	}
	version = string(printableOnly(rest[:i]))
	rest = rest[i+1:]
	// connection id (4), auth data part 1 (8), filler (1), capabilities low (2)
	if len(rest) < 15 {
		return "", 0, protoError("handshake packet truncated")
	}
	caps = uint32(binary.LittleEndian.Uint16(rest[13:15]))
	if len(rest) >= 20 { // charset (1), status (2), capabilities high (2)
		caps |= uint32(binary.LittleEndian.Uint16(rest[18:20])) << 16
	}
	return version, caps, nil
}

// parseMySQLError parses an error packet (payload[0] == 0xff); after the
// handshake it carries "#" and a five-character SQL state.
func parseMySQLError(payload []byte) *MySQLError {
	e := &MySQLError{}
	rest := payload[1:]
	if len(rest) >= 2 {
		e.Code = binary.LittleEndian.Uint16(rest)
		rest = rest[2:]
	}
	if len(rest) >= 6 && rest[0] == '#' {
		e.SQLState = string(printableOnly(rest[1:6]))
		rest = rest[6:]
	}
	e.Message = truncate(string(printableOnly(rest)), 100)
	return e
}
