package fastpath

import "bytes"

// Limits of chunked framing: a chunk-size line (with extensions) and the trailer section.
const (
	maxChunkLine = 4 << 10
	maxTrailer   = 16 << 10
)

const (
	chunkSize    = iota // expecting a chunk-size line
	chunkData           // inside a chunk's data
	chunkDataEnd        // expecting the CRLF after a chunk's data
	chunkTrailer        // expecting a trailer field or the final empty line
	chunkDone
)

// chunkScanner validates a chunked body as it streams past, so that a proxy can pass the bytes
// through as they are and still know where the body ends. It is strict: sizes are 1 to 15 hex
// digits, lines end in CRLF, and anything else is errBadChunk.
type chunkScanner struct {
	state   int
	left    int64 // data bytes left in the current chunk
	trailer int   // trailer bytes seen
}

// scan consumes p as far as it forms whole framing lines and data, and returns how many bytes
// it consumed. A line cut off at the end of p is left for the next call (more data needed).
// When decode is set, the chunks' data is appended to out (framing and trailers dropped).
func (c *chunkScanner) scan(p []byte, decode bool, out []byte) (n int, o []byte, err error) {
	for n < len(p) && c.state != chunkDone {
		switch c.state {
		case chunkSize:
			i := bytes.IndexByte(p[n:], '\n')
			if i < 0 {
				if len(p)-n > maxChunkLine {
					return n, out, errBadChunk
				}
				return n, out, nil
			}
			size, ok := parseChunkSize(p[n : n+i+1])
			if !ok {
				return n, out, errBadChunk
			}
			n += i + 1
			if size == 0 {
				c.state = chunkTrailer
			} else {
				c.state, c.left = chunkData, size
			}
		case chunkData:
			k := int(min(int64(len(p)-n), c.left))
			if decode {
				out = append(out, p[n:n+k]...)
			}
			n += k
			if c.left -= int64(k); c.left == 0 {
				c.state = chunkDataEnd
			}
		case chunkDataEnd:
			if len(p)-n < 2 {
				if p[n] != '\r' {
					return n, out, errBadChunk
				}
				return n, out, nil
			}
			if p[n] != '\r' || p[n+1] != '\n' {
				return n, out, errBadChunk
			}
			n += 2
			c.state = chunkSize
		case chunkTrailer:
			i := bytes.IndexByte(p[n:], '\n')
			if i < 0 {
				if c.trailer+len(p)-n > maxTrailer {
					return n, out, errBadChunk
				}
				return n, out, nil
			}
			line := p[n : n+i+1]
			if len(line) < 2 || line[len(line)-2] != '\r' {
				return n, out, errBadChunk
			}
			if c.trailer += len(line); c.trailer > maxTrailer {
				return n, out, errBadChunk
			}
			n += i + 1
			if len(line) == 2 {
				c.state = chunkDone
			}
		}
	}
	return n, out, nil
}

func (c *chunkScanner) done() bool { return c.state == chunkDone }

// parseChunkSize parses a chunk-size line through its "\r\n": hex digits, then optionally
// whitespace and chunk extensions (";name=value", not interpreted).
func parseChunkSize(line []byte) (int64, bool) {
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return 0, false
	}
	line = line[:len(line)-2]
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
	if len(rest) > 0 {
		if rest[0] != ';' {
			return 0, false
		}
		for _, c := range rest {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return 0, false
			}
		}
	}
	return n, true
}
