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

	"hcproxy/internal/h1"
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
	// Headers are extra request headers of the built request, in order,
	// each {name, value}; names and values must not contain CR or LF.
	Headers [][2]string
	// ExpectHeader, if not nil, is a header the final response must have.
	ExpectHeader *HeaderMatch
	// KeepAlive keeps the connection open between checks (ProbeConn): the built request has
	// no "Connection: close", and a response that leaves the connection reusable leaves it in
	// the Conn for the next check. Probe (without a Conn) closes it after the check.
	KeepAlive bool
}

// HeaderMatch is an expected response header: Name (case-insensitive) with a
// value that contains Value ("" means any value).
type HeaderMatch struct{ Name, Value string }

func (h *HeaderMatch) matches(name, value []byte) bool {
	return strings.EqualFold(string(name), h.Name) && strings.Contains(string(value), h.Value)
}

func (h *HeaderMatch) String() string {
	if h.Value == "" {
		return h.Name
	}
	return h.Name + ": " + h.Value
}

// httpProber is the Prober NewHTTP returns. It is immutable after NewHTTP.
type httpProber struct {
	opt     HTTPOptions
	req     []byte // the request, or nil to build it per probe (Host from addr)
	head    bool   // the request is HEAD: the response has no body
	max     int64
	invalid string // non-empty if the options cannot make a valid request
}

var _ ConnProber = (*httpProber)(nil)

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
	case !validHeaders(o.Headers):
		p.invalid = "invalid header name or value"
	case o.Host != "":
		p.req = buildRequest(p.opt.URI, o.Host, o.Headers, o.KeepAlive)
	}
	return p
}

// buildRequest returns the default request for uri and host, with extra
// headers; it asks the server to close the connection unless keep.
func buildRequest(uri, host string, headers [][2]string, keep bool) []byte {
	var b strings.Builder
	b.WriteString("GET " + uri + " HTTP/1.1\r\nHost: " + host +
		"\r\nUser-Agent: hcproxy-check\r\nAccept: */*\r\n")
	if !keep {
		b.WriteString("Connection: close\r\n")
	}
	for _, h := range headers {
		b.WriteString(h[0] + ": " + h[1] + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// validHeaders reports whether every header can go into a request as is.
func validHeaders(hs [][2]string) bool {
	for _, h := range hs {
		if !h1.IsToken([]byte(h[0])) || !h1.ValidValue([]byte(h[1])) {
			return false
		}
	}
	return true
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
		req = buildRequest(p.opt.URI, addr, p.opt.Headers, false)
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
	status, body, n, found, err := parseResponseHeader(conn, p.max, p.head, p.opt.ExpectHeader)
	res := Result{Status: status, Bytes: int(n)}
	if err != nil {
		res.Reason, res.Detail = p.readFailure(err, n)
		return res
	}
	return judgeHTTP(&p.opt, res, body, found)
}

// judgeHTTP judges a complete response after the transport and framing
// passed: status, then expect_header, then body.
func judgeHTTP(o *HTTPOptions, res Result, body []byte, found bool) Result {
	status := res.Status
	if o.StatusOK == nil {
		if status < 200 || status > 399 {
			res.Reason, res.Detail = BadStatus, fmt.Sprintf("status %d, want 2xx,3xx", status)
			return res
		}
	} else if !o.StatusOK(status) {
		res.Reason, res.Detail = BadStatus, fmt.Sprintf("status %d, not in expect_status", status)
		return res
	}
	if o.ExpectHeader != nil && !found {
		res.Reason, res.Detail = Unexpected, fmt.Sprintf("no response header %q", truncate(o.ExpectHeader.String(), 64))
		return res
	}
	if o.ExpectBody != "" && !bytes.Contains(body, []byte(o.ExpectBody)) {
		res.Reason, res.Detail = BodyMismatch, fmt.Sprintf("body does not contain %q", truncate(o.ExpectBody, 64))
		return res
	}
	if o.BodyRegexp != nil && !o.BodyRegexp.Match(body) {
		res.Reason, res.Detail = BodyMismatch, fmt.Sprintf("body does not match %q", truncate(o.BodyRegexp.String(), 64))
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

// ProbeConn implements ConnProber: the check over c's kept connection when there is one (and
// the check keeps connections alive), re-dialled once if the server had closed it; see Conn.
func (p *httpProber) ProbeConn(ctx context.Context, addr string, deadline time.Time, c *Conn) (res Result) {
	start := time.Now()
	defer recoverInto(&res, start)
	if p.invalid != "" {
		return finish(Result{Reason: Internal, Detail: p.invalid}, start)
	}
	req := p.req
	if req == nil {
		if c.reqAddr != addr || c.req == nil {
			if !validRequestPart(addr) {
				return finish(Result{Reason: Internal, Detail: fmt.Sprintf("invalid Host %q", addr)}, start)
			}
			c.req, c.reqAddr = buildRequest(p.opt.URI, addr, p.opt.Headers, p.opt.KeepAlive), addr
		}
		req = c.req
	}
	ownerDeadline, _ := c.owner()
	conn, epoch := c.take()
	var held time.Duration
	if !p.opt.KeepAlive && conn != nil { // the option changed under a kept connection
		conn.Close()
		conn = nil
	}
	for {
		reused := conn != nil
		if !reused {
			nc, r := dialBy(ctx, addr, deadline, !ownerDeadline)
			if nc == nil {
				c.done(nil, epoch, false)
				return finish(r, start)
			}
			if !c.use(nc, epoch) {
				c.done(nil, epoch, false)
				return finish(Result{Reason: Timeout, Detail: "check cut short"}, start)
			}
			conn = nc
		} else if !ownerDeadline {
			if err := conn.SetDeadline(deadline); err != nil {
				conn.Close()
				conn = nil
				continue
			}
		}
		h0 := heldBack(conn)
		res, wrote := p.exchangeKeep(conn, req, c)
		held += heldBack(conn) - h0
		if reused && res.Reason != OK && res.Bytes == 0 && (!wrote || res.Reason == EarlyClose) && ctx.Err() == nil && !expired(c) {
			// The server closed the kept connection before this request: it was not
			// processed, so it is sent once more on a new one.
			conn.Close()
			conn = nil
			continue
		}
		c.done(conn, epoch, p.opt.KeepAlive && res.OK() && c.ks.reusable)
		res = finish(res, start)
		res.RTT -= held // the answers' wait at the gate (tcpConn) is not the server's
		return res
	}
}

// exchangeKeep is exchange with c's buffers; wrote reports that the request was written.
func (p *httpProber) exchangeKeep(conn net.Conn, req []byte, c *Conn) (Result, bool) {
	c.ks.reusable = false
	if _, err := conn.Write(req); err != nil {
		if isTimeout(err) {
			return Result{Reason: Timeout, Detail: "timeout sending the request"}, false
		}
		return Result{Reason: SendError, Detail: err.Error()}, false
	}
	status, body, n, found, err := parseResponseKeep(conn, p.max, p.head, p.opt.ExpectHeader, &c.ks)
	res := Result{Status: status, Bytes: int(n)}
	if err != nil {
		res.Reason, res.Detail = p.readFailure(err, n)
		return res, true
	}
	return judgeHTTP(&p.opt, res, body, found), true
}

// expired reports whether the probe in flight over c was ended by its owner.
func expired(c *Conn) bool {
	_, e := c.owner()
	return e
}

// dialBy is dial with a deadline as a time and ctx only for cancellation; the connection keeps
// the deadline for its I/O if set.
func dialBy(ctx context.Context, addr string, deadline time.Time, set bool) (net.Conn, Result) {
	conn, err := connect(ctx, addr, deadline, gateFrom(ctx))
	if err != nil {
		return nil, Result{Reason: dialReason(ctx, err), Detail: err.Error()}
	}
	if !set {
		return conn, Result{}
	}
	if err := conn.SetDeadline(deadline); err != nil {
		conn.Close()
		return nil, Result{Reason: Internal, Detail: "set deadline: " + err.Error()}
	}
	return conn, Result{}
}
