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

// Options are a Proxy's timeouts.
type Options struct {
	ConnectTimeout time.Duration // dialing an upstream server
	ReadTimeout    time.Duration // waiting for the upstream's response header
	Log            *slog.Logger  // nil = slog.Default()
	// OnRequest, when not nil, is called once per request (the worker counts its requests).
	OnRequest func()
	// Balancer names the balancer (default round_robin), HashKey its key for "hash", AllDown
	// what to do when no server is available ("fail", the default, or "any").
	Balancer, HashKey, AllDown string
}

type serverKey struct{}

// NewProxy returns a proxy for the upstream name over servers.
func NewProxy(name string, servers []*Server, o Options) *Proxy {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	p := &Proxy{name: name, pool: NewPool(o.Balancer, o.HashKey, o.AllDown, servers), log: o.Log, onReq: o.OnRequest}
	dialer := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		DialContext:           dialer.DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       60 * time.Second,
		ResponseHeaderTimeout: o.ReadTimeout,
		ExpectContinueTimeout: time.Second,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			s := pr.In.Context().Value(serverKey{}).(*Server)
			pr.SetURL(&url.URL{Scheme: "http", Host: s.Address})
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:     transport,
		FlushInterval: -1, // stream: flush every write, never hold a response back
		ErrorHandler:  p.upstreamError,
		ErrorLog:      slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
	return p
}

// ServeHTTP picks a server and forwards the request to it; 503 when none is available.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.onReq != nil {
		p.onReq()
	}
	s, _ := p.pool.Pick(r)
	if s == nil {
		http.Error(w, "503 Service Unavailable: no available server in upstream "+p.name, http.StatusServiceUnavailable)
		return
	}
	s.Slot.AddActive(1)
	defer s.Slot.AddActive(-1)
	s.Slot.AddRequest()
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), serverKey{}, s)))
}

func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	s, _ := r.Context().Value(serverKey{}).(*Server)
	addr := ""
	if s != nil {
		addr = s.Address
	}
	if errors.Is(err, context.Canceled) {
		p.log.Debug("client went away", "upstream", p.name, "server", addr)
		w.WriteHeader(499)
		return
	}
	if s != nil {
		s.Slot.AddError()
	}
	p.log.Warn("upstream request failed", "upstream", p.name, "server", addr, "err", err)
	status := http.StatusBadGateway
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		status = http.StatusGatewayTimeout
	}
	http.Error(w, http.StatusText(status), status)
}
