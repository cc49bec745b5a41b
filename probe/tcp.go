package probe

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
)

// Match is how an expect step of a tcp sequence compares what it read.
type Match uint8

const (
	// MatchSubstring passes once Expect occurs in what was read (the default).
	MatchSubstring Match = iota
	// MatchExact passes if the next len(Expect) bytes are exactly Expect.
	MatchExact
	// MatchRegexp passes once Regexp matches what was read.
	MatchRegexp
)

// Step is one step of a tcp sequence: a send step (Send != nil) writes Send;
// an expect step reads until its expectation is met, the peer stops sending,
// or max_response is reached. Bytes read past a match carry over to the next
// expect step.
type Step struct {
	Send   []byte
	Expect []byte         // for MatchExact and MatchSubstring
	Regexp *regexp.Regexp // for MatchRegexp
	Match  Match
}

// TCPOptions configures a tcp check. The zero value only connects.
type TCPOptions struct {
	// Sequence is run in order after the connect; nil only connects.
	Sequence []Step
	// MaxResponse is the most bytes the whole sequence may read; <= 0 means
	// DefaultMaxResponse.
	MaxResponse int64
}

// tcpProber is the Prober NewTCP and NewTCPSequence return.
type tcpProber struct{ opt TCPOptions }

var _ Prober = (*tcpProber)(nil)

// NewTCP returns a Prober that only connects: the check passes once the TCP
// handshake completes, and the connection is closed at once.
func NewTCP() Prober { return &tcpProber{} }

// NewTCPSequence returns a Prober that connects and runs o.Sequence, like
// HAProxy's tcp-check send/expect rules.
func NewTCPSequence(o TCPOptions) Prober { return &tcpProber{opt: o} }

// Probe implements Prober.
func (p *tcpProber) Probe(ctx context.Context, addr string) Result {
	return sessionProbe(ctx, addr, p.opt.MaxResponse, p.run)
}

// run executes the sequence on s.
func (p *tcpProber) run(s *session) Result {
	var pending []byte // read but not yet consumed by an expect step
	buf := make([]byte, 4096)
	for i, st := range p.opt.Sequence {
		if st.Send != nil {
			if err := s.write(st.Send); err != nil {
				r := sendFailure(err, fmt.Sprintf("step %d", i+1))
				r.Bytes = s.read()
				return r
			}
			continue
		}
		for {
			ok, used, decided := MatchStep(st, pending, false)
			if decided {
				if !ok {
					return unexpectedStep(i, st, pending, s.read())
				}
				pending = pending[used:]
				break
			}
			n, err := s.lim.Read(buf)
			pending = append(pending, buf[:n]...)
			if err == nil {
				continue
			}
			if ok, used, _ := MatchStep(st, pending, true); ok {
				pending = pending[used:]
				break
			}
			if len(pending) > 0 && (errors.Is(err, io.EOF) || isTimeout(err) || errors.Is(err, ErrTooLarge)) {
				r := unexpectedStep(i, st, pending, s.read())
				if errors.Is(err, ErrTooLarge) {
					r.Reason = TooLarge
				}
				return r
			}
			return readFailure(err, fmt.Sprintf("step %d", i+1), s.read(), s.max)
		}
	}
	return Result{Bytes: s.read()}
}

// unexpectedStep is the result of expect step i not matching got.
func unexpectedStep(i int, st Step, got []byte, n int) Result {
	want := string(st.Expect)
	if st.Match == MatchRegexp && st.Regexp != nil {
		want = "/" + st.Regexp.String() + "/"
	}
	return Result{Reason: Unexpected, Bytes: n,
		Detail: fmt.Sprintf("step %d: got %q, want %q", i+1, clip(got, 32), truncate(want, 32))}
}

// MatchStep judges the bytes read so far (buf) against an expect step.
// decided reports whether the answer is final; if it is not, more bytes are
// needed. final says no more bytes will come: the answer is then always
// decided. On a match, used is how many bytes of buf the step consumed (up to
// the end of the match). MatchStep never reads outside buf.
func MatchStep(st Step, buf []byte, final bool) (ok bool, used int, decided bool) {
	switch st.Match {
	case MatchExact:
		if len(buf) < len(st.Expect) {
			if !bytes.HasPrefix(st.Expect, buf) {
				return false, 0, true
			}
			return false, 0, final
		}
		if bytes.Equal(buf[:len(st.Expect)], st.Expect) {
			return true, len(st.Expect), true
		}
		return false, 0, true
	case MatchRegexp:
		if st.Regexp == nil {
			return false, 0, true
		}
		if loc := st.Regexp.FindIndex(buf); loc != nil {
			return true, loc[1], true
		}
		return false, 0, final
	default:
		if i := bytes.Index(buf, st.Expect); i >= 0 {
			return true, i + len(st.Expect), true
		}
		return false, 0, final
	}
}
