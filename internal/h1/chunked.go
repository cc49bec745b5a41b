package h1

import (
	"bytes"
	"strconv"
)

// Limits of chunked framing: a chunk-size line (with extensions) and the trailer section.
const (
	MaxChunkLine = 4 << 10
	MaxTrailer   = 16 << 10
)

const (
	chunkSize    = iota // expecting a chunk-size line
	chunkData           // inside a chunk's data
	chunkDataEnd        // expecting the CRLF after a chunk's data
	chunkTrailer        // expecting a trailer field or the final empty line
	chunkDone
)

// ChunkMode is what Scan appends to its output as it validates a chunked body.
type ChunkMode uint8

const (
	// ChunkPass appends nothing: the caller passes the scanned bytes through as they are (a
	// response to an HTTP/1.1 client; the server is the proxy's own).
	ChunkPass ChunkMode = iota
	// ChunkDecode appends the chunks' data only (a response to an HTTP/1.0 client).
	ChunkDecode
	// ChunkEncode appends the body in canonical chunked framing: each chunk's size in lower-case
	// hex with no extensions, its data, and a last chunk with no trailers. A request body goes
	// upstream this way, so the server parses exactly the framing the proxy checked, whatever
	// the client wrote (nginx drops extensions and trailers too).
	ChunkEncode
)

// ChunkScanner validates a chunked body as it streams past and knows where it ends. It is
// strict, by RFC 9112 section 7.1: a size is 1 to 15 hex digits, white space after it only
// before a chunk extension (";"), every line ends in CRLF, and each trailer line is a field line
// (a token, a colon, a value of visible characters, space and tab); anything else is
// ErrBadChunk.
type ChunkScanner struct {
	state   int
	left    int64 // data bytes left in the current chunk
	trailer int   // trailer bytes seen
}

// scan consumes p as far as it forms whole framing lines and data, and returns how many bytes
// it consumed and out with what mode appends. A line cut off at the end of p is left for the
// next call (more data needed).
func (c *ChunkScanner) Scan(p []byte, mode ChunkMode, out []byte) (n int, o []byte, err error) {
	for n < len(p) && c.state != chunkDone {
		switch c.state {
		case chunkSize:
			i := bytes.IndexByte(p[n:], '\n')
			if i < 0 {
				if len(p)-n > MaxChunkLine {
					return n, out, ErrBadChunk
				}
				return n, out, nil
			}
			size, ok := parseChunkSize(p[n : n+i+1])
			if !ok {
				return n, out, ErrBadChunk
			}
			n += i + 1
			if size == 0 {
				c.state = chunkTrailer
			} else {
				c.state, c.left = chunkData, size
				if mode == ChunkEncode {
					out = strconv.AppendInt(out, size, 16)
					out = append(out, "\r\n"...)
				}
			}
		case chunkData:
			k := int(min(int64(len(p)-n), c.left))
			if mode != ChunkPass {
				out = append(out, p[n:n+k]...)
			}
			n += k
			if c.left -= int64(k); c.left == 0 {
				c.state = chunkDataEnd
			}
		case chunkDataEnd:
			if len(p)-n < 2 {
				if p[n] != '\r' {
					return n, out, ErrBadChunk
				}
				return n, out, nil
			}
			if p[n] != '\r' || p[n+1] != '\n' {
				return n, out, ErrBadChunk
			}
			n += 2
			c.state = chunkSize
			if mode == ChunkEncode {
				out = append(out, "\r\n"...)
			}
		case chunkTrailer:
			i := bytes.IndexByte(p[n:], '\n')
			if i < 0 {
				if c.trailer+len(p)-n > MaxTrailer {
					return n, out, ErrBadChunk
				}
				return n, out, nil
			}
			line := p[n : n+i+1]
			if len(line) < 2 || line[len(line)-2] != '\r' {
				return n, out, ErrBadChunk
			}
			if c.trailer += len(line); c.trailer > MaxTrailer {
				return n, out, ErrBadChunk
			}
			if len(line) > 2 && !fieldLine(line[:len(line)-2]) {
				return n, out, ErrBadChunk
			}
			n += i + 1
			if len(line) == 2 {
				c.state = chunkDone
				if mode == ChunkEncode {
					out = append(out, "0\r\n\r\n"...)
				}
			}
		}
	}
	return n, out, nil
}

// Done reports whether the scanner has seen the whole body (through the trailer section).
func (c *ChunkScanner) Done() bool { return c.state == chunkDone }

// Reset makes c ready for a new body and returns it.
func (c *ChunkScanner) Reset() *ChunkScanner {
	*c = ChunkScanner{}
	return c
}

// fieldLine reports whether line (without its CRLF) is a header field line: a token, a colon,
// optional white space and a value of visible characters, space, tab and obs-text. It refuses
// obs-fold (a line that starts with white space), a space before the colon, NUL and bare CR.
func fieldLine(line []byte) bool {
	i := 0
	for i < len(line) && tokenTable[line[i]] {
		i++
	}
	if i == 0 || i == len(line) || line[i] != ':' {
		return false
	}
	for _, c := range line[i+1:] {
		if !valueTable[c] {
			return false
		}
	}
	return true
}

// parseChunkSize parses a chunk-size line through its "\r\n" (see ChunkSizeLine).
func parseChunkSize(line []byte) (int64, bool) {
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, false
	}
	return ChunkSizeLine(line[:len(line)-2])
}

// ChunkSizeLine parses a chunk-size line without its line ending: 1 to 15 hex digits, then
// optionally chunk extensions (";name=value", not interpreted), with white space allowed before
// each ";" only (RFC 9112's BWS). A size alone followed by white space ("5 ") is refused: a
// server that reads the size differently must never see it. Whether the line may end in a bare
// LF is the caller's rule: the proxy's scanner requires CRLF, the probe takes either.
func ChunkSizeLine(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if i >= 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, false
	}
	rest := line[i:]
	for len(rest) > 0 && (rest[0] == ' ' || rest[0] == '\t') {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		return n, len(rest) == len(line[i:]) // white space with no extension after it
	}
	if rest[0] != ';' {
		return 0, false
	}
	for _, c := range rest {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return 0, false
		}
	}
	return n, true
}
