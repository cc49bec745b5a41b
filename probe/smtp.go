package probe

import (
	"context"
	"fmt"
)

// SMTPOptions configures an smtp check.
type SMTPOptions struct {
	// EHLO, if not "", is the domain sent with EHLO after the banner; the
	// check then also needs a 250 reply. "" only reads the banner.
	EHLO string
	// MaxResponse bounds all replies together; <= 0 means DefaultMaxResponse.
	MaxResponse int64
}

// smtpProber is the Prober NewSMTP returns.
type smtpProber struct{ opt SMTPOptions }

var _ Prober = (*smtpProber)(nil)

// NewSMTP returns a Prober that reads the 220 banner and, with EHLO set,
// expects 250 to EHLO; it then sends QUIT. A 4xx or 5xx reply fails with
// ServerError and the reply text, any other code with Unexpected.
func NewSMTP(o SMTPOptions) Prober { return &smtpProber{opt: o} }

// Probe implements Prober.
func (p *smtpProber) Probe(ctx context.Context, addr string) Result {
	return sessionProbe(ctx, addr, p.opt.MaxResponse, p.exchange)
}

func (p *smtpProber) exchange(s *session) Result {
	if r, ok := expectSMTP(s, "the banner", 220); !ok {
		return r
	}
	if p.opt.EHLO != "" {
		if err := s.write([]byte("EHLO " + p.opt.EHLO + "\r\n")); err != nil {
			return sendFailure(err, "EHLO")
		}
		if r, ok := expectSMTP(s, "the EHLO reply", 250); !ok {
			return r
		}
	}
	s.write([]byte("QUIT\r\n")) // courtesy; the verdict is in
	return Result{Bytes: s.read()}
}

// expectSMTP reads one reply and reports whether its code is want.
func expectSMTP(s *session, what string, want int) (Result, bool) {
	code, text, err := readSMTPReply(s)
	if err != nil {
		return readFailure(err, what, s.read(), s.max), false
	}
	res := Result{Bytes: s.read()}
	switch {
	case code == want:
		return res, true
	case code >= 400:
		res.Reason = ServerError
	default:
		res.Reason = Unexpected
	}
	res.Detail = fmt.Sprintf("%s: %d %s (want %d)", what, code, truncate(text, 80), want)
	return res, false
}

// readSMTPReply reads one reply (RFC 5321 4.2): lines "NNN-text" then a
// last "NNN text" or "NNN", all with the same code. It returns the code and
// the first line's text.
func readSMTPReply(s *session) (int, string, error) {
	code, first := 0, ""
	for i := 0; ; i++ {
		line, err := s.line()
		if err != nil {
			return 0, "", err
		}
		c, more, text, err := ParseSMTPLine(line)
		if err != nil {
			return 0, "", err
		}
		if i == 0 {
			code, first = c, text
		} else if c != code {
			return 0, "", protoError("reply code changed from %d to %d", code, c)
		}
		if !more {
			return code, first, nil
		}
	}
}

// ParseSMTPLine parses one reply line (without its line ending): a
// three-digit code 200..599, then "-" (more lines follow), " " or nothing,
// then text. It returns an error wrapping ErrMalformed for anything else.
func ParseSMTPLine(line []byte) (code int, more bool, text string, err error) {
	if len(line) < 3 || line[0] < '2' || line[0] > '5' || !isDigit(line[1]) || !isDigit(line[2]) {
		return 0, false, "", protoError("not an SMTP reply line: %q", clip(line, 20))
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	if len(line) == 3 {
		return code, false, "", nil
	}
	switch line[3] {
	case '-':
		more = true
	case ' ':
	default:
		return 0, false, "", protoError("bad separator after reply code %d", code)
	}
	return code, more, string(printableOnly(line[4:])), nil
}
