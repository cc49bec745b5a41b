package upstream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"

	"hcproxy/config"
	"hcproxy/internal/h1"
	"hcproxy/shm"
)

// Proxy forwards HTTP/1.1 requests to the servers of one upstream.
type Proxy struct {
	name   string
	policy *Policy
	rp     *httputil.ReverseProxy
	log    *slog.Logger
	onReq  func()
	o      Options
}

// Options configure a Proxy. The zero value of each field is usable.
type Options struct {
	ConnectTimeout time.Duration // dialing an upstream server; 0 = no bound
	ReadTimeout    time.Duration // waiting for the upstream's response header; 0 = no bound
	Log            *slog.Logger  // nil = slog.Default()
	// SendTimeout bounds each write of a request (head and body) to an upstream server, from its
	// start to its end, not the whole request (nginx's proxy_send_timeout): a server that takes
	// none of it for that long fails the try as a timeout. 0 = no bound.
	SendTimeout time.Duration
	// ClientSendTimeout bounds each write of a response to the client the same way (nginx's
	// send_timeout): a client that takes none of it for that long is disconnected, one that
	// keeps reading never is. An upgraded (101) connection has no such bound. 0 = no bound.
	ClientSendTimeout time.Duration
	// OnRequest, when not nil, is called once per request (the worker counts its requests).
	OnRequest func()
	// Balancer names the balancer (default round_robin), Hash its key for "hash", AllDown
	// what to do when no server is available ("fail", the default, or "any").
	Balancer, AllDown string
	Hash              config.HashKey
	// Retry says when a request is tried again on another server.
	Retry RetryPolicy
	// MaxFails failures (as RetryPolicy.On defines them) within FailTimeout eject a server for
	// FailTimeout, counted across all workers; 0 disables passive ejection.
	MaxFails    int
	FailTimeout time.Duration
	// Eject5xx consecutive 5xx responses eject a server for FailTimeout; 0 disables it.
	Eject5xx int
	// OnEject, when not nil, is called when this worker's accounting ejects a server.
	OnEject func(s *Server, why string)
	// AccessLog, when not nil, gets one entry per request.
	AccessLog *AccessLog
	// RequestIDHeader carries a request id (kept from the client, else made up) to the upstream
	// and back; "" for none.
	RequestIDHeader string
	// Forwarded is "x-forwarded" (X-Forwarded-For/-Host/-Proto, the default when ""),
	// "forwarded" (RFC 7239), "both" or "none".
	Forwarded string
	// Via adds "Via: 1.1 hcproxy" to requests and responses.
	Via bool
	// Keepalive is the idle connections kept per server (0 = net/http's default of 2).
	Keepalive int
	// ClientBodyTimeout bounds each read of a request body from the client, from its start (the
	// fast engine bounds them by client_idle_timeout the same way; nginx's client_body_timeout):
	// a client that sends none of its body for that long has its connection closed, one that
	// keeps sending never does. 0 = no bound.
	ClientBodyTimeout time.Duration
}

// NewProxy returns a proxy for the upstream name over servers.
func NewProxy(name string, servers []*Server, o Options) *Proxy {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	p := &Proxy{name: name, log: o.Log, onReq: o.OnRequest, o: o}
	p.policy = NewPolicy(name, servers, &p.o)
	dialer := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	dial := dialer.DialContext
	if o.SendTimeout > 0 {
		dial = sendTimeoutDial(dial, o.SendTimeout)
	}
	base := &http.Transport{
		DialContext:           dial,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   max(o.Keepalive, 1),
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: o.ReadTimeout,
		ExpectContinueTimeout: time.Second,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			a := pr.In.Context().Value(attemptKey{}).(*attempts)
			pr.SetURL(&url.URL{Scheme: "http", Host: a.server.Address})
			pr.Out.Host = pr.In.Host
			p.forwardHeaders(pr)
			if o.RequestIDHeader != "" {
				pr.Out.Header.Set(o.RequestIDHeader, a.requestID)
			}
			if o.Via {
				pr.Out.Header.Add("Via", "1.1 hcproxy")
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			a, _ := resp.Request.Context().Value(attemptKey{}).(*attempts)
			if a != nil && o.RequestIDHeader != "" {
				resp.Header.Set(o.RequestIDHeader, a.requestID)
			}
			if o.Via {
				resp.Header.Add("Via", "1.1 hcproxy")
			}
			return nil
		},
		Transport:     &retrier{base: base, policy: p.policy, o: o},
		FlushInterval: -1, // stream: flush every write, never hold a response back
		ErrorHandler:  p.upstreamError,
		ErrorLog:      slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
	return p
}

// ServeHTTP picks a server and forwards the request to it (and to others, as the retry policy
// allows); 503 when none is available. A request whose target or Host internal/h1 refuses, or
// whose chunk size is over the limit (see Listener), is answered 400 and the connection closed;
// one whose body fails is answered as the client's fault (see ClientError), never the server's.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.onReq != nil {
		p.onReq()
	}
	a := &attempts{in: r}
	var key string
	if p.o.Balancer == "hash" {
		key = KeyOf(p.o.Hash, r)
	}
	a.tries.Reset(key, Idempotent(r.Method), time.Now())
	if d := p.o.ClientSendTimeout; d > 0 {
		cw := newClientWriter(w, d)
		defer cw.done()
		w = cw
	}
	if h := p.o.RequestIDHeader; h != "" {
		if a.requestID = r.Header.Get(h); a.requestID == "" || len(a.requestID) > 200 {
			a.requestID = newRequestID()
		}
	}
	rec := &recorder{ResponseWriter: w}
	w = rec
	defer p.finish(r, a, rec)
	if r.Body != nil && r.Body != http.NoBody {
		a.body = newClientBody(r.Body, w, p.o.ClientBodyTimeout)
		defer a.body.done()
	}
	// The connection checks the request's head and framing first with the fast engine's rules
	// (and the body bytes already read), then the target and Host are checked.
	err := beginFollow(r)
	var auth string
	if err == nil {
		auth, err = checkTarget(r)
	}
	if err != nil {
		p.log.Debug("request refused", "upstream", p.name, "target", r.RequestURI, "err", err)
		status := http.StatusBadRequest
		var he *h1.Error
		if errors.As(err, &he) {
			status = he.Status // h1's answer, as the fast engine gives it (400, 417, 431, 501)
		}
		w.Header().Set("Connection", "close")
		p.refuse(w, a, status, strconv.Itoa(status)+" "+http.StatusText(status))
		return
	}
	r = r.WithContext(context.WithValue(r.Context(), attemptKey{}, a))
	if auth != "" {
		r.Host = auth // absolute-form: the target's authority is the Host (RFC 9112 section 3.2.2)
	}
	if a.body != nil {
		r.Body = a.body
	}
	a.in = r
	s := p.policy.Pick(&a.tries)
	if s == nil {
		p.refuse(w, a, http.StatusServiceUnavailable, http.StatusText(http.StatusServiceUnavailable)) // names nothing internal, as the fast engine
		return
	}
	a.server = s
	p.rp.ServeHTTP(w, r)
}

// refuse answers a request the proxy does not forward.
func (p *Proxy) refuse(w http.ResponseWriter, a *attempts, status int, msg string) {
	if p.o.RequestIDHeader != "" {
		w.Header().Set(p.o.RequestIDHeader, a.requestID)
	}
	http.Error(w, msg, status)
}

// forwardHeaders tells the upstream about the client, as o.Forwarded says.
func (p *Proxy) forwardHeaders(pr *httputil.ProxyRequest) {
	mode := p.o.Forwarded
	if mode == "" || mode == "x-forwarded" || mode == "both" {
		pr.SetXForwarded()
	}
	if mode == "forwarded" || mode == "both" {
		host, _, err := net.SplitHostPort(pr.In.RemoteAddr)
		if err != nil {
			host = pr.In.RemoteAddr
		}
		if strings.Contains(host, ":") {
			host = `"[` + host + `]"`
		}
		proto := "http"
		if pr.In.TLS != nil {
			proto = "https"
		}
		v := "for=" + host + ";host=" + strconv.Quote(pr.In.Host) + ";proto=" + proto
		if prior := pr.In.Header.Values("Forwarded"); len(prior) > 0 {
			v = strings.Join(prior, ", ") + ", " + v
		}
		pr.Out.Header.Set("Forwarded", v)
	}
}

// finish reports the request at its end: to the policy (the request metrics) and to the access
// log, from the same values.
func (p *Proxy) finish(r *http.Request, a *attempts, rec *recorder) {
	status := rec.status
	if a.status != 0 {
		status = a.status // a connection closed with no response
	} else if status == 0 {
		status = http.StatusOK
	}
	req := shm.Request{Status: status, Duration: time.Since(a.tries.Start), Header: a.upstreamTime, BytesOut: rec.bytes}
	if a.body != nil {
		req.BytesIn = a.body.n.Load()
	}
	if a.own {
		req.Own = OwnReason(status)
	}
	p.policy.Done(&a.tries, a.server, &req)
	if p.o.AccessLog != nil {
		p.logAccess(r, a, rec)
	}
}

func (p *Proxy) logAccess(r *http.Request, a *attempts, rec *recorder) {
	e := Entry{
		Time: a.tries.Start, RemoteAddr: r.RemoteAddr, Method: r.Method, URI: r.RequestURI, Proto: r.Proto,
		Status: rec.status, Bytes: rec.bytes, Referer: r.Referer(), UserAgent: r.UserAgent(),
		UpstreamTime: a.upstreamTime, Tries: a.tries.N, RequestID: a.requestID,
	}
	if a.status != 0 {
		e.Status = a.status // a connection closed with no response
	} else if e.Status == 0 {
		e.Status = http.StatusOK
	}
	if a.server != nil {
		e.Upstream = a.server.Address
	}
	p.o.AccessLog.Log(&e)
}

// recorder notes the status and the body bytes of a response, for the access log.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack underneath.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// newRequestID returns 16 random bytes in hex.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	a := r.Context().Value(attemptKey{}).(*attempts) // set by ServeHTTP, as Rewrite relies on
	addr := a.server.Address
	var ce *ClientError
	if ce = a.body.failed(); ce != nil || errors.As(err, &ce) {
		status, abort := clientStatus(ce.Err)
		p.log.Debug("client request body failed", "upstream", p.name, "server", addr, "status", status, "err", ce.Err)
		if abort {
			// Nothing is sent: the client stalled or is gone (as the fast engine and nginx).
			a.status, a.own = status, true
			panic(http.ErrAbortHandler)
		}
		w.Header().Set("Connection", "close")
		http.Error(w, http.StatusText(status), status)
		return
	}
	a.own = true
	if errors.Is(err, context.Canceled) {
		p.log.Debug("client went away", "upstream", p.name, "server", addr)
		w.WriteHeader(499)
		return
	}
	p.log.Warn("upstream request failed", "upstream", p.name, "server", addr, "tries", a.tries.N, "err", err)
	status := http.StatusBadGateway
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		status = http.StatusGatewayTimeout
	}
	http.Error(w, http.StatusText(status), status)
}
