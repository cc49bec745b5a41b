package probe

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// RedisOptions configures a redis check.
type RedisOptions struct {
	// Password, if not "", is sent with AUTH first. It never appears in a
	// Result.
	Password string
	// Role, if not "", is the role ROLE must report ("master" or "slave").
	Role string
	// MaxResponse bounds all replies together; <= 0 means DefaultMaxResponse.
	MaxResponse int64
}

// redisProber is the Prober NewRedis returns.
type redisProber struct {
	opt RedisOptions
	req []byte // the pipelined commands
}

var _ Prober = (*redisProber)(nil)

// NewRedis returns a Prober that sends PING (after AUTH when a password is
// set, then ROLE when a role is set) and passes on +PONG and the role.
func NewRedis(o RedisOptions) Prober {
	var req []byte
	if o.Password != "" {
		req = respCommand(req, "AUTH", o.Password)
	}
	req = respCommand(req, "PING")
	if o.Role != "" {
		req = respCommand(req, "ROLE")
	}
	return &redisProber{opt: o, req: req}
}

// respCommand appends a command as a RESP array of bulk strings.
func respCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, "\r\n"...)
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, "\r\n"...)
		b = append(b, a...)
		b = append(b, "\r\n"...)
	}
	return b
}

// Probe implements Prober.
func (p *redisProber) Probe(ctx context.Context, addr string) Result {
	return sessionProbe(ctx, addr, p.opt.MaxResponse, func(s *session) Result {
		res := p.exchange(s)
		res.Detail = scrub(res.Detail, p.opt.Password)
		return res
	})
}

func (p *redisProber) exchange(s *session) Result {
	if err := s.write(p.req); err != nil {
		return sendFailure(err, "the redis commands")
	}
	if p.opt.Password != "" {
		v, err := readRESP(s.r, 0)
		if err != nil {
			return readFailure(err, "the AUTH reply", s.read(), s.max)
		}
		if v.kind == '-' {
			return Result{Reason: AuthFailed, Bytes: s.read(), Detail: "AUTH: " + truncate(v.str, 80)}
		}
	}
	v, err := readRESP(s.r, 0)
	if err != nil {
		return readFailure(err, "the PING reply", s.read(), s.max)
	}
	switch {
	case v.kind == '-' && (strings.HasPrefix(v.str, "NOAUTH") || strings.HasPrefix(v.str, "WRONGPASS")):
		return Result{Reason: AuthFailed, Bytes: s.read(), Detail: truncate(v.str, 100)}
	case v.kind == '-':
		return Result{Reason: ServerError, Bytes: s.read(), Detail: truncate(v.str, 100)}
	case v.kind != '+' || v.str != "PONG":
		return Result{Reason: Unexpected, Bytes: s.read(), Detail: "PING answered " + v.String()}
	}
	if p.opt.Role != "" {
		v, err := readRESP(s.r, 0)
		if err != nil {
			return readFailure(err, "the ROLE reply", s.read(), s.max)
		}
		if v.kind == '-' {
			return Result{Reason: ServerError, Bytes: s.read(), Detail: "ROLE: " + truncate(v.str, 80)}
		}
		if v.kind != '*' || len(v.elems) == 0 || v.elems[0].kind != '$' {
			return Result{Reason: BadResponse, Bytes: s.read(), Detail: "ROLE answered " + v.String()}
		}
		if role := v.elems[0].str; role != p.opt.Role {
			return Result{Reason: Unexpected, Bytes: s.read(), Detail: fmt.Sprintf("role %q, want %q", truncate(role, 20), p.opt.Role)}
		}
	}
	return Result{Bytes: s.read()}
}

// scrub removes secret from detail (a server could echo it back).
func scrub(detail, secret string) string {
	if secret == "" {
		return detail
	}
	return strings.ReplaceAll(detail, secret, "***")
}

// respValue is one RESP2/RESP3 reply: kind is the type byte ('+', '-', ':',
// '$', '*', or a RESP3 type); str holds simple, error and bulk strings; elems
// an array's items. A null bulk or array has null set.
type respValue struct {
	kind  byte
	str   string
	num   int64
	null  bool
	elems []respValue
}

// String renders v briefly for details.
func (v respValue) String() string {
	switch v.kind {
	case '*':
		return fmt.Sprintf("an array of %d", len(v.elems))
	case ':':
		return "integer " + strconv.FormatInt(v.num, 10)
	}
	return fmt.Sprintf("%c%q", v.kind, truncate(v.str, 40))
}

// maxRESPDepth bounds array nesting.
const maxRESPDepth = 4

// readRESP reads one reply from r. Sizes are not trusted: a bulk string is
// read through r, so a length beyond the budget ends in ErrTooLarge, never a
// large allocation beyond what was actually received.
func readRESP(r *bufio.Reader, depth int) (respValue, error) {
	line, err := readCRLF(r)
	if err != nil {
		return respValue{}, err
	}
	if len(line) == 0 {
		return respValue{}, protoError("empty RESP line")
	}
	v := respValue{kind: line[0]}
	rest := line[1:]
	switch v.kind {
	case '+', '-':
		v.str = string(printableOnly(rest))
	case ':':
		n, err := strconv.ParseInt(string(rest), 10, 64)
		if err != nil {
			return respValue{}, protoError("bad RESP integer")
		}
		v.num = n
	case '$':
		n, err := strconv.ParseInt(string(rest), 10, 64)
		switch {
		case err != nil || n < -1:
			return respValue{}, protoError("bad RESP bulk length")
		case n == -1:
			v.null = true
			return v, nil
		}
		var b bytes.Buffer
		if _, err := io.CopyN(&b, r, n); err != nil {
			return respValue{}, err
		}
		if crlf, err := readCRLF(r); err != nil || len(crlf) != 0 {
			if err != nil {
				return respValue{}, err
			}
			return respValue{}, protoError("RESP bulk string longer than its length")
		}
		v.str = b.String()
	case '*':
		n, err := strconv.ParseInt(string(rest), 10, 64)
		switch {
		case err != nil || n < -1:
			return respValue{}, protoError("bad RESP array length")
		case n == -1:
			v.null = true
			return v, nil
		case depth >= maxRESPDepth:
			return respValue{}, protoError("RESP arrays nested too deep")
		}
		for range n {
			e, err := readRESP(r, depth+1)
			if err != nil {
				return respValue{}, err
			}
			v.elems = append(v.elems, e)
		}
	default:
		return respValue{}, protoError("unknown RESP type %q", v.kind)
	}
	return v, nil
}

// readCRLF reads a line that must end in "\r\n" and returns it without.
func readCRLF(r *bufio.Reader) ([]byte, error) {
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, protoError("RESP line not ended by CRLF")
	}
	return line[:len(line)-2], nil
}
