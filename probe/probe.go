package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
	"unicode/utf8"
)

// maxDetail is the longest Result.Detail, in bytes.
const maxDetail = 120

// Result is the outcome of one check.
type Result struct {
	Reason Reason        // OK, or why the check failed
	Detail string        // short human detail, at most 120 bytes; empty when OK
	RTT    time.Duration // from dial start to the verdict
	Bytes  int           // bytes read from the peer (never more than MaxResponse+small slack)
	Status int           // HTTP status code, 0 if none

	// CertExpiry is the NotAfter of the peer's leaf certificate, for checks
	// that made a TLS handshake (tls, https, grpc over TLS); zero otherwise.
	CertExpiry time.Time
	// Agent is what an agent check's reply asked for (weight, admin state);
	// nil for every other type and when the reply did not parse.
	Agent *AgentReply
}

// OK reports whether the check passed.
func (r Result) OK() bool { return r.Reason == OK }

// Prober does one check of one target ("host:port" to connect to) within ctx.
// The deadline of ctx is the whole check's timeout; the caller sets it.
// Probe never panics: a panic inside is recovered and reported as Internal.
// Probe starts no goroutines of its own and keeps no state between calls, so
// one Prober may be used by many goroutines at once.
type Prober interface {
	Probe(ctx context.Context, addr string) Result
}

// dial connects to addr within ctx and applies ctx's deadline to the
// connection. On failure it returns a nil conn and a Result with the dial
// reason filled in.
func dial(ctx context.Context, addr string) (net.Conn, Result) {
	dl, _ := ctx.Deadline()
	conn, err := connect(ctx, addr, dl, nil)
	if err != nil {
		return nil, Result{Reason: dialReason(ctx, err), Detail: err.Error()}
	}
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			conn.Close()
			return nil, Result{Reason: Internal, Detail: "set deadline: " + err.Error()}
		}
	}
	return conn, Result{}
}

// dialReason classifies a dial error.
func dialReason(ctx context.Context, err error) Reason {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return ConnectRefused
	case localExhaustion(err):
		return LocalError
	case isTimeout(err), ctx.Err() != nil:
		// A cancelled context stops the dial like an expired deadline would.
		return ConnectTimeout
	default:
		return ConnectError
	}
}

// localExhaustion reports whether err is this host running out of a resource (descriptors,
// buffers, memory) rather than anything the peer did.
func localExhaustion(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

// isTimeout reports whether err is a deadline expiry of any layer.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() ||
		errors.Is(err, context.DeadlineExceeded)
}

// finish stamps the RTT and trims the detail; every Result leaves through it.
func finish(r Result, start time.Time) Result {
	r.RTT = time.Since(start)
	if r.Reason == OK {
		r.Detail = ""
	}
	r.Detail = truncate(r.Detail, maxDetail)
	return r
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Back up to a rune start so no UTF-8 sequence is split (at most 3 steps).
	for i := 0; i < utf8.UTFMax-1 && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return s[:n]
}

// recoverInto turns a panic into an Internal result. Use as
// `defer recoverInto(&res, start)`.
func recoverInto(res *Result, start time.Time) {
	if v := recover(); v != nil {
		*res = finish(Result{Reason: Internal, Detail: fmt.Sprintf("panic: %v", v)}, start)
	}
}
