package fastpath

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"hcproxy/shm"
)

// seenRequest is a request as a strict upstream parsed it.
type seenRequest struct {
	seq     int
	Method  string
	path    string
	bodyLen int
}

// strictBackend parses what the proxy sends it with net/http's request parser and answers each
// request with its sequence number (X-Seq). Bytes it cannot parse are recorded as garbage: a
// proxy must never send those.
type strictBackend struct {
	mu      sync.Mutex
	seq     int
	seen    []seenRequest
	garbage [][]byte
}

func (b *strictBackend) serve(c net.Conn) {
	defer c.Close()
	var raw bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &raw))
	for {
		req, err := http.ReadRequest(br)
		if err == io.EOF {
			return
		}
		var body []byte
		if err == nil {
			body, err = io.ReadAll(req.Body)
		}
		b.mu.Lock()
		if err != nil {
			if !isClosedErr(err) {
				b.garbage = append(b.garbage, append([]byte(nil), raw.Bytes()...))
			}
			b.mu.Unlock()
			return
		}
		b.seq++
		seq := b.seq
		b.seen = append(b.seen, seenRequest{seq, req.Method, req.URL.Path, len(body)})
		b.mu.Unlock()
		raw.Reset()
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Seq: "+strconv.Itoa(seq)+"\r\nContent-Length: 2\r\n\r\nok")
	}
}

func isClosedErr(err error) bool {
	if err == io.ErrUnexpectedEOF {
		return true
	}
	var ne net.Error
	return err != nil && (strings.Contains(err.Error(), "use of closed") || strings.Contains(err.Error(), "reset by peer") ||
		(asNetError(err, &ne) && ne.Timeout()))
}

func asNetError(err error, ne *net.Error) bool {
	e, ok := err.(net.Error)
	if ok {
		*ne = e
	}
	return ok
}

// FuzzEngine drives the whole fast engine: the input is what one client sends on one
// connection (then it half-closes); a strict backend parses what reaches it. The invariants:
//   - everything the proxy sends upstream parses as HTTP/1.1 (no garbage);
//   - every request the backend saw was answered to this client (one request in, at most one
//     out: a request nobody answered is one the client smuggled in);
//   - where net/http's parser reads the same client bytes, each forwarded request has the
//     method, path and body length that parser found (the body length as framed).
func FuzzEngine(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a?b HTTP/1.0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X\r\nUpgrade: websocket\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
	} {
		f.Add([]byte(s))
	}
	for _, s := range []string{
		"POST /hop HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\nContent-Length: 35\r\n\r\nGET /SMUGGLED HTTP/1.1\r\nHost: t\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: v\r\n\r\nGET /2 HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET http://x:1/p HTTP/1.1\r\nHost: t\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.2\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	be := &strictBackend{}
	beAddr := rawServer(f, be.serve)
	o := Options{ClientHeaderTimeout: 2 * time.Second, ClientIdleTimeout: 2 * time.Second}
	o.ReadTimeout = 2 * time.Second
	_, addr := startFast(f, o, servers(f, shm.Up, beAddr))

	f.Fuzz(func(t *testing.T, in []byte) {
		be.mu.Lock()
		from := len(be.seen)
		be.mu.Unlock()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			c.Write(in)
			c.(*net.TCPConn).CloseWrite()
		}()
		// Every response the client got; the seqs of those the backend answered.
		answered := map[int]bool{}
		br := bufio.NewReader(c)
		for {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				break
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if n, err := strconv.Atoi(resp.Header.Get("X-Seq")); err == nil {
				answered[n] = true
			}
		}
		io.Copy(io.Discard, br) // to the proxy's close
		// The backend has parsed whatever it will (its answers reached the client, or nothing did).
		var seen []seenRequest
		deadline := time.Now().Add(2 * time.Second)
		for {
			be.mu.Lock()
			seen = append(seen[:0], be.seen[from:]...)
			garbage := len(be.garbage)
			be.mu.Unlock()
			if garbage > 0 {
				be.mu.Lock()
				g := be.garbage[0]
				be.mu.Unlock()
				t.Fatalf("the proxy sent what a strict parser refuses: %q (client sent %q)", g, in)
			}
			all := true
			for _, r := range seen {
				all = all && answered[r.seq]
			}
			if all || time.Now().After(deadline) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, r := range seen {
			if !answered[r.seq] {
				t.Fatalf("the backend saw %s %s (seq %d) that no client response answers: one request became two (client sent %q)", r.Method, r.path, r.seq, in)
			}
		}
		// Compare with net/http's reading of the same bytes, as far as it reads them.
		cr := bufio.NewReader(bytes.NewReader(skipCRLF(in)))
		for i := 0; i < len(seen); i++ {
			req, err := http.ReadRequest(cr)
			if err != nil {
				break
			}
			body, err := io.ReadAll(req.Body)
			if err != nil {
				break
			}
			if r := seen[i]; r.Method != req.Method || r.bodyLen != len(body) {
				t.Fatalf("request %d: forwarded %s with %d body bytes, net/http reads %s with %d (client sent %q)", i, r.Method, r.bodyLen, req.Method, len(body), in)
			}
			cr = bufio.NewReader(bytes.NewReader(skipCRLF(rest(cr))))
		}
	})
}

func skipCRLF(b []byte) []byte { return bytes.TrimLeft(b, "\r\n") }

func rest(br *bufio.Reader) []byte {
	b, _ := io.ReadAll(br)
	return b
}
