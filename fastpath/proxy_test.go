package fastpath

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"hcproxy/shm"
	"hcproxy/upstream"
)

func echoHandler(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Got-Length", fmt.Sprint(len(b)))
	w.Write(b)
}

// upstreamView is what the comparison of the two paths looks at in a request an upstream
// received. The defined differences between net/http's ReverseProxy and the fast path:
//   - framing: Content-Length and Transfer-Encoding are left out and the decoded bodies compared
//     (net/http re-chunks a chunked body and may add Content-Length: 0 to an empty POST, the fast
//     path passes the client's framing as it is);
//   - Accept-Encoding, when the client sent none: net/http's transport adds "gzip" (and
//     decompresses the answer), the fast path adds nothing;
//   - Expect: the fast path answers 100-continue itself and drops the header, net/http passes
//     it on;
//   - header names: net/http canonicalizes them and sorts the fields, the fast path keeps the
//     client's spelling and order; the comparison canonicalizes names and compares each field's
//     values in order.
//
// Everything else must be equal: request line, Host, every end-to-end header, X-Forwarded-For,
// -Host and -Proto, the request id, and no hop-by-hop header (Connection and the headers it
// names, Keep-Alive, Proxy-Connection, TE but "trailers", Trailer, Upgrade, Proxy-Authorization).
type upstreamView struct {
	Method, Target, Proto, Host string
	Header                      map[string][]string
	Body                        string
}

func viewOf(r *http.Request, clientSentAE bool) upstreamView {
	h := map[string][]string{}
	for k, v := range r.Header {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Expect":
			continue
		case "Accept-Encoding":
			if !clientSentAE {
				continue
			}
		}
		h[k] = v
	}
	body, _ := io.ReadAll(r.Body)
	return upstreamView{Method: r.Method, Target: r.RequestURI, Proto: r.Proto, Host: r.Host, Header: h, Body: string(body)}
}

// The same requests through net/http's ReverseProxy (the std engine) and through the fast path
// reach the upstream the same, but for the differences upstreamView defines.
func TestSameUpstreamRequestsAsNetHTTP(t *testing.T) {
	cases := []string{
		"GET / HTTP/1.1\r\nHost: shop.example\r\nX-Request-ID: r1\r\n\r\n",
		"GET /a/b?c=d&e=%20f HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: curl/8\r\nAccept: */*\r\nX-Request-ID: r2\r\nCookie: a=b\r\nCookie: c=d\r\n\r\n",
		"GET /hop HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: 5\r\nProxy-Connection: keep-alive\r\nTE: trailers, deflate\r\nTrailer: X\r\nUpgrade: h2c\r\nProxy-Authorization: Basic x\r\nX-Request-ID: r3\r\n\r\n",
		"GET /xff HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: evil\r\nX-Forwarded-Proto: https\r\nForwarded: for=1.2.3.4\r\nX-Request-ID: r4\r\n\r\n",
		"POST /form HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\nX-Request-ID: r5\r\n\r\nhello=world",
		"POST /chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-Request-ID: r6\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n",
		"PUT /big HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\nAccept-Encoding: br\r\nX-Request-ID: r7\r\n\r\n" + strings.Repeat("x", 100000),
		"POST /expect HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\nX-Request-ID: r8\r\n\r\nbody",
		"DELETE /x HTTP/1.1\r\nHost: h:8080\r\nx-lower-case: v\r\nX-Multi: 1\r\nX-Multi: 2\r\nX-Request-ID: r9\r\n\r\n",
		"GET /http10 HTTP/1.0\r\nHost: old\r\nX-Request-ID: r10\r\n\r\n",
	}
	run := func(addr string) []*http.Request {
		rec := newRecorder(t, echoHandler)
		ss := servers(t, shm.Up, rec.addr())
		o := upstream.Options{RequestIDHeader: "X-Request-ID"}
		var proxy string
		if addr == "fast" {
			_, proxy = startFast(t, Options{Options: o}, ss)
		} else {
			proxy = startStd(t, o, ss)
		}
		for _, raw := range cases {
			c := dial(t, proxy)
			resp, _ := c.do(raw)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %q: %s", addr, firstLine(raw), resp.Status)
			}
		}
		// In the order of the cases (their request ids), not of the upstream connections: a
		// request may go out on a new connection while the one before it is still on its way
		// back to the pool.
		reqs := rec.requests(t)
		id := func(r *http.Request) int {
			n, _ := strconv.Atoi(strings.TrimPrefix(r.Header.Get("X-Request-ID"), "r"))
			return n
		}
		sort.SliceStable(reqs, func(i, j int) bool { return id(reqs[i]) < id(reqs[j]) })
		return reqs
	}
	fast, std := run("fast"), run("std")
	if len(fast) != len(cases) || len(std) != len(cases) {
		t.Fatalf("upstream got %d requests by the fast path, %d by net/http, want %d", len(fast), len(std), len(cases))
	}
	for i, raw := range cases {
		ae := strings.Contains(raw, "Accept-Encoding")
		f, s := viewOf(fast[i], ae), viewOf(std[i], ae)
		if !reflect.DeepEqual(f, s) {
			t.Errorf("%q reached the upstream differently:\nfast: %+v\nstd:  %+v", firstLine(raw), f, s)
		}
	}
	// What the differences allow must still hold on the fast path's side.
	for i, r := range fast {
		if r.Header.Get("Expect") != "" || r.Header.Get("Connection") != "" || r.Header.Get("X-Secret") != "" {
			t.Errorf("request %d kept a hop-by-hop header: %v", i, r.Header)
		}
		if r.Header.Get("X-Forwarded-For") != "127.0.0.1" {
			t.Errorf("request %d: X-Forwarded-For %q", i, r.Header.Values("X-Forwarded-For"))
		}
	}
}

// N requests over one client connection use one upstream connection.
func TestKeepAliveReusesOneUpstreamConnection(t *testing.T) {
	rec := newRecorder(t, echoHandler)
	_, addr := startFast(t, Options{}, servers(t, shm.Up, rec.addr()))
	c := dial(t, addr)
	for i := 0; i < 50; i++ {
		resp, _ := c.do(fmt.Sprintf("GET /n%d HTTP/1.1\r\nHost: a\r\n\r\n", i))
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("request %d: %s close=%v", i, resp.Status, resp.Close)
		}
	}
	if n := rec.accepts.Load(); n != 1 {
		t.Errorf("50 requests over one client connection used %d upstream connections, want 1", n)
	}
}

// Chunked bodies pass both ways: the upstream decodes the client's chunks, and the client
// decodes the upstream's chunked response; the connection stays usable after each.
func TestChunkedBodies(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		for i := 0; i < 3; i++ {
			fmt.Fprintf(w, "[%s]", b)
			w.(http.Flusher).Flush() // no Content-Length: chunked
		}
	})
	_, addr := startFast(t, Options{}, servers(t, shm.Up, rec.addr()))
	c := dial(t, addr)
	for i := 0; i < 3; i++ {
		resp, body := c.do("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n")
		if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" || body != "[abcde][abcde][abcde]" {
			t.Fatalf("request %d: te=%v body %q", i, resp.TransferEncoding, body)
		}
	}
	// A chunked body that arrives in pieces, slower than the head.
	io.WriteString(c.c, "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nsl")
	time.Sleep(50 * time.Millisecond)
	io.WriteString(c.c, "ow\r\n0\r\n\r\n")
	if _, body := c.read("POST"); body != "[slow][slow][slow]" {
		t.Fatalf("streamed chunked body: %q", body)
	}
	// An HTTP/1.0 client gets the body decoded, and the connection closes after it.
	c10 := dial(t, addr)
	resp, body := c10.do("POST / HTTP/1.0\r\nHost: a\r\nContent-Length: 2\r\n\r\nxy")
	if len(resp.TransferEncoding) != 0 || body != "[xy][xy][xy]" || !c10.closed(2*time.Second) {
		t.Fatalf("HTTP/1.0 client: te=%v body %q", resp.TransferEncoding, body)
	}
}

// A 50 MB response streams through with the heap far below its size.
func TestLargeBodyStreamsInBoundedMemory(t *testing.T) {
	const size = 50 << 20
	chunk := make([]byte, 64<<10)
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Length", fmt.Sprint(size))
		for n := 0; n < size; n += len(chunk) {
			w.Write(chunk)
		}
	})
	rec.discard.Store(true)
	_, addr := startFast(t, Options{}, servers(t, shm.Up, rec.addr()))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()
	for _, raw := range []string{
		"GET /big HTTP/1.1\r\nHost: a\r\n\r\n",
		// and an upload of the same size
		"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: " + fmt.Sprint(size) + "\r\n\r\n",
	} {
		c := dial(t, addr)
		io.WriteString(c.c, raw)
		if strings.HasPrefix(raw, "POST") {
			go func() {
				for n := 0; n < size; n += len(chunk) {
					if _, err := c.c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || (strings.HasPrefix(raw, "GET") && n != size) {
			t.Fatalf("%s: %d bytes, %v", firstLine(raw), n, err)
		}
	}
	close(stop)
	grown := int64(peak.Load()) - int64(before.HeapInuse)
	t.Logf("heap in use grew by at most %d KiB while 2 x 50 MiB passed", grown>>10)
	if grown > 8<<20 {
		t.Errorf("heap in use grew by %d MiB while 50 MiB passed: the body is buffered", grown>>20)
	}
}

// A WebSocket upgrade passes through: 101, then bytes both ways until one side closes.
func TestWebSocketPassThrough(t *testing.T) {
	be := rawServer(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil || req.Header.Get("Upgrade") != "websocket" || !strings.EqualFold(req.Header.Get("Connection"), "upgrade") {
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
		io.Copy(c, br) // echo
	})
	_, addr := startFast(t, Options{}, servers(t, shm.Up, be))
	c := dial(t, addr)
	io.WriteString(c.c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "websocket" {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	for _, msg := range []string{"hello", "over the proxy", strings.Repeat("x", 300000)} {
		go io.WriteString(c.c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c.br, got); err != nil || string(got) != msg {
			t.Fatalf("echo of %d bytes: %v", len(msg), err)
		}
	}
	c.c.(*net.TCPConn).CloseWrite()
	if !c.closed(2 * time.Second) {
		t.Error("the upgraded connection stayed open after the client closed its side")
	}
}

// Request smuggling attempts and malformed heads are answered 400 (431 for a head too large)
// and the connection is closed; nothing reaches the upstream.
func TestMalformedRequestsAreRefusedAndClosed(t *testing.T) {
	rec := newRecorder(t, echoHandler)
	_, addr := startFast(t, Options{MaxHeadBytes: 4 << 10}, servers(t, shm.Up, rec.addr()))
	cases := []struct {
		name, raw string
		status    int
	}{
		{"CL+TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"TE+CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
		{"two CLs", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400},
		{"CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nhello", 400},
		{"CL sign", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello", 400},
		{"bad chunk size", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400},
		{"chunk size overflow", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\nx\r\n0\r\n\r\n", 400},
		{"chunk without CRLF", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", 400},
		{"TE not chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400},
		{"invalid method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"bad version", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 400},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400},
		{"head too large", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("a", 5000) + "\r\n\r\n", 431},
	}
	for _, tc := range cases {
		c := dial(t, addr)
		resp, _ := c.do(tc.raw)
		if resp.StatusCode != tc.status {
			t.Errorf("%s: %s, want %d", tc.name, resp.Status, tc.status)
		}
		if !c.closed(2 * time.Second) {
			t.Errorf("%s: connection left open", tc.name)
		}
	}
	for _, r := range rec.requests(t) {
		if r.URL.Path != "/" || r.Method == "POST" {
			t.Errorf("a malformed request reached the upstream: %s %s", r.Method, r.URL)
		}
	}
}

// A client that sends its head slower than the header timeout is disconnected.
func TestSlowlorisIsDisconnected(t *testing.T) {
	rec := newRecorder(t, echoHandler)
	_, addr := startFast(t, Options{ClientHeaderTimeout: 300 * time.Millisecond}, servers(t, shm.Up, rec.addr()))
	c := dial(t, addr)
	start := time.Now()
	var err error
	for i := 0; i < 100 && err == nil; i++ {
		_, err = io.WriteString(c.c, "X-Slow: "+fmt.Sprint(i)+"\r\n")
		if i == 0 {
			_, err = io.WriteString(c.c, "GET / HTTP/1.1\r\nHost: a\r\n")
		}
		time.Sleep(50 * time.Millisecond)
		c.c.SetReadDeadline(time.Now().Add(time.Millisecond))
		if _, rerr := c.br.ReadByte(); rerr == io.EOF {
			break
		}
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("a slow head kept its connection for %v (header timeout 300ms)", took)
	}
	if rec.accepts.Load() != 0 {
		t.Error("the slow request reached the upstream")
	}
}

// A server that refuses connections costs the client nothing: the request is retried on the
// other server; with every server down the answer is 503.
func TestRetryOnRefusedAndAllDown(t *testing.T) {
	rec := newRecorder(t, echoHandler)
	ss := servers(t, shm.Up, closedAddr(t), rec.addr())
	_, addr := startFast(t, Options{Options: upstream.Options{Retry: upstream.RetryPolicy{Tries: 1, On: upstream.ParseFailures([]string{"connect"})}}}, ss)
	for i := 0; i < 10; i++ {
		c := dial(t, addr)
		if resp, _ := c.do("GET / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %s", i, resp.Status)
		}
	}
	_, addr = startFast(t, Options{}, servers(t, shm.Down, rec.addr(), closedAddr(t)))
	c := dial(t, addr)
	resp, body := c.do("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != 503 || body != "Service Unavailable\n" {
		t.Fatalf("all down: %s %q", resp.Status, body)
	}
	// Only a refused one, no retry possible: 502.
	_, addr = startFast(t, Options{}, servers(t, shm.Up, closedAddr(t)))
	if resp, _ := dial(t, addr).do("GET / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 502 {
		t.Fatalf("refused: %s", resp.Status)
	}
}

// A silent upstream is 504 after the read timeout.
func TestUpstreamTimeoutIs504(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // reads nothing, answers nothing
		}
	}()
	_, addr := startFast(t, Options{Options: upstream.Options{ReadTimeout: 200 * time.Millisecond}}, servers(t, shm.Up, ln.Addr().String()))
	if resp, _ := dial(t, addr).do("GET / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 504 {
		t.Fatalf("silent upstream: %s", resp.Status)
	}
}

// After Drain a keep-alive client gets Connection: close on its next response, an idle
// connection is closed after IdleGrace, and Serve returns.
func TestDrainSaysConnectionClose(t *testing.T) {
	rec := newRecorder(t, echoHandler)
	s, addr := startFast(t, Options{}, servers(t, shm.Up, rec.addr()))
	busy, idle := dial(t, addr), dial(t, addr)
	for _, c := range []*client{busy, idle} {
		if resp, _ := c.do("GET / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.Close {
			t.Fatal("Connection: close before the drain")
		}
	}
	s.Drain()
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("the listener still accepts after Drain")
	}
	resp, _ := busy.do("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if !resp.Close {
		t.Error("a response after Drain lacks Connection: close")
	}
	if !busy.closed(2 * time.Second) {
		t.Error("the connection stayed open after Connection: close")
	}
	start := time.Now()
	if !idle.closed(3 * time.Second) {
		t.Fatal("an idle connection stayed open during the drain")
	}
	t.Logf("idle connection closed %v after the drain began", time.Since(start).Round(10*time.Millisecond))
	eventually(t, "no connections left", 3*time.Second, func() bool { return s.Conns() == 0 })
}

// Response headers: hop-by-hop ones removed, the request id set, the body's framing kept.
func TestResponseHeaders(t *testing.T) {
	rec := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "1")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Request-ID", "upstream-made")
		w.Header().Set("X-End", "e")
		io.WriteString(w, "ok")
	})
	_, addr := startFast(t, Options{Options: upstream.Options{RequestIDHeader: "X-Request-ID", Via: true}}, servers(t, shm.Up, rec.addr()))
	resp, body := dial(t, addr).do("GET / HTTP/1.1\r\nHost: a\r\nX-Request-ID: mine\r\n\r\n")
	h := resp.Header
	if body != "ok" || h.Get("X-Hop") != "" || h.Get("Keep-Alive") != "" || h.Get("X-End") != "e" || h.Values("X-Request-Id")[0] != "mine" || len(h.Values("X-Request-Id")) != 1 || h.Get("Via") != "1.1 hcproxy" {
		t.Errorf("response: %q %v", body, h)
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	t.Logf("client saw headers %v", keys)
}

// An idle keep-alive connection that the server half-closed and lingers on (it shut its side
// down and reads and drops what comes, as Apache's lingering close does) is not mistaken for a
// slow server: the next request finds the end of the stream at once and goes out again on a
// new connection, long before the read timeout.
func TestHalfClosedIdleUpstreamConnectionIsReplaced(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var accepts atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := accepts.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n"+strconv.FormatInt(n, 10))
				if n > 1 {
					return // the replacement connection: answered, then closed
				}
				c.(*net.TCPConn).CloseWrite() // half-close the first, and linger
				c.SetReadDeadline(time.Now().Add(10 * time.Second))
				io.Copy(io.Discard, br)
			}()
		}
	}()
	// A wait on the lingering connection would end at the read timeout in a 504 (no retries).
	_, addr := startFast(t, Options{Options: upstream.Options{ReadTimeout: 3 * time.Second}}, servers(t, shm.Up, ln.Addr().String()))
	c := dial(t, addr)
	if resp, body := c.do("GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 || body != "1" {
		t.Fatalf("first request: %s %q", resp.Status, body)
	}
	time.Sleep(100 * time.Millisecond) // the FIN is in
	start := time.Now()
	resp, body := c.do("GET /2 HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != 200 || body != "2" || accepts.Load() != 2 {
		t.Fatalf("request over the half-closed connection: %s %q after %v, %d upstream connections", resp.Status, body, time.Since(start), accepts.Load())
	}
}

// A keep-alive client that sends its requests and at once closes its side (nc -N, a script
// that shuts down the socket and reads to the end) gets every answer and then its EOF, not a
// wait for the idle timeout: the FIN that came in behind the requests must be seen, by each
// engine. (nginx sees it from epoll's EPOLLRDHUP; Go's poller does not tell, so a read after a
// short one must not be skipped.)
func TestClientThatHalfClosesAfterItsRequestsGetsEOF(t *testing.T) {
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			rec := newRecorder(t, echoHandler)
			addr := e.start(t, upstream.Options{}, servers(t, shm.Up, rec.addr()))
			for _, n := range []int{1, 3} {
				c := dial(t, addr)
				reqs := strings.Repeat("GET /x HTTP/1.1\r\nHost: a\r\n\r\n", n)
				if _, err := io.WriteString(c.c, reqs); err != nil {
					t.Fatal(err)
				}
				c.c.(*net.TCPConn).CloseWrite()
				// fast answers them all (as HAProxy does); std, like nginx, takes the half-close
				// for the client going away (net/http cancels the request) and answers 499, or
				// 200 when the answer came before net/http saw the close; then it closes.
				for i := range n {
					resp, _ := c.read("GET /x HTTP/1.1\r\n")
					if e.name == "std" && resp.StatusCode == 499 {
						break
					}
					if resp.StatusCode != 200 {
						t.Fatalf("%d requests: response %d: %s", n, i+1, resp.Status)
					}
				}
				// The idle timeout is 10 s (fast; none for std): the EOF must come long before.
				start := time.Now()
				if !c.closed(3 * time.Second) {
					t.Fatalf("%d requests: the connection stayed open %v after the last answer", n, time.Since(start))
				}
			}
		})
	}
}
