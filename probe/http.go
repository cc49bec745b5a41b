package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"syscall"
	"time"
)

// HTTPOptions configures an HTTP/1.x check. The zero value is useful: it
// sends "GET / HTTP/1.1" and expects a 2xx or 3xx status within 16384 bytes.
type HTTPOptions struct {
	// Send is the raw request to send, as is. If "" the request is built:
	// "GET {URI} HTTP/1.1\r\nHost: {Host or addr}\r\nUser-Agent: hcproxy-check\r\n
	// Accept: */*\r\nConnection: close\r\n\r\n". If Send's method is HEAD the
	// response is read without a body.
	Send string
	// URI is the request target of the built request; default "/".
	URI string
	// Host is the Host header of the built request; default the probed addr.
	Host string
	// StatusOK reports whether a final status code passes; nil means 2xx or 3xx.
	StatusOK func(code int) bool
	// ExpectBody, if not "", must occur in the decoded body.
	ExpectBody string
	// BodyRegexp, if not nil, must match the decoded body.
	BodyRegexp *regexp.Regexp
	// MaxResponse is the most bytes the whole response (status line, headers
	// and body) may have; <= 0 means 16384 (DefaultMaxResponse).
	MaxResponse int64
}

// httpProber is the Prober NewHTTP returns. It is immutable after NewHTTP.
type httpProber struct {
	opt     HTTPOptions
	req     []byte // the request, or nil to build it per probe (Host from addr)
	head    bool   // the request is HEAD: the response has no body
	max     int64
	invalid string // non-empty if the options cannot make a valid request
}

var _ Prober = (*httpProber)(nil)

// aLongTimeAgo is a deadline in the past, set to abort I/O on cancellation.
var aLongTimeAgo = time.Unix(1, 0)

// NewHTTP returns a Prober that sends one HTTP/1.x request and judges the
// response: transport first, then framing, then status, then body.
func NewHTTP(o HTTPOptions) Prober {
	p := &httpProber{opt: o, max: o.MaxResponse}
	if p.max <= 0 {
		p.max = DefaultMaxResponse
	}
	if p.opt.URI == "" {
		p.opt.URI = "/"
	}
	switch {
	case o.Send != "":
		p.req = []byte(o.Send)
		method, _, _ := strings.Cut(o.Send, " ")
		p.head = method == "HEAD"
	case !validRequestPart(p.opt.URI):
		p.invalid = fmt.Sprintf("invalid URI %q", p.opt.URI)
	case o.Host != "" && !validRequestPart(o.Host):
		p.invalid = fmt.Sprintf("invalid Host %q", o.Host)
	case o.Host != "":
		p.req = buildRequest(p.opt.URI, o.Host)
	}
	return p
}

// buildRequest returns the default request for uri and host.
func buildRequest(uri, host string) []byte {
	return []byte("GET " + uri + " HTTP/1.1\r\nHost: " + host +
		"\r\nUser-Agent: hcproxy-check\r\nAccept: */*\r\nConnection: close\r\n\r\n")
}

// validRequestPart reports whether s can go into a request line or header
// without breaking its framing (no spaces or control characters).
func validRequestPart(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return s != ""
}

// Probe implements Prober.
func (p *httpProber) Probe(ctx context.Context, addr string) (res Result) {
	start := time.Now()
	defer recoverInto(&res, start)
	if p.invalid != "" {
		return finish(Result{Reason: Internal, Detail: p.invalid}, start)
	}
	req := p.req
	if req == nil {
		if !validRequestPart(addr) {
			return finish(Result{Reason: Internal, Detail: fmt.Sprintf("invalid Host %q", addr)}, start)
		}
		req = buildRequest(p.opt.URI, addr)
	}
	conn, res := dial(ctx, addr)
	if conn == nil {
		return finish(res, start)
	}
	defer conn.Close()
	// Cancelling ctx aborts the exchange; AfterFunc runs only if ctx ends first.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	return finish(p.exchange(conn, req), start)
}

// exchange writes req on conn and judges the response.
func (p *httpProber) exchange(conn net.Conn, req []byte) Result {
	if _, err := conn.Write(req); err != nil {
		if isTimeout(err) {
			return Result{Reason: Timeout, Detail: "timeout sending the request"}
		}
		return Result{Reason: SendError, Detail: err.Error()}
	}
	status, body, n, err := parseResponse(conn, p.max, p.head)
	res := Result{Status: status, Bytes: int(n)}
	if err != nil {
		res.Reason, res.Detail = p.readFailure(err, n)
		return res
	}
	if p.opt.StatusOK == nil {
		if status < 200 || status > 399 {
			res.Reason, res.Detail = BadStatus, fmt.Sprintf("status %d, want 2xx,3xx", status)
			return res
		}
	} else if !p.opt.StatusOK(status) {
		res.Reason, res.Detail = BadStatus, fmt.Sprintf("status %d, not in expect_status", status)
		return res
	}
	if p.opt.ExpectBody != "" && !bytes.Contains(body, []byte(p.opt.ExpectBody)) {
		res.Reason, res.Detail = BodyMismatch, fmt.Sprintf("body does not contain %q", truncate(p.opt.ExpectBody, 64))
		return res
	}
	if p.opt.BodyRegexp != nil && !p.opt.BodyRegexp.Match(body) {
		res.Reason, res.Detail = BodyMismatch, fmt.Sprintf("body does not match %q", truncate(p.opt.BodyRegexp.String(), 64))
		return res
	}
	return res
}

// readFailure classifies an error of parseResponse: transport errors first,
// then framing.
func (p *httpProber) readFailure(err error, n int64) (Reason, string) {
	var me *malformedError
	switch {
	case isTimeout(err):
		return Timeout, fmt.Sprintf("no complete response in time (%d bytes read)", n)
	case errors.Is(err, syscall.ECONNRESET):
		return EarlyClose, fmt.Sprintf("connection reset after %d bytes", n)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return EarlyClose, fmt.Sprintf("connection closed after %d bytes", n)
	case errors.Is(err, ErrTooLarge):
		return TooLarge, fmt.Sprintf("response larger than %d bytes", p.max)
	case errors.As(err, &me):
		return BadResponse, me.what
	case errors.Is(err, ErrEarlyClose):
		return EarlyClose, err.Error()
	default:
		return Internal, err.Error()
	}
}
