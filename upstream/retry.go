package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"hcproxy/shm"
)

// RetryPolicy says when a failed request is tried again on another server (nginx's
// proxy_next_upstream): at most Tries more times, within Timeout of the first try (0 = no
// bound), on the failures On lists. A request whose body was (even partly) sent is retried only
// if its method is idempotent or NonIdempotent allows it; a request with a body that cannot be
// replayed is retried only before any of the body was read (a connect failure).
type RetryPolicy struct {
	Tries         int
	Timeout       time.Duration
	On            FailureSet
	NonIdempotent bool
}

// FailureSet is the kinds of failure a policy acts on: connect errors, timeouts, and response
// statuses.
type FailureSet struct {
	Connect bool
	Timeout bool
	Status  map[int]bool
}

// ParseFailures builds a FailureSet from config words: "connect", "timeout", or a status code.
func ParseFailures(words []string) FailureSet {
	f := FailureSet{Status: map[int]bool{}}
	for _, w := range words {
		switch w {
		case "connect":
			f.Connect = true
		case "timeout":
			f.Timeout = true
		default:
			if n, err := strconv.Atoi(w); err == nil {
				f.Status[n] = true
			}
		}
	}
	return f
}

type attemptKey struct{}

// attempts is the state of one client request across its tries.
type attempts struct {
	server *Server // the server of the current (last) try
	in     *http.Request
	tries  Tries

	requestID    string
	upstreamTime time.Duration // from the first try to the response header (or the last error)
	status       int           // the status logged when the connection is closed with no response
	own          bool          // the proxy answered itself (upstreamError): counted by its reason
	body         *clientBody   // the client's request body, nil when it has none
}

// retrier is the ReverseProxy's transport: it runs the tries of a request on the servers the
// policy picks, and counts requests in flight per server until their responses are done.
type retrier struct {
	base   *http.Transport
	policy *Policy
	o      Options
}

// Failure kinds of one try, as Classify sees them (the fast path classifies the same way).
const (
	FailNone = iota
	FailConnect
	FailTimeout
	FailOther
	FailStatus
	FailClient // the client's side failed (*ClientError): never counted against the server
)

const (
	failNone    = FailNone
	failConnect = FailConnect
	failTimeout = FailTimeout
	failOther   = FailOther
	failStatus  = FailStatus
	failClient  = FailClient
)

// Classify says what kind of failure err is: the client's request body could not be read
// (FailClient, whatever the cause, a timeout included), a dial that was refused or failed
// (FailConnect), a timeout at any stage (FailTimeout), anything else (FailOther), or none.
func Classify(err error) int {
	if err == nil {
		return failNone
	}
	var ce *ClientError
	if errors.As(err, &ce) {
		return failClient
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if op.Timeout() {
			return failTimeout
		}
		return failConnect
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return failConnect
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return failTimeout
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return failTimeout
	}
	return failOther
}

// RoundTrip implements http.RoundTripper.
func (t *retrier) RoundTrip(req *http.Request) (*http.Response, error) {
	a, _ := req.Context().Value(attemptKey{}).(*attempts)
	if a == nil {
		return t.base.RoundTrip(req)
	}
	defer func(start time.Time) { a.upstreamTime = time.Since(start) }(time.Now())
	var body *trackedBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &trackedBody{rc: req.Body}
		req.Body = body
	}
	var tunnel *tunnelConn
	if t.o.SendTimeout > 0 && req.Header.Get("Upgrade") != "" {
		req, tunnel = traceTunnel(req)
	}
	for {
		s := a.server
		req.URL.Host = s.Address
		t.policy.Begin(&a.tries, s)
		resp, err := t.base.RoundTrip(req)
		if err == nil && resp.StatusCode == http.StatusSwitchingProtocols && tunnel != nil {
			tunnel.untimed()
		}
		if err != nil && (Classify(err) == FailClient || a.body.failed() != nil || req.Context().Err() != nil) {
			// The client's side failed: its body could not be read (the transport returns the
			// read error, or context.Canceled when net/http cancelled the request over it), or
			// the client went away. Not the server's fault, and nothing to retry.
			s.Slot.AddActive(-1)
			return nil, err
		}
		status := 0
		if err == nil {
			status = resp.StatusCode
		}
		replayable := (body == nil || !body.read.Load()) && req.Context().Err() == nil
		_, next := t.policy.After(&a.tries, s, err, status, shm.Now(), time.Since(a.tries.Start), replayable)
		if next == nil {
			if err != nil {
				s.Slot.AddActive(-1)
				return nil, err
			}
			resp.Body = countActive(resp.Body, s.Slot)
			return resp, nil
		}
		if err == nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		s.Slot.AddActive(-1)
		a.server = next
	}
}

// trackedBody records whether any of a request body was read (sent upstream).
type trackedBody struct {
	rc   io.ReadCloser
	read atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.read.Store(true)
	}
	return n, err
}

// Close does nothing: the transport closes a request body after a failed try, and the body must
// survive for the next one. The server closes the client's body when the handler returns.
func (b *trackedBody) Close() error { return nil }

// countActive wraps a response body so that closing it ends the request's count in flight; an
// upgraded connection's body (101) stays writable, as ReverseProxy needs.
func countActive(body io.ReadCloser, slot shm.Slot) io.ReadCloser {
	if rwc, ok := body.(io.ReadWriteCloser); ok {
		return &activeRWBody{activeBody{ReadCloser: body, slot: slot}, rwc}
	}
	return &activeBody{ReadCloser: body, slot: slot}
}

type activeRWBody struct {
	activeBody
	w io.Writer
}

func (b *activeRWBody) Write(p []byte) (int, error) { return b.w.Write(p) }

// activeBody ends the request's count in flight when the response body is closed.
type activeBody struct {
	io.ReadCloser
	slot shm.Slot
	once sync.Once
}

func (b *activeBody) Close() error {
	b.once.Do(func() { b.slot.AddActive(-1) })
	return b.ReadCloser.Close()
}
