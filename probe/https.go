package probe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// httpsProber is the Prober NewHTTPS returns: the HTTP check over TLS, with
// HTTP/2 when the server offers it by ALPN. net/http does the HTTP part (its
// HTTP/2 client runs goroutines inside net/http, which end with the
// connection); this file owns the dial, the handshake and every bound.
type httpsProber struct {
	opt     HTTPOptions
	cfg     *tls.Config
	minDays int
	max     int64
}

var _ ConnProber = (*httpsProber)(nil)

// appSlack is what an HTTP/2 or TLS exchange may read beyond max_response
// after the handshake: record and frame headers, HPACK, SETTINGS.
const appSlack = 8 << 10

// NewHTTPS returns a Prober that makes the HTTP check (o, but not o.Send)
// over TLS (t): HTTP/2 if the server selects h2 by ALPN, else HTTP/1.1. The
// certificate is judged as by NewTLS, after the response passed.
func NewHTTPS(o HTTPOptions, t TLSOptions) (Prober, error) {
	if o.Send != "" {
		return nil, errors.New("probe: https checks build their request; send is not supported")
	}
	cfg, err := t.config("h2", "http/1.1")
	if err != nil {
		return nil, err
	}
	p := &httpsProber{opt: o, cfg: cfg, minDays: t.CertMinDays, max: o.MaxResponse}
	if p.max <= 0 {
		p.max = DefaultMaxResponse
	}
	if p.opt.URI == "" {
		p.opt.URI = "/"
	}
	return p, nil
}

// httpsConn is what the dial hook learned; net/http may dial on its own
// goroutine, so it is guarded.
type httpsConn struct {
	mu   sync.Mutex
	res  Result // the dial or handshake failure, if any
	cc   *countConn
	st   tls.ConnectionState
	dead bool // the dial failed
}

// errDialFailed marks a failure recorded in httpsConn.res.
var errDialFailed = errors.New("probe: dial failed")

// Probe implements Prober.
func (p *httpsProber) Probe(ctx context.Context, addr string) (res Result) {
	start := time.Now()
	defer recoverInto(&res, start)
	if !validRequestPart(p.opt.URI) || (p.opt.Host != "" && !validRequestPart(p.opt.Host)) || !validHeaders(p.opt.Headers) {
		return finish(Result{Reason: Internal, Detail: "invalid URI, Host or header"}, start)
	}
	hc := &httpsConn{}
	tr := &http.Transport{
		// The hook dials under the probe's ctx, so a dial still running
		// when the probe returns is aborted by the caller's cancel.
		DialTLSContext: func(context.Context, string, string) (net.Conn, error) {
			return hc.dial(ctx, addr, p.cfg, p.max)
		},
		ForceAttemptHTTP2:      true,
		DisableKeepAlives:      true,
		DisableCompression:     true,
		MaxResponseHeaderBytes: p.max,
	}
	defer tr.CloseIdleConnections()
	req, err := p.request(ctx, addr)
	if err != nil {
		return finish(Result{Reason: Internal, Detail: err.Error()}, start)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return finish(hc.failure(ctx, err), start)
	}
	defer resp.Body.Close()
	return finish(p.judge(ctx, resp, hc, 0), start)
}

// request makes the check's request to addr under ctx.
func (p *httpsProber) request(ctx context.Context, addr string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+addr+p.opt.URI, nil)
	if err != nil {
		return nil, err
	}
	req.Host = addr
	if p.opt.Host != "" {
		req.Host = p.opt.Host
	}
	req.Header.Set("User-Agent", "hcproxy-check")
	req.Header.Set("Accept", "*/*")
	for _, h := range p.opt.Headers {
		req.Header.Add(h[0], h[1])
	}
	return req, nil
}

// judge reads resp's body (bounded) and judges the response, then the certificate; base is
// what the connection had read before this request.
func (p *httpsProber) judge(ctx context.Context, resp *http.Response, hc *httpsConn, base int) Result {
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.max+1))
	res := Result{Status: resp.StatusCode, Bytes: hc.read() - base}
	switch {
	case err != nil:
		r := hc.failure(ctx, err)
		r.Status, r.Bytes = resp.StatusCode, max(r.Bytes-base, 0)
		return r
	case int64(len(body)) > p.max:
		res.Reason, res.Detail = TooLarge, fmt.Sprintf("body larger than %d bytes", p.max)
		return res
	}
	res = judgeHTTP(&p.opt, res, body, p.opt.ExpectHeader != nil && hasHeader(resp.Header, p.opt.ExpectHeader))
	hc.mu.Lock()
	judgeCert(&res, hc.st, p.minDays, time.Now())
	hc.mu.Unlock()
	return res
}

// ProbeConn implements ConnProber. With KeepAlive, c keeps a transport whose connection
// (HTTP/2 or HTTP/1.1) carries the next checks; a failed check closes it. Without, it is Probe.
func (p *httpsProber) ProbeConn(ctx context.Context, addr string, deadline time.Time, c *Conn) (res Result) {
	if !p.opt.KeepAlive {
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		return p.Probe(ctx, addr)
	}
	start := time.Now()
	defer recoverInto(&res, start)
	if !validRequestPart(p.opt.URI) || (p.opt.Host != "" && !validRequestPart(p.opt.Host)) || !validHeaders(p.opt.Headers) {
		return finish(Result{Reason: Internal, Detail: "invalid URI, Host or header"}, start)
	}
	k := c.keptTransport(addr, p.cfg, p.max, false)
	resp, hc, base, done, err := c.roundTripKept(ctx, k, deadline, p.max, func(rctx context.Context) (*http.Request, error) {
		return p.request(rctx, addr)
	})
	if err != nil {
		r := hc.failure(ctx, err)
		r.Bytes = max(r.Bytes-base, 0)
		return finish(r, start)
	}
	res = p.judge(ctx, resp, hc, base)
	resp.Body.Close()
	done(res.OK())
	return finish(res, start)
}

// dial connects to addr and, if cfg is not nil, makes the TLS handshake,
// recording the outcome in hc. After the handshake the peer may send max
// bytes plus framing overhead.
func (hc *httpsConn) dial(ctx context.Context, addr string, cfg *tls.Config, max int64) (net.Conn, error) {
	conn, res := dial(ctx, addr)
	if conn == nil {
		hc.fail(res)
		return nil, errDialFailed
	}
	cc := newCountConn(conn, max+handshakeSlack)
	var out net.Conn = cc
	var st tls.ConnectionState
	if cfg != nil {
		tc, res := handshake(ctx, cc, addr, cfg)
		if tc == nil {
			res.Bytes = cc.read()
			cc.Close()
			hc.fail(res)
			return nil, errDialFailed
		}
		out, st = tc, tc.ConnectionState()
	}
	// The handshake is not part of the response: the budget starts again.
	cc.allow(max + appSlack)
	hc.mu.Lock()
	hc.cc, hc.st = cc, st
	hc.mu.Unlock()
	return out, nil
}

func (hc *httpsConn) fail(r Result) {
	hc.mu.Lock()
	hc.res, hc.dead = r, true
	hc.mu.Unlock()
}

// read is the number of bytes read from the peer, handshake included.
func (hc *httpsConn) read() int {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.cc == nil {
		return hc.res.Bytes
	}
	return hc.cc.read()
}

// failure classifies an error of the round trip or the body read.
func (hc *httpsConn) failure(ctx context.Context, err error) Result {
	hc.mu.Lock()
	dead, res, cc := hc.dead, hc.res, hc.cc
	hc.mu.Unlock()
	if dead && errors.Is(err, errDialFailed) {
		return res
	}
	n := 0
	if cc != nil {
		n = cc.read()
	}
	res = Result{Bytes: n}
	switch {
	case cc != nil && cc.over.Load(), errors.Is(err, ErrTooLarge):
		res.Reason, res.Detail = TooLarge, "response larger than max_response"
	case isTimeout(err), ctx.Err() != nil:
		res.Reason, res.Detail = Timeout, fmt.Sprintf("no complete response in time (%d bytes read)", n)
	case errors.Is(err, syscall.ECONNRESET):
		res.Reason, res.Detail = EarlyClose, fmt.Sprintf("connection reset after %d bytes", n)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		res.Reason, res.Detail = EarlyClose, fmt.Sprintf("connection closed after %d bytes", n)
	default:
		// net/http's own protocol errors (malformed status line, headers over
		// MaxResponseHeaderBytes, HTTP/2 stream errors) have no exported
		// type: everything else the server sent wrong is bad_response.
		res.Reason, res.Detail = BadResponse, err.Error()
	}
	return res
}

// hasHeader reports whether h has the header m wants.
func hasHeader(h http.Header, m *HeaderMatch) bool {
	for _, v := range h.Values(m.Name) {
		if strings.Contains(v, m.Value) {
			return true
		}
	}
	return false
}
