package fastpath

// Regression tests for the holes a hostile-input test found in the fast engine (issue 12). Each
// pins one way a client or a server could make one request become two, or make one client's
// answer reach another.

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"hcproxy/shm"
	"hcproxy/upstream"
)

// echoPath answers each request with its path, method and body length, so a client can tell
// whose response it got.
func echoPath(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	io.WriteString(w, r.Method+" "+r.URL.Path+" "+strconv.Itoa(len(body))+" host="+r.Host)
}

// A header named in Connection never takes the framing or Host with it: the server gets one
// request with exactly the body the client's framing says (the fast engine used to drop
// Content-Length and still send the body, which the server read as a second request).
func TestConnectionNamingFramingHeadersDoesNotSmuggle(t *testing.T) {
	smuggled := "GET /SMUGGLED HTTP/1.1\r\nHost: t\r\n\r\n"
	chunkedSmuggle := strconv.FormatInt(int64(len(smuggled)), 16) + "\r\n" + smuggled + "\r\n0\r\n\r\n"
	for _, c := range []struct {
		name, head, body string
		bodyLen          int
	}{
		{"Connection: Content-Length", "POST /hop HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\n", smuggled, len(smuggled)},
		{"Connection: keep-alive, Content-Length", "POST /hop HTTP/1.1\r\nHost: t\r\nConnection: keep-alive, Content-Length\r\n", smuggled, len(smuggled)},
		{"two Connection headers", "POST /hop HTTP/1.1\r\nHost: t\r\nConnection: keep-alive\r\nConnection: content-length\r\n", smuggled, len(smuggled)},
		{"GET with a body", "GET /hop HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\n", smuggled, len(smuggled)},
		{"Connection: Transfer-Encoding", "POST /hop HTTP/1.1\r\nHost: t\r\nConnection: Transfer-Encoding\r\nTransfer-Encoding: chunked\r\n", chunkedSmuggle, len(smuggled)},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := newRecorder(t, echoPath)
			_, addr := startFast(t, Options{}, servers(t, shm.Up, rec.addr()))
			cl := dial(t, addr)
			raw := c.head
			if !strings.Contains(c.head, "Transfer-Encoding") {
				raw += "Content-Length: " + strconv.Itoa(len(c.body)) + "\r\n"
			}
			raw += "\r\n" + c.body
			resp, body := cl.do(raw)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d, body %q", resp.StatusCode, body)
			}
			want := strings.Split(c.head, " ")[0] + " /hop " + strconv.Itoa(c.bodyLen)
			if !strings.HasPrefix(body, want) {
				t.Errorf("the server answered %q, want %q", body, want)
			}
			// A second request on the same client connection gets its own answer.
			if _, body := cl.do("GET /next HTTP/1.1\r\nHost: t\r\n\r\n"); !strings.HasPrefix(body, "GET /next 0") {
				t.Errorf("the next request got %q", body)
			}
			reqs := rec.requests(t)
			if len(reqs) != 2 || reqs[0].URL.Path != "/hop" || reqs[1].URL.Path != "/next" {
				var paths []string
				for _, r := range reqs {
					paths = append(paths, r.Method+" "+r.URL.Path)
				}
				t.Errorf("the server saw %q, want the two requests the client sent", paths)
			}
		})
	}
}

// "Connection: Host" does not make the proxy send a request without Host.
func TestConnectionNamingHostKeepsHost(t *testing.T) {
	rec := newRecorder(t, echoPath)
	_, addr := startFast(t, Options{}, servers(t, shm.Up, rec.addr()))
	_, body := dial(t, addr).do("GET /h HTTP/1.1\r\nHost: example.test\r\nConnection: Host\r\n\r\n")
	if !strings.HasSuffix(body, "host=example.test") {
		t.Errorf("the server answered %q, want Host example.test", body)
	}
}

// The two-client hijack: an attacker smuggles an unfinished head; with the hole open, the next
// client's request (and its cookie) became part of the attacker's request on the shared upstream
// connection, and the victim got the attacker's chosen response.
func TestSmuggledHeadCannotHijackTheNextClient(t *testing.T) {
	var mu sync.Mutex
	var cookies []string // cookies the server saw on requests for /attacker
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/attacker" {
			mu.Lock()
			cookies = append(cookies, r.Header.Get("Cookie"))
			mu.Unlock()
		}
		echoPath(w, r)
	})
	_, addr := startFast(t, keepalive(1), servers(t, shm.Up, rec.addr()))
	unfinished := "GET /attacker HTTP/1.1\r\nHost: t\r\nX-Ignore: "
	attacker := dial(t, addr)
	resp, _ := attacker.do("POST /hop HTTP/1.1\r\nHost: t\r\nConnection: Content-Length\r\nContent-Length: " +
		strconv.Itoa(len(unfinished)) + "\r\n\r\n" + unfinished)
	if resp.StatusCode != 200 {
		t.Fatalf("attacker's request: status %d", resp.StatusCode)
	}
	victim := dial(t, addr)
	victim.c.SetDeadline(time.Now().Add(5 * time.Second))
	resp, body := victim.do("GET /victim HTTP/1.1\r\nHost: t\r\nCookie: session=victim-secret\r\n\r\n")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "GET /victim 0") {
		t.Errorf("the victim got %d %q, want its own response", resp.StatusCode, body)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, c := range cookies {
		if strings.Contains(c, "victim-secret") {
			t.Errorf("the victim's cookie reached the attacker's request: %q", c)
		}
	}
}

// rawBackend is an HTTP/1.1 server written by hand, so that it can misbehave: it answers each
// request with 200 and the request's path, then, when inject is set, sends a second response
// nobody asked for 50 ms later.
type rawBackend struct {
	addr     string
	inject   atomic.Bool
	injected atomic.Int64 // unsolicited responses written
}

func newRawBackend(t *testing.T) *rawBackend {
	b := &rawBackend{}
	b.addr = rawServer(t, b.serve)
	return b
}

func (b *rawBackend) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		body := "path=" + req.URL.Path
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
		if b.inject.Load() {
			time.Sleep(50 * time.Millisecond)
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nINJECTED")
			b.injected.Add(1)
		}
	}
}

// A pooled upstream connection on which the server sent something unasked is not reused: the
// bytes would be read as the next client's response.
func TestUnsolicitedUpstreamResponseIsNeverDelivered(t *testing.T) {
	be := newRawBackend(t)
	be.inject.Store(true)
	_, addr := startFast(t, keepalive(4), servers(t, shm.Up, be.addr))
	for i := range 5 {
		first := dial(t, addr)
		if _, body := first.do("GET /a HTTP/1.1\r\nHost: t\r\n\r\n"); body != "path=/a" {
			t.Fatalf("round %d: first client got %q", i, body)
		}
		want := int64(2*i + 1) // every response is followed by one unsolicited response
		eventually(t, "the unsolicited response", 5*time.Second, func() bool { return be.injected.Load() >= want })
		second := dial(t, addr)
		if _, body := second.do("GET /b HTTP/1.1\r\nHost: t\r\n\r\n"); body != "path=/b" {
			t.Fatalf("round %d: the next client got %q, want its own response", i, body)
		}
		eventually(t, "the second unsolicited response", 5*time.Second, func() bool { return be.injected.Load() >= want+1 })
	}
}

// Chunk-size lines and trailers are checked as strictly as RFC 9112 writes them, and the body
// goes upstream re-framed (no extensions, no trailers), so the server never parses what the
// proxy did not check.
func TestChunkedFramingIsStrictAndReframed(t *testing.T) {
	rec := newRecorder(t, echoPath)
	_, addr := startFast(t, Options{}, servers(t, shm.Up, rec.addr()))
	head := "POST /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
	for name, body := range map[string]string{
		"trailer without a colon": "5\r\nhello\r\n0\r\nGET /SMUGGLED HTTP/1.1\r\n\r\n",
		"trailer obs-fold":        "5\r\nhello\r\n0\r\nA: b\r\n c\r\n\r\n",
		"trailer NUL":             "5\r\nhello\r\n0\r\nA: b\x00c\r\n\r\n",
		"trailer bare CR":         "5\r\nhello\r\n0\r\nA: b\rc\r\n\r\n",
		"trailer space in name":   "5\r\nhello\r\n0\r\nA b: c\r\n\r\n",
		"size then space":         "5 \r\nhello\r\n0\r\n\r\n",
		"size then tab":           "5\t\r\nhello\r\n0\r\n\r\n",
		"size 0x5":                "0x5\r\nhello\r\n0\r\n\r\n",
		"size of 16 digits":       "ffffffffffffffff\r\nhello\r\n0\r\n\r\n",
		"bare LF after size":      "5\nhello\r\n0\r\n\r\n",
	} {
		resp, _ := dial(t, addr).do(head + body)
		if resp.StatusCode != 400 {
			t.Errorf("%s: status %d, want 400", name, resp.StatusCode)
		}
	}
	if reqs := rec.requests(t); len(reqs) != 0 {
		t.Fatalf("the server saw %d requests from refused bodies", len(reqs))
	}
	_, body := dial(t, addr).do(head + "5;ext=1\r\nhello\r\n6 ; e\r\n world\r\n0\r\nX-Trailer: v\r\n\r\n")
	if !strings.HasPrefix(body, "POST /c 11") {
		t.Fatalf("a valid chunked body: got %q", body)
	}
	rec.mu.Lock()
	raw := rec.raw[len(rec.raw)-1].String()
	rec.mu.Unlock()
	if i := strings.Index(raw, "\r\n\r\n"); i < 0 || raw[i+4:] != "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" {
		t.Errorf("the server got %q, want the body re-framed without extensions and trailers", raw)
	}
}

// A refused request gets its status before the connection closes, even when the client is
// still sending: the proxy closes lingering (nginx's lingering_close), not with a reset.
func TestHugeHeadGets431NotReset(t *testing.T) {
	rec := newRecorder(t, echoPath)
	_, addr := startFast(t, Options{}, servers(t, shm.Up, rec.addr()))
	cl := dial(t, addr)
	// Like curl, the client writes its whole request before it reads: a proxy that closes with
	// the rest unread resets the connection, and the write fails before the answer is read.
	if _, err := io.WriteString(cl.c, "GET / HTTP/1.1\r\nHost: t\r\nX-Big: "+strings.Repeat("a", 32<<20)+"\r\n\r\n"); err != nil {
		t.Fatalf("writing a 32 MiB head: %v (the proxy reset the connection)", err)
	}
	resp, err := http.ReadResponse(cl.br, nil)
	if err != nil {
		t.Fatalf("reading the answer to a 32 MiB head: %v", err)
	}
	if resp.StatusCode != 431 {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
}

// Request targets nginx and HAProxy refuse are refused; an absolute-form target's authority
// replaces Host (RFC 9112 section 3.2.2); a higher HTTP/1 minor version and leading empty
// lines are accepted as the peers accept them.
func TestRequestTargetsAndHost(t *testing.T) {
	rec := newRecorder(t, echoPath)
	_, addr := startFast(t, Options{}, servers(t, shm.Up, rec.addr()))
	for _, raw := range []string{
		"GET rl HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET t:80 HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET http://user:pw@t/ HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET * HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET ftp://t/ HTTP/1.1\r\nHost: t\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: t\r\n\r\n",
	} {
		if resp, _ := dial(t, addr).do(raw); resp.StatusCode != 400 && resp.StatusCode != 505 {
			t.Errorf("%q: status %d, want 400", firstLine(raw), resp.StatusCode)
		}
	}
	if n := len(rec.requests(t)); n != 0 {
		t.Fatalf("the server saw %d refused requests", n)
	}
	for raw, want := range map[string]string{
		"GET http://other.test:8080/p?q HTTP/1.1\r\nHost: t\r\n\r\n": "GET /p 0 host=other.test:8080",
		"GET / HTTP/1.2\r\nHost: t\r\n\r\n":                          "GET / 0 host=t",
		"\r\n\r\n\r\n\r\n\r\nGET /lead HTTP/1.1\r\nHost: t\r\n\r\n":  "GET /lead 0 host=t",
	} {
		resp, body := dial(t, addr).do(raw)
		if resp.StatusCode != 200 || body != want {
			t.Errorf("%q: %d %q, want %q", strings.TrimLeft(firstLine(raw), "\r\n"), resp.StatusCode, body, want)
		}
	}
}

func keepalive(n int) Options {
	var o Options
	o.Keepalive = n
	return o
}

// A request body that stalls is cut off by client_idle_timeout (each body read is bounded), the
// connection closed with no answer and the request logged as 408, as the std engine and nginx.
func TestStalledRequestBodyIsClosedAndLogged408(t *testing.T) {
	rec := newRecorder(t, echoPath)
	var log syncBuffer
	o := Options{ClientIdleTimeout: 300 * time.Millisecond}
	o.AccessLog = upstream.NewAccessLog("combined", &log)
	_, addr := startFast(t, o, servers(t, shm.Up, rec.addr()))
	for name, raw := range map[string]string{
		"Content-Length": "POST /s HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nhello",
		"chunked":        "POST /s HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
	} {
		cl := dial(t, addr)
		io.WriteString(cl.c, raw)
		if !cl.closed(5 * time.Second) {
			t.Errorf("%s: a stalled body kept the connection open", name)
		}
	}
	eventually(t, "two 408 lines in the access log", 5*time.Second, func() bool {
		return strings.Count(log.String(), "\" 408 ") == 2
	})
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The proxy's side of the rules it shares with the probe (internal/h1): a request with
// Content-Length "5, 5" is refused, and a server's response with a status above 599 is a 502.
func TestProxySideOfTheSharedRules(t *testing.T) {
	rec := newRecorder(t, echoPath)
	_, addr := startFast(t, Options{}, servers(t, shm.Up, rec.addr()))
	if resp, _ := dial(t, addr).do("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello"); resp.StatusCode != 400 {
		t.Errorf("Content-Length 5, 5: status %d, want 400", resp.StatusCode)
	}
	be := newRawStatusBackend(t, "HTTP/1.1 600 Odd\r\nContent-Length: 2\r\n\r\nok")
	_, addr2 := startFast(t, Options{}, servers(t, shm.Up, be))
	if resp, _ := dial(t, addr2).do("GET / HTTP/1.1\r\nHost: t\r\n\r\n"); resp.StatusCode != 502 {
		t.Errorf("a response with status 600: status %d, want 502", resp.StatusCode)
	}
}

// newRawStatusBackend answers every request head with resp.
func newRawStatusBackend(t *testing.T, resp string) string {
	return rawServer(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, resp)
		}
	})
}
