package conformance

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// answer is what a client saw after sending a case's bytes on a fresh connection.
type answer struct {
	statuses []int // final statuses, in order
	serials  []int // the X-Serial of each final response (0 when it had none)
	eof      bool  // the proxy closed the connection
	reset    bool  // the connection was reset
	timeout  bool  // fewer responses than requests came within the deadline
	writeErr bool  // the request could not be written whole
	first    []byte
}

// Timing of one exchange: the whole of it, and how long to wait for more once every request
// has its response (a response too many is a sign of one request become two).
const (
	exchangeDeadline = 2 * time.Second
	extraWait        = 150 * time.Millisecond
)

// exchange sends raw on a fresh connection to addr and reads responses until the proxy closes,
// the deadline passes, or want responses came and nothing more arrived for extraWait. heads
// marks which of the requests are HEAD (their responses have no body).
func exchange(addr string, raw []byte, want int, heads []bool) answer {
	var a answer
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		a.reset = true
		return a
	}
	defer c.Close()
	end := time.Now().Add(exchangeDeadline)
	c.SetDeadline(end)
	wrote := make(chan bool, 1)
	go func() {
		_, err := c.Write(raw)
		wrote <- err == nil
	}()
	var got []byte
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		rs := parseResponses(got, heads)
		if len(rs) >= want {
			c.SetReadDeadline(minTime(end, time.Now().Add(extraWait)))
		}
		if err == nil {
			continue
		}
		a.statuses, a.serials = nil, nil
		for _, r := range parseResponses(got, heads) {
			a.statuses = append(a.statuses, r.status)
			a.serials = append(a.serials, r.serial)
		}
		var ne net.Error
		switch {
		case errors.Is(err, io.EOF):
			a.eof = true
		case errors.Is(err, syscall.ECONNRESET):
			a.reset = true
		case errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded):
			a.timeout = len(a.statuses) < want
		default:
			a.reset = true
		}
		break
	}
	c.Close()
	if !<-wrote {
		a.writeErr = true
	}
	a.first = clip(got, 120)
	return a
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// response is one response a client read.
type response struct {
	status int
	serial int
}

// parseResponses returns the complete final responses at the start of b (1xx responses are
// skipped). A response framed by the connection's end counts once the bytes stop.
func parseResponses(b []byte, heads []bool) []response {
	var out []response
	for len(b) > 0 {
		end := bytes.Index(b, []byte("\r\n\r\n"))
		if end < 0 {
			return out
		}
		head := string(b[:end])
		b = b[end+4:]
		lines := strings.Split(head, "\r\n")
		f := strings.Fields(lines[0])
		if len(f) < 2 {
			return out
		}
		status, err := strconv.Atoi(f[1])
		if err != nil {
			return out
		}
		if status >= 100 && status < 200 {
			continue
		}
		r := response{status: status}
		length, chunked := -1, false
		for _, l := range lines[1:] {
			name, value, _ := strings.Cut(l, ":")
			value = strings.TrimSpace(value)
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "x-serial":
				r.serial, _ = strconv.Atoi(value)
			case "content-length":
				length, _ = strconv.Atoi(value)
			case "transfer-encoding":
				chunked = strings.Contains(strings.ToLower(value), "chunked")
			}
		}
		head1 := len(out) < len(heads) && heads[len(out)]
		switch {
		case head1 || status == 204 || status == 304:
		case chunked:
			m := message{}
			n, ok := m.readChunks(b, 0)
			if !ok {
				return out
			}
			b = b[n:]
		case length >= 0:
			if len(b) < length {
				return out
			}
			b = b[length:]
		default:
			b = nil // ends with the connection
		}
		out = append(out, r)
	}
	return out
}
