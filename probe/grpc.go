package probe

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// GRPCOptions configures a grpc check: the standard grpc.health.v1
// Health/Check call.
type GRPCOptions struct {
	// Service is the service name asked about; "" asks about the server as
	// a whole.
	Service string
	// TLS, if not nil, makes the call over TLS (ALPN h2); nil uses
	// plaintext HTTP/2 with prior knowledge (h2c).
	TLS *TLSOptions
	// MaxResponse bounds the response body (the framed message); <= 0
	// means DefaultMaxResponse.
	MaxResponse int64
	// KeepAlive keeps the HTTP/2 connection open between checks (ProbeConn);
	// a failed check closes it. Probe always closes it.
	KeepAlive bool
}

// Health statuses of grpc.health.v1.HealthCheckResponse.ServingStatus.
var grpcStatusNames = [...]string{"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"}

// grpcProber is the Prober NewGRPC returns. The call is encoded by hand (the
// request is one string field, the response one enum), so the probe needs
// no gRPC runtime: net/http's HTTP/2 client carries it.
type grpcProber struct {
	req     []byte // the framed HealthCheckRequest
	cfg     *tls.Config
	minDays int
	max     int64
	keep    bool
}

var _ ConnProber = (*grpcProber)(nil)

// NewGRPC returns a Prober that calls grpc.health.v1.Health/Check: SERVING
// passes; any other status fails with NotServing and the status in the
// detail; a non-zero grpc-status fails with ServerError.
func NewGRPC(o GRPCOptions) (Prober, error) {
	p := &grpcProber{max: o.MaxResponse, keep: o.KeepAlive}
	if p.max <= 0 {
		p.max = DefaultMaxResponse
	}
	if o.TLS != nil {
		cfg, err := o.TLS.config("h2")
		if err != nil {
			return nil, err
		}
		p.cfg, p.minDays = cfg, o.TLS.CertMinDays
	}
	// HealthCheckRequest{service = 1 (string)}.
	var msg []byte
	if o.Service != "" {
		msg = append([]byte{0x0a}, binary.AppendUvarint(nil, uint64(len(o.Service)))...)
		msg = append(msg, o.Service...)
	}
	p.req = make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(p.req[1:], uint32(len(msg)))
	p.req = append(p.req, msg...)
	return p, nil
}

// Probe implements Prober.
func (p *grpcProber) Probe(ctx context.Context, addr string) (res Result) {
	start := time.Now()
	defer recoverInto(&res, start)
	hc := &httpsConn{}
	var protos http.Protocols
	tr := &http.Transport{DisableCompression: true, MaxResponseHeaderBytes: p.max, Protocols: &protos}
	scheme := "http"
	if p.cfg != nil {
		scheme = "https"
		protos.SetHTTP2(true)
		tr.DialTLSContext = func(context.Context, string, string) (net.Conn, error) {
			return hc.dial(ctx, addr, p.cfg, p.max)
		}
	} else {
		protos.SetUnencryptedHTTP2(true)
		tr.DialContext = func(context.Context, string, string) (net.Conn, error) {
			return hc.dial(ctx, addr, nil, p.max)
		}
	}
	defer tr.CloseIdleConnections()
	req, err := p.request(ctx, scheme, addr)
	if err != nil {
		return finish(Result{Reason: Internal, Detail: err.Error()}, start)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return finish(hc.failure(ctx, err), start)
	}
	defer resp.Body.Close()
	return finish(p.read(ctx, resp, hc, 0), start)
}

// request makes the Health/Check call to addr under ctx.
func (p *grpcProber) request(ctx context.Context, scheme, addr string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+addr+"/grpc.health.v1.Health/Check", bytes.NewReader(p.req))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	req.Header.Set("User-Agent", "hcproxy-check")
	return req, nil
}

// read reads resp's body (bounded) and judges it; base is what the connection had read before
// this call.
func (p *grpcProber) read(ctx context.Context, resp *http.Response, hc *httpsConn, base int) Result {
	body, err := io.ReadAll(io.LimitReader(resp.Body, p.max+1))
	if err != nil {
		r := hc.failure(ctx, err)
		r.Status, r.Bytes = resp.StatusCode, max(r.Bytes-base, 0)
		return r
	}
	res := p.judge(resp, body)
	res.Bytes = hc.read() - base
	if res.Reason == OK {
		hc.mu.Lock()
		judgeCert(&res, hc.st, p.minDays, time.Now())
		hc.mu.Unlock()
	}
	return res
}

// ProbeConn implements ConnProber. With KeepAlive, c keeps a transport whose HTTP/2 connection
// carries the next calls; a failed check closes it. Without, it is Probe.
func (p *grpcProber) ProbeConn(ctx context.Context, addr string, deadline time.Time, c *Conn) (res Result) {
	if !p.keep {
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		return p.Probe(ctx, addr)
	}
	start := time.Now()
	defer recoverInto(&res, start)
	scheme := "https"
	if p.cfg == nil {
		scheme = "http"
	}
	k := c.keptTransport(addr, p.cfg, p.max, p.cfg == nil)
	resp, hc, base, done, err := c.roundTripKept(ctx, k, deadline, p.max, func(rctx context.Context) (*http.Request, error) {
		return p.request(rctx, scheme, addr)
	})
	if err != nil {
		r := hc.failure(ctx, err)
		r.Bytes = max(r.Bytes-base, 0)
		return finish(r, start)
	}
	res = p.read(ctx, resp, hc, base)
	resp.Body.Close()
	done(res.OK())
	return finish(res, start)
}

// judge reads the gRPC status (trailers, or headers of a trailers-only
// response) and then the health status.
func (p *grpcProber) judge(resp *http.Response, body []byte) Result {
	res := Result{Status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		res.Reason, res.Detail = BadStatus, fmt.Sprintf("HTTP status %d", resp.StatusCode)
		return res
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/grpc") {
		res.Reason, res.Detail = BadResponse, fmt.Sprintf("content-type %q is not gRPC", truncate(ct, 40))
		return res
	}
	if int64(len(body)) > p.max {
		res.Reason, res.Detail = TooLarge, fmt.Sprintf("response larger than %d bytes", p.max)
		return res
	}
	code, msg := resp.Trailer.Get("Grpc-Status"), resp.Trailer.Get("Grpc-Message")
	if code == "" {
		code, msg = resp.Header.Get("Grpc-Status"), resp.Header.Get("Grpc-Message")
	}
	switch n, err := strconv.Atoi(code); {
	case code == "" || err != nil:
		res.Reason, res.Detail = BadResponse, fmt.Sprintf("no valid grpc-status (%q)", truncate(code, 20))
		return res
	case n != 0:
		res.Reason, res.Detail = ServerError, fmt.Sprintf("grpc-status %d: %s", n, truncate(msg, 80))
		return res
	}
	status, err := ParseGRPCHealth(body)
	if err != nil {
		res.Reason, res.Detail = BadResponse, err.Error()
		return res
	}
	if status != 1 {
		name := "status " + strconv.Itoa(status)
		if status >= 0 && status < len(grpcStatusNames) {
			name = grpcStatusNames[status]
		}
		res.Reason, res.Detail = NotServing, name
	}
	return res
}

// ParseGRPCHealth parses one length-prefixed, uncompressed gRPC message
// holding a grpc.health.v1.HealthCheckResponse and returns its status
// (field 1; 0, UNKNOWN, when absent). Unknown fields are skipped; anything
// that is not exactly one well-formed message is an error wrapping
// ErrMalformed. It never reads outside body.
func ParseGRPCHealth(body []byte) (int, error) {
	if len(body) < 5 {
		return 0, protoError("gRPC message shorter than its 5-byte prefix")
	}
	if body[0] != 0 {
		return 0, protoError("compressed gRPC message")
	}
	n := binary.BigEndian.Uint32(body[1:5])
	msg := body[5:]
	if uint64(n) != uint64(len(msg)) {
		return 0, protoError("gRPC message length %d, %d bytes follow", n, len(msg))
	}
	status := 0
	for len(msg) > 0 {
		tag, k := binary.Uvarint(msg)
		if k <= 0 {
			return 0, protoError("bad protobuf tag")
		}
		msg = msg[k:]
		field, wire := tag>>3, tag&7
		switch wire {
		case 0:
			v, k := binary.Uvarint(msg)
			if k <= 0 {
				return 0, protoError("bad protobuf varint")
			}
			msg = msg[k:]
			if field == 1 {
				status = int(int32(v))
			}
		case 1, 5:
			size := 8
			if wire == 5 {
				size = 4
			}
			if len(msg) < size {
				return 0, protoError("truncated protobuf field")
			}
			msg = msg[size:]
		case 2:
			l, k := binary.Uvarint(msg)
			if k <= 0 || l > uint64(len(msg)-k) {
				return 0, protoError("bad protobuf length")
			}
			msg = msg[k+int(l):]
		default:
			return 0, protoError("protobuf wire type %d", wire)
		}
	}
	return status, nil
}
