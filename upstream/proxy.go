package upstream

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// Proxy forwards HTTP/1.1 requests to the servers of one upstream.
type Proxy struct {
	name  string
	pool  *Pool
	rp    *httputil.ReverseProxy
	log   *slog.Logger
	onReq func()
}

// Options configure a Proxy. The zero value of each field is usable.
type Options struct {
	ConnectTimeout time.Duration // dialing an upstream server; 0 = no bound
	ReadTimeout    time.Duration // waiting for the upstream's response header; 0 = no bound
	Log            *slog.Logger  // nil = slog.Default()
	// OnRequest, when not nil, is called once per request (the worker counts its requests).
	OnRequest func()
	// Balancer names the balancer (default round_robin), HashKey its key for "hash", AllDown
	// what to do when no server is available ("fail", the default, or "any").
	Balancer, HashKey, AllDown string
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
}

// NewProxy returns a proxy for the upstream name over servers.
func NewProxy(name string, servers []*Server, o Options) *Proxy {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	p := &Proxy{name: name, pool: NewPool(o.Balancer, o.HashKey, o.AllDown, servers), log: o.Log, onReq: o.OnRequest}
	dialer := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	base := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: o.ReadTimeout,
		ExpectContinueTimeout: time.Second,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			a := pr.In.Context().Value(attemptKey{}).(*attempts)
			pr.SetURL(&url.URL{Scheme: "http", Host: a.server.Address})
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:     &retrier{base: base, pool: p.pool, o: o, log: o.Log, name: name},
		FlushInterval: -1, // stream: flush every write, never hold a response back
		ErrorHandler:  p.upstreamError,
		ErrorLog:      slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
	return p
}

// ServeHTTP picks a server and forwards the request to it (and to others, as the retry policy
// allows); 503 when none is available.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.onReq != nil {
		p.onReq()
	}
	s, _ := p.pool.Pick(r, nil)
	if s == nil {
		http.Error(w, "503 Service Unavailable: no available server in upstream "+p.name, http.StatusServiceUnavailable)
		return
	}
	a := &attempts{server: s, in: r, start: time.Now()}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), attemptKey{}, a)))
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	a, _ := r.Context().Value(attemptKey{}).(*attempts)
	addr := ""
	if a != nil {
		addr = a.server.Address
	}
	if errors.Is(err, context.Canceled) {
		p.log.Debug("client went away", "upstream", p.name, "server", addr)
		w.WriteHeader(499)
		return
	}
	p.log.Warn("upstream request failed", "upstream", p.name, "server", addr, "tries", a.tries, "err", err)
	status := http.StatusBadGateway
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		status = http.StatusGatewayTimeout
	}
	http.Error(w, http.StatusText(status), status)
}
