package probe

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
)

// PostgresOptions configures a postgres check.
type PostgresOptions struct {
	// User is the startup user; "" means "hcproxy".
	User string
	// Database is the startup database; "" means the user's name.
	Database string
	// Password, if not "", makes the check log in (cleartext, md5 or
	// SCRAM-SHA-256, as the server asks) and wait for ReadyForQuery; a
	// rejected login fails with AuthFailed. If "", any authentication
	// request, and an authentication or unknown-database error, shows the
	// server is alive and the check passes. It never appears in a Result.
	Password string
	// MaxResponse bounds all messages read; <= 0 means DefaultMaxResponse.
	MaxResponse int64
}

// postgresProber is the Prober NewPostgres returns.
type postgresProber struct {
	opt     PostgresOptions
	startup []byte
}

var _ Prober = (*postgresProber)(nil)

// NewPostgres returns a Prober that sends a StartupMessage and judges the
// answer as described at PostgresOptions.
func NewPostgres(o PostgresOptions) Prober {
	if o.User == "" {
		o.User = "hcproxy"
	}
	if o.Database == "" {
		o.Database = o.User
	}
	b := []byte{0, 0, 0, 0, 0, 3, 0, 0} // length, protocol 3.0
	for _, kv := range [][2]string{{"user", o.User}, {"database", o.Database}, {"application_name", "hcproxy-check"}} {
		b = append(append(append(append(b, kv[0]...), 0), kv[1]...), 0)
	}
	b = append(b, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	return &postgresProber{opt: o, startup: b}
}

// Probe implements Prober.
func (p *postgresProber) Probe(ctx context.Context, addr string) Result {
	return sessionProbe(ctx, addr, p.opt.MaxResponse, func(s *session) Result {
		res := p.exchange(s)
		res.Detail = scrub(res.Detail, p.opt.Password)
		return res
	})
}

// pgMaxIterations bounds the SCRAM iteration count a server may ask for, so a
// hostile peer cannot make a probe burn CPU (PostgreSQL uses 4096).
const pgMaxIterations = 1 << 20

func (p *postgresProber) exchange(s *session) Result {
	if err := s.write(p.startup); err != nil {
		return sendFailure(err, "the startup message")
	}
	var scram *scramClient
	for {
		typ, payload, err := readPGMessage(s)
		if err != nil {
			return readFailure(err, "the startup reply", s.read(), s.max)
		}
		switch typ {
		case 'E':
			return p.pgError(ParsePGError(payload), s)
		case 'Z': // ReadyForQuery: logged in
			s.write([]byte{'X', 0, 0, 0, 4}) // Terminate
			return Result{Bytes: s.read()}
		case 'R':
		default:
			continue // ParameterStatus, BackendKeyData, NoticeResponse, NegotiateProtocolVersion
		}
		if len(payload) < 4 {
			return Result{Reason: BadResponse, Bytes: s.read(), Detail: "short authentication message"}
		}
		code, data := binary.BigEndian.Uint32(payload), payload[4:]
		if code == 0 { // AuthenticationOk
			continue
		}
		if p.opt.Password == "" {
			return Result{Bytes: s.read()} // it asks for a password: alive
		}
		var reply []byte
		switch code {
		case 3: // cleartext
			reply = pgMessage('p', append([]byte(p.opt.Password), 0))
		case 5: // md5 with a 4-byte salt
			if len(data) != 4 {
				return Result{Reason: BadResponse, Bytes: s.read(), Detail: "md5 request without a 4-byte salt"}
			}
			reply = pgMessage('p', append([]byte(pgMD5(p.opt.User, p.opt.Password, data)), 0))
		case 10: // SASL: mechanism list
			if !bytes.Contains(data, []byte("SCRAM-SHA-256\x00")) {
				return Result{Reason: AuthFailed, Bytes: s.read(), Detail: "server offers no SCRAM-SHA-256"}
			}
			scram = newSCRAM(p.opt.Password)
			first := scram.first()
			body := append([]byte("SCRAM-SHA-256\x00"), binary.BigEndian.AppendUint32(nil, uint32(len(first)))...)
			reply = pgMessage('p', append(body, first...))
		case 11: // SASLContinue
			if scram == nil {
				return Result{Reason: BadResponse, Bytes: s.read(), Detail: "SASLContinue without SASL"}
			}
			final, err := scram.final(data, pgMaxIterations)
			if err != nil {
				return Result{Reason: BadResponse, Bytes: s.read(), Detail: err.Error()}
			}
			reply = pgMessage('p', final)
		case 12: // SASLFinal
			if scram == nil || !scram.verify(data) {
				return Result{Reason: AuthFailed, Bytes: s.read(), Detail: "server's SCRAM signature does not verify"}
			}
			continue
		default:
			return Result{Reason: AuthFailed, Bytes: s.read(), Detail: fmt.Sprintf("unsupported authentication method %d", code)}
		}
		if err := s.write(reply); err != nil {
			return sendFailure(err, "the password")
		}
	}
}

// pgError judges an ErrorResponse.
func (p *postgresProber) pgError(e PGError, s *session) Result {
	res := Result{Bytes: s.read(), Detail: truncate(e.Error(), 110)}
	alive := len(e.Code) == 5 && (e.Code[:2] == "28" || e.Code == "3D000") // auth, unknown database
	switch {
	case alive && p.opt.Password == "":
		res.Detail = ""
	case len(e.Code) == 5 && e.Code[:2] == "28":
		res.Reason = AuthFailed
	default:
		res.Reason = ServerError
	}
	return res
}

// pgMessage frames a typed frontend message.
func pgMessage(typ byte, payload []byte) []byte {
	b := append([]byte{typ}, binary.BigEndian.AppendUint32(nil, uint32(len(payload)+4))...)
	return append(b, payload...)
}

// readPGMessage reads one backend message of the startup phase. A length beyond the session's
// budget is ErrTooLarge before any of the payload is read.
func readPGMessage(s *session) (byte, []byte, error) {
	var hdr [5]byte
	if err := s.full(hdr[:]); err != nil {
		return 0, nil, err
	}
	// Only these types can come before ReadyForQuery: anything else is not
	// a PostgreSQL server, whatever its length field says.
	if !bytes.ContainsRune([]byte("REKSZNv"), rune(hdr[0])) {
		return 0, nil, protoError("message type %q during startup", hdr[0])
	}
	n := int64(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 {
		return 0, nil, protoError("message length %d", n)
	}
	if n-4 > s.max-int64(s.read())+int64(s.r.Buffered()) {
		return 0, nil, ErrTooLarge
	}
	payload := make([]byte, n-4)
	if err := s.full(payload); err != nil {
		return 0, nil, err
	}
	return hdr[0], payload, nil
}

// PGError is a backend ErrorResponse: severity, SQLSTATE code and message.
type PGError struct{ Severity, Code, Message string }

func (e PGError) Error() string { return fmt.Sprintf("%s %s: %s", e.Severity, e.Code, e.Message) }

// ParsePGError parses the fields of an ErrorResponse payload: pairs of a
// field type byte and a NUL-terminated string, ended by a zero byte.
// Malformed input gives what could be parsed; it never reads outside
// payload.
func ParsePGError(payload []byte) PGError {
	var e PGError
	for len(payload) > 1 {
		typ := payload[0]
		i := bytes.IndexByte(payload[1:], 0)
		if i < 0 {
			break
		}
		v := string(printableOnly(payload[1 : 1+i]))
		switch typ {
		case 'S':
			e.Severity = v
		case 'C':
			e.Code = v
		case 'M':
			e.Message = truncate(v, 100)
		}
		payload = payload[2+i:]
	}
	return e
}
