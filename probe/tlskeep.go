package probe

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"
)

// tlsKeep is the kept transport of an https or grpc check with keepalive: net/http keeps its
// one connection (HTTP/2, or HTTP/1.1 for https) between checks and re-dials one the server
// closed, retrying a request only when it could not have been processed (its own rule).
type tlsKeep struct {
	tr *http.Transport
	mu sync.Mutex
	hc *httpsConn // what the last dial learned
}

func (k *tlsKeep) closeIdle() { k.tr.CloseIdleConnections() }

// current returns what the connection in use learned (nil before the first dial).
func (k *tlsKeep) current() *httpsConn {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.hc
}

// keptTransport returns c's kept transport, making it on first use: dials go to addr (with a TLS
// handshake if cfg is not nil), and the connection keeps no deadline of its own between checks
// (each request's context bounds it).
func (c *Conn) keptTransport(addr string, cfg *tls.Config, max int64, h2c bool) *tlsKeep {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tls != nil {
		return c.tls
	}
	k := &tlsKeep{}
	dialHook := func(ctx context.Context, _, _ string) (net.Conn, error) {
		hc := &httpsConn{}
		conn, err := hc.dial(ctx, addr, cfg, max)
		if err != nil {
			// Record the failure where the probe looks for it.
			k.mu.Lock()
			k.hc = hc
			k.mu.Unlock()
			return nil, err
		}
		conn.SetDeadline(time.Time{})
		k.mu.Lock()
		k.hc = hc
		k.mu.Unlock()
		c.mu.Lock()
		c.dials++
		c.mu.Unlock()
		return conn, nil
	}
	var protos http.Protocols
	k.tr = &http.Transport{
		DisableCompression: true, MaxResponseHeaderBytes: max, Protocols: &protos,
		MaxIdleConns: 1, MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1,
	}
	switch {
	case h2c:
		protos.SetUnencryptedHTTP2(true)
		k.tr.DialContext = dialHook
	default:
		protos.SetHTTP1(true)
		protos.SetHTTP2(true)
		k.tr.DialTLSContext = dialHook
	}
	c.tls = k
	return k
}

// roundTripKept sends req (made by mk under the probe's context) over c's kept transport, by
// deadline, and returns the response (its body to be read and closed by the caller), what the
// connection learned, how many bytes it had read before this request, and a cleanup the caller
// runs when done with the response (closing the connection if !ok).
func (c *Conn) roundTripKept(ctx context.Context, k *tlsKeep, deadline time.Time, max int64,
	mk func(context.Context) (*http.Request, error)) (*http.Response, *httpsConn, int, func(ok bool), error) {
	rctx, cancel := context.WithDeadline(ctx, deadline)
	c.mu.Lock()
	c.cancel = cancel
	c.mu.Unlock()
	cleanup := func(ok bool) {
		c.mu.Lock()
		c.cancel = nil
		c.mu.Unlock()
		cancel()
		if !ok {
			k.closeIdle()
		}
	}
	before, hc0 := 0, k.current()
	if hc0 != nil {
		before = hc0.rearm(max + appSlack)
	}
	req, err := mk(rctx)
	if err != nil {
		cleanup(false)
		return nil, &httpsConn{}, 0, func(bool) {}, err
	}
	resp, err := k.tr.RoundTrip(req)
	hc := k.current()
	if hc == nil {
		hc = &httpsConn{}
	}
	if hc != hc0 { // a new connection: count from its start
		before = 0
	}
	if err != nil {
		cleanup(false)
		return nil, hc, before, func(bool) {}, err
	}
	return resp, hc, before, cleanup, nil
}

// rearm lets the peer send more bytes from now on (the next request on a kept connection) and
// returns the bytes read so far.
func (hc *httpsConn) rearm(more int64) int {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.cc == nil {
		return 0
	}
	hc.cc.allow(more)
	return hc.cc.read()
}
