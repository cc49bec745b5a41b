package probe

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"hcproxy/internal/h1"
)

// Sentinel errors of ParseResponse. Every error it returns wraps exactly one
// of them.
var (
	ErrTooLarge   = errors.New("probe: response too large")
	ErrMalformed  = errors.New("probe: malformed response")
	ErrEarlyClose = errors.New("probe: connection closed before the response was complete")
)

// DefaultMaxResponse is the response size limit, in bytes, used when a limit
// of zero or less is given.
const DefaultMaxResponse = 16384

const (
	// readBufSize is the most ParseResponse asks of the reader in one Read.
	readBufSize = 4096
	// maxLimit caps max so that max+1 and friends cannot overflow.
	maxLimit = 1 << 40
	// maxLength is the largest Content-Length or chunk size that parses;
	// bigger values are malformed (they could never fit max anyway).
	maxLength = 1 << 60
)

// malformedError is a framing error; Unwrap gives ErrMalformed and what is the
// short human detail.
type malformedError struct{ what string }

func (e *malformedError) Error() string { return ErrMalformed.Error() + ": " + e.what }
func (e *malformedError) Unwrap() error { return ErrMalformed }

func malformed(format string, args ...any) error {
	return &malformedError{what: fmt.Sprintf(format, args...)}
}

// ParseResponse reads one HTTP/1.x response from r, reading at most max bytes
// in total (status line + headers + body); max <= 0 means DefaultMaxResponse.
// It handles Content-Length, chunked transfer coding (with trailers),
// responses delimited by connection close, 1xx interim responses (skipped)
// and bodiless statuses (204, 304).
//
// It returns the final status code (or the last one parsed, 0 if none, when
// err != nil), the decoded body (nil when err != nil), the number of bytes
// read from r and an error wrapping ErrTooLarge, ErrMalformed or
// ErrEarlyClose. A read error other than io.EOF is wrapped together with
// ErrEarlyClose, so callers can still find it with errors.Is/As (a timeout is
// a net.Error with Timeout() true).
//
// ParseResponse never reads more than max+1 bytes from r (it must see one byte
// beyond max to tell a response of exactly max bytes from a longer one) and
// never buffers more than that. Bytes read beyond the end of the response are
// counted in n but otherwise ignored.
func ParseResponse(r io.Reader, max int64) (status int, body []byte, n int64, err error) {
	return parseResponse(r, max, false)
}

// parseResponse is ParseResponse; head reports that the request was HEAD, so
// the response has no body whatever its headers say.
func parseResponse(r io.Reader, max int64, head bool) (status int, body []byte, n int64, err error) {
	status, body, n, _, err = parseResponseHeader(r, max, head, nil)
	return status, body, n, err
}

// keepState is what a kept-alive exchange needs from the parse beyond the verdict.
type keepState struct {
	buf, body []byte // buffers to reuse (their capacity; nil to allocate)
	reusable  bool   // the connection may carry the next request (see parser.reusable)
}

// parseResponseHeader is parseResponse that also reports whether the final
// response has the header want (false when want is nil).
func parseResponseHeader(r io.Reader, max int64, head bool, want *HeaderMatch) (status int, body []byte, n int64, found bool, err error) {
	return parseResponseKeep(r, max, head, want, nil)
}

// parseResponseKeep is parseResponseHeader reading into ks's buffers when ks is not nil, and
// reporting in ks.reusable whether the connection can carry another request.
func parseResponseKeep(r io.Reader, max int64, head bool, want *HeaderMatch, ks *keepState) (status int, body []byte, n int64, found bool, err error) {
	if max <= 0 {
		max = DefaultMaxResponse
	}
	max = min(max, maxLimit)
	p := parser{rd: reader{r: r, max: max}, want: want}
	if ks != nil {
		p.rd.buf, p.body = ks.buf[:cap(ks.buf)], ks.body[:0]
		ks.reusable = false
	}
	status, body, err = p.response(head)
	if ks != nil {
		ks.buf, ks.body = p.rd.buf, p.body
		ks.reusable = err == nil && p.reusable()
	}
	if err == nil && p.rd.consumed() > max {
		err = ErrTooLarge
	}
	if err != nil {
		body = nil
		err = wrapReadError(err)
	}
	return status, body, p.rd.n, p.found, err
}

// wrapReadError makes sure err wraps one of the sentinels.
func wrapReadError(err error) error {
	switch {
	case errors.Is(err, ErrTooLarge), errors.Is(err, ErrMalformed), errors.Is(err, ErrEarlyClose):
		return err
	default: // io.EOF, io.ErrUnexpectedEOF, a reset, a timeout...
		return fmt.Errorf("%w: %w", ErrEarlyClose, err)
	}
}

// framing is what the headers say about the body.
type framing struct {
	contentLength int64 // -1 when absent
	chunked       bool
	hasTE         bool
}

type parser struct {
	rd   reader
	body []byte
	// closing: the final response said it ends the connection (Connection: close, or HTTP/1.0);
	// toEOF: its body was delimited by the connection's close.
	closing, toEOF bool
	// want, if not nil, is an expect_header; found reports whether the
	// final response's headers have it.
	want  *HeaderMatch
	found bool
}

// response parses interim responses and then the final one.
func (p *parser) response(head bool) (int, []byte, error) {
	for {
		line, err := p.rd.readLine()
		if err != nil {
			return 0, nil, err
		}
		status, err := parseStatusLine(line)
		if err != nil {
			return 0, nil, err
		}
		p.found, p.closing = false, line[7] == '0'
		fr, err := p.headers(false)
		if err != nil {
			return status, nil, err
		}
		if status < 200 && status != 101 {
			continue // 100 Continue, 102, 103 Early Hints: the real one follows
		}
		if head || status < 200 || status == 204 || status == 304 {
			return status, nil, nil
		}
		err = p.readBody(fr)
		return status, p.body, err
	}
}

// reusable reports whether the connection may carry another request after the response just
// parsed: the response kept it open (HTTP/1.1, no Connection: close), its end was framed (not by
// the close), and nothing followed it unasked.
func (p *parser) reusable() bool {
	return !p.closing && !p.toEOF && p.rd.buffered() == 0 && p.rd.err == nil
}

// parseStatusLine parses `HTTP/1.x NNN reason` by internal/h1's rule (the proxy's: a status
// of 100 to 599) and returns the status code.
func parseStatusLine(line []byte) (int, error) {
	_, code, _, ok := h1.ParseStatusLine(line)
	if !ok {
		return 0, malformed("bad status line %q", clip(line, 40))
	}
	return code, nil
}

// headers reads header (or, if trailer, trailer) lines up to and including
// the empty line that ends them.
func (p *parser) headers(trailer bool) (framing, error) {
	fr := framing{contentLength: -1}
	for {
		line, err := p.rd.readLine()
		if err != nil {
			return fr, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			return fr, malformed("obsolete line folding")
		}
		i := bytes.IndexByte(line, ':')
		if i <= 0 || !h1.IsToken(line[:i]) {
			return fr, malformed("bad header line %q", clip(line, 40))
		}
		name, value := line[:i], h1.TrimOWS(line[i+1:])
		if !h1.ValidValue(value) {
			return fr, malformed("bad header value for %s", clip(name, 40))
		}
		if trailer {
			continue // trailers are checked for syntax only
		}
		if p.want != nil && p.want.matches(name, value) {
			p.found = true
		}
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if err := fr.addContentLength(value); err != nil {
				return fr, err
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if err := fr.addTransferEncoding(value); err != nil {
				return fr, err
			}
		case bytes.EqualFold(name, []byte("Connection")):
			for elem := range bytes.SplitSeq(value, []byte(",")) {
				if bytes.EqualFold(h1.TrimOWS(elem), []byte("close")) {
					p.closing = true
				}
			}
		}
	}
	if fr.hasTE && fr.contentLength >= 0 {
		return fr, malformed("both Transfer-Encoding and Content-Length")
	}
	return fr, nil
}

// addContentLength merges one Content-Length field value by internal/h1's rule, with the
// probe's leniency: a list of identical values ("5, 5") is taken as the one value, as RFC 9110
// section 8.6 allows (the proxy refuses it); repeated fields must agree.
func (fr *framing) addContentLength(value []byte) error {
	n, ok := h1.ContentLength(value, true)
	if !ok || n > maxLength {
		return malformed("bad Content-Length %q", clip(value, 40))
	}
	if fr.contentLength >= 0 && fr.contentLength != n {
		return malformed("conflicting Content-Length values")
	}
	fr.contentLength = n
	return nil
}

// addTransferEncoding merges one Transfer-Encoding field value. Only
// "chunked" is supported, and it must be the last and only coding.
func (fr *framing) addTransferEncoding(value []byte) error {
	fr.hasTE = true
	for elem := range bytes.SplitSeq(value, []byte(",")) {
		elem = h1.TrimOWS(elem)
		if len(elem) == 0 {
			continue
		}
		if fr.chunked {
			return malformed("transfer coding after chunked")
		}
		if !bytes.EqualFold(elem, []byte("chunked")) {
			return malformed("unsupported transfer coding %q", clip(elem, 40))
		}
		fr.chunked = true
	}
	if !fr.chunked {
		return malformed("empty Transfer-Encoding")
	}
	return nil
}

// readBody reads the body framed as fr says into p.body.
func (p *parser) readBody(fr framing) error {
	switch {
	case fr.chunked:
		return p.readChunked()
	case fr.contentLength >= 0:
		if p.rd.consumed()+fr.contentLength > p.rd.max {
			return ErrTooLarge
		}
		return p.readN(fr.contentLength)
	default: // delimited by connection close
		p.toEOF = true
		for {
			p.appendBody(p.rd.take(p.rd.buffered()))
			if err := p.rd.fill(); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
		}
	}
}

// readChunked decodes a chunked body and its trailers.
func (p *parser) readChunked() error {
	for {
		line, err := p.rd.readLine()
		if err != nil {
			return err
		}
		size, err := parseChunkSize(line)
		if err != nil {
			return err
		}
		if size == 0 {
			_, err := p.headers(true)
			return err
		}
		if p.rd.consumed()+size > p.rd.max {
			return ErrTooLarge
		}
		if err := p.readN(size); err != nil {
			return err
		}
		line, err = p.rd.readLine()
		if err != nil {
			return err
		}
		if len(line) != 0 {
			return malformed("chunk data longer than its size")
		}
	}
}

// parseChunkSize parses a chunk-size line (its line ending removed by readLine) by internal/h1's
// rule (1 to 15 hex digits, white space only before an extension). The probe's leniency: the
// line may have ended in a bare LF (readLine takes either), which the proxy refuses.
func parseChunkSize(line []byte) (int64, error) {
	size, ok := h1.ChunkSizeLine(line)
	if !ok {
		return 0, malformed("bad chunk size %q", clip(line, 40))
	}
	return size, nil
}

// readN appends exactly k more bytes of the response to the body.
func (p *parser) readN(k int64) error {
	for k > 0 {
		if p.rd.buffered() == 0 {
			if err := p.rd.fill(); err != nil {
				return err
			}
		}
		m := int(min(int64(p.rd.buffered()), k))
		p.appendBody(p.rd.take(m))
		k -= int64(m)
	}
	return nil
}

// appendBody appends b to the body, growing it no further than max+1 bytes.
func (p *parser) appendBody(b []byte) {
	need := len(p.body) + len(b)
	if need > cap(p.body) {
		c := max(2*cap(p.body), need, 512)
		c = max(min(c, int(p.rd.max)+1), need)
		nb := make([]byte, len(p.body), c)
		copy(nb, p.body)
		p.body = nb
	}
	p.body = append(p.body, b...)
}

// reader is a small bounded buffered reader: it reads at most max+1 bytes from
// r and buffers at most that.
type reader struct {
	r          io.Reader
	max        int64
	buf        []byte
	start, end int   // buf[start:end] is read but not consumed
	n          int64 // bytes read from r
	err        error // sticky error from r
}

func (b *reader) buffered() int     { return b.end - b.start }
func (b *reader) consumed() int64   { return b.n - int64(b.buffered()) }
func (b *reader) take(k int) []byte { s := b.buf[b.start : b.start+k]; b.start += k; return s }

// fill reads more bytes from r. It returns ErrTooLarge if the caller needs
// more bytes than max allows, r's error once r has no more bytes to give
// (io.EOF at the end), or nil if at least one byte was added.
func (b *reader) fill() error {
	if b.err != nil {
		return b.err
	}
	if b.n > b.max {
		// The caller needs more than the n > max bytes read so far.
		return ErrTooLarge
	}
	if b.start > 0 {
		copy(b.buf, b.buf[b.start:b.end])
		b.end -= b.start
		b.start = 0
	}
	if b.end == len(b.buf) {
		// A line longer than the buffer: grow, within max+1 (end <= n <= max).
		size := min(max(2*len(b.buf), readBufSize), int(b.max)+1)
		nb := make([]byte, size)
		copy(nb, b.buf[:b.end])
		b.buf = nb
	}
	want := min(int64(len(b.buf)-b.end), int64(readBufSize), b.max+1-b.n)
	for range 100 {
		m, err := b.r.Read(b.buf[b.end : b.end+int(want)])
		if m < 0 || int64(m) > want {
			b.err = fmt.Errorf("%w: reader returned an invalid count %d", ErrEarlyClose, m)
			return b.err
		}
		b.end += m
		b.n += int64(m)
		if err != nil {
			b.err = err
		}
		if m > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
	b.err = io.ErrNoProgress
	return b.err
}

// readLine returns the next line without its CRLF (or bare LF). The slice is
// valid until the next read.
func (b *reader) readLine() ([]byte, error) {
	scanned := 0 // bytes after start already known to hold no '\n'
	for {
		if i := bytes.IndexByte(b.buf[b.start+scanned:b.end], '\n'); i >= 0 {
			line := b.take(scanned + i + 1)
			line = line[:len(line)-1]
			if len(line) > 0 && line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			return line, nil
		}
		scanned = b.buffered()
		if err := b.fill(); err != nil {
			return nil, err
		}
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// clip shortens s for an error message.
func clip(s []byte, n int) string {
	if len(s) > n {
		return string(s[:n]) + "..."
	}
	return string(s)
}
