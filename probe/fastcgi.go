package probe

import (
	"bytes"
	"context"
	"encoding/binary"
	"regexp"
	"strconv"

	"hcproxy/internal/h1"
)

// FastCGIOptions configures a fastcgi check: one responder request, as
// tengine's check module and php-fpm's ping.path/ping.response expect.
type FastCGIOptions struct {
	// URI is the script path (SCRIPT_NAME, REQUEST_URI, and SCRIPT_FILENAME
	// unless set); "" means "/ping". A "?query" part becomes QUERY_STRING.
	URI string
	// ScriptFilename is SCRIPT_FILENAME; "" means the path of URI.
	ScriptFilename string
	// StatusOK reports whether the CGI status passes; nil means 2xx or 3xx.
	// A response without a Status header is 200.
	StatusOK func(code int) bool
	// ExpectBody, if not "", must occur in the body (php-fpm answers its
	// ping path with "pong").
	ExpectBody string
	// BodyRegexp, if not nil, must match the body.
	BodyRegexp *regexp.Regexp
	// MaxResponse bounds all records read; <= 0 means DefaultMaxResponse.
	MaxResponse int64
}

// FastCGI record types.
const (
	fcgiBeginRequest = 1
	fcgiEndRequest   = 3
	fcgiParams       = 4
	fcgiStdin        = 5
	fcgiStdout       = 6
	fcgiStderr       = 7
)

// fastcgiProber is the Prober NewFastCGI returns.
type fastcgiProber struct {
	opt HTTPOptions // the judgement of the CGI response
	req []byte
	max int64
}

var _ Prober = (*fastcgiProber)(nil)

// NewFastCGI returns a Prober that sends one FastCGI GET request for URI and
// judges the CGI response like an HTTP check: protocol status, then the
// Status header, then the body.
func NewFastCGI(o FastCGIOptions) Prober {
	if o.URI == "" {
		o.URI = "/ping"
	}
	path, query, _ := bytes.Cut([]byte(o.URI), []byte("?"))
	if o.ScriptFilename == "" {
		o.ScriptFilename = string(path)
	}
	var params []byte
	for _, kv := range [][2]string{
		{"GATEWAY_INTERFACE", "CGI/1.1"}, {"SERVER_PROTOCOL", "HTTP/1.1"}, {"SERVER_SOFTWARE", "hcproxy-check"},
		{"REQUEST_METHOD", "GET"}, {"SCRIPT_NAME", string(path)}, {"SCRIPT_FILENAME", o.ScriptFilename},
		{"REQUEST_URI", o.URI}, {"DOCUMENT_URI", string(path)}, {"QUERY_STRING", string(query)},
		{"REMOTE_ADDR", "127.0.0.1"}, {"SERVER_NAME", "localhost"},
	} {
		params = fcgiPair(params, kv[0], kv[1])
	}
	var req []byte
	req = fcgiRecord(req, fcgiBeginRequest, []byte{0, 1, 0, 0, 0, 0, 0, 0}) // responder, close after
	req = fcgiRecord(req, fcgiParams, params)
	req = fcgiRecord(req, fcgiParams, nil)
	req = fcgiRecord(req, fcgiStdin, nil)
	p := &fastcgiProber{req: req, max: o.MaxResponse,
		opt: HTTPOptions{StatusOK: o.StatusOK, ExpectBody: o.ExpectBody, BodyRegexp: o.BodyRegexp}}
	if p.max <= 0 {
		p.max = DefaultMaxResponse
	}
	return p
}

// fcgiRecord appends one record (request id 1); content is at most 65535
// bytes (the parameters the probe builds are far smaller).
func fcgiRecord(b []byte, typ byte, content []byte) []byte {
	b = append(b, 1, typ, 0, 1, byte(len(content)>>8), byte(len(content)), 0, 0)
	return append(b, content...)
}

// fcgiPair appends one name-value pair in FastCGI's length encoding.
func fcgiPair(b []byte, name, value string) []byte {
	for _, n := range []int{len(name), len(value)} {
		if n < 128 {
			b = append(b, byte(n))
		} else {
			b = binary.BigEndian.AppendUint32(b, uint32(n)|1<<31)
		}
	}
	return append(append(b, name...), value...)
}

// Probe implements Prober.
func (p *fastcgiProber) Probe(ctx context.Context, addr string) Result {
	return sessionProbe(ctx, addr, p.max, p.exchange)
}

func (p *fastcgiProber) exchange(s *session) Result {
	if err := s.write(p.req); err != nil {
		return sendFailure(err, "the FastCGI request")
	}
	stdout, stderr, err := readFastCGI(s)
	if err != nil {
		return readFailure(err, "the FastCGI response", s.read(), s.max)
	}
	status, body, err := ParseCGIResponse(stdout)
	res := Result{Bytes: s.read(), Status: status}
	if err != nil {
		res.Reason, res.Detail = BadResponse, "CGI response: "+err.Error()
		return res
	}
	res = judgeHTTP(&p.opt, res, body, false)
	if res.Reason != OK && len(stderr) > 0 {
		res.Detail += "; stderr: " + string(printableOnly(stderr))
	}
	return res
}

// readFastCGI reads records of request 1 up to END_REQUEST and returns the
// STDOUT stream and the first bytes of STDERR. A protocol status other than
// REQUEST_COMPLETE is an error.
func readFastCGI(s *session) (stdout, stderr []byte, err error) {
	for {
		var hdr [8]byte
		if err := s.full(hdr[:]); err != nil {
			return nil, nil, err
		}
		typ, id := hdr[1], binary.BigEndian.Uint16(hdr[2:4])
		n := int(binary.BigEndian.Uint16(hdr[4:6])) + int(hdr[6])
		if hdr[0] != 1 {
			return nil, nil, protoError("FastCGI version %d", hdr[0])
		}
		if int64(n) > s.max-int64(s.read())+int64(s.r.Buffered()) {
			return nil, nil, ErrTooLarge
		}
		rec := make([]byte, n)
		if err := s.full(rec); err != nil {
			return nil, nil, err
		}
		content := rec[:binary.BigEndian.Uint16(hdr[4:6])]
		if id != 1 {
			continue // management records (id 0) and strays
		}
		switch typ {
		case fcgiStdout:
			stdout = append(stdout, content...)
		case fcgiStderr:
			if len(stderr) < 80 {
				stderr = append(stderr, content[:min(len(content), 80-len(stderr))]...)
			}
		case fcgiEndRequest:
			if len(content) < 5 {
				return nil, nil, protoError("short END_REQUEST")
			}
			if ps := content[4]; ps != 0 {
				return nil, nil, protoError("protocol status %d (%s)", ps, fcgiProtocolStatus(ps))
			}
			return stdout, stderr, nil
		default:
			return nil, nil, protoError("unexpected record type %d", typ)
		}
	}
}

func fcgiProtocolStatus(ps byte) string {
	switch ps {
	case 1:
		return "cannot multiplex"
	case 2:
		return "overloaded"
	case 3:
		return "unknown role"
	}
	return "unknown"
}

// ParseCGIResponse splits a CGI response (RFC 3875 6.2) into its status
// (from a "Status: NNN" header; 200 without one, 302 with only Location) and
// body. Header lines end in "\n" or "\r\n". It never reads outside out.
func ParseCGIResponse(out []byte) (status int, body []byte, err error) {
	status = 200
	location, explicit := false, false
	for {
		i := bytes.IndexByte(out, '\n')
		if i < 0 {
			return 0, nil, protoError("CGI headers not terminated")
		}
		line := bytes.TrimSuffix(out[:i], []byte("\r"))
		out = out[i+1:]
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !h1.IsToken(name) {
			return 0, nil, protoError("bad CGI header line %q", clip(line, 30))
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Status")):
			if len(value) < 3 {
				return 0, nil, protoError("bad CGI Status %q", clip(value, 20))
			}
			n, err := strconv.Atoi(string(value[:3]))
			if err != nil || n < 100 || n > 599 {
				return 0, nil, protoError("bad CGI Status %q", clip(value, 20))
			}
			status, explicit = n, true
		case bytes.EqualFold(name, []byte("Location")):
			location = true
		}
	}
	if location && !explicit {
		status = 302
	}
	return status, out, nil
}
