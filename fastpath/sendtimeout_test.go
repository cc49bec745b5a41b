package fastpath

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"hcproxy/shm"
	"hcproxy/upstream"
)

// The send timeouts (nginx's send_timeout and proxy_send_timeout) bound each write, not a whole
// transfer, in both engines: these tests run every case through the fast path and through
// net/http's ReverseProxy (engine = "std").

// engine starts one of the two data paths over ss and returns its address.
type engine struct {
	name  string
	start func(t *testing.T, o upstream.Options, ss []*upstream.Server) string
}

var engines = []engine{
	{"fast", func(t *testing.T, o upstream.Options, ss []*upstream.Server) string {
		_, addr := startFast(t, Options{Options: o}, ss)
		return addr
	}},
	{"std", startStd},
}

// bodyUpstream is a net/http upstream that answers GET /small with "ok" and GET /body?size=N
// with N bytes (with a Content-Length, or chunked with chunked=1), in 64 KiB writes, each
// flushed and followed by a pause with pace=DURATION. cut counts the bodies whose writes failed:
// the proxy closed the connection under them.
type bodyUpstream struct {
	srv *httptest.Server
	cut atomic.Int64
}

func newBodyUpstream(t *testing.T) *bodyUpstream {
	u := &bodyUpstream{}
	chunk := []byte(strings.Repeat("0123456789abcdef", 4<<10)) // 64 KiB
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/small" {
			io.WriteString(w, "ok")
			return
		}
		q := r.URL.Query()
		size, _ := strconv.Atoi(q.Get("size"))
		pace, _ := time.ParseDuration(q.Get("pace"))
		if q.Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.Itoa(size))
		}
		for n := 0; n < size; n += len(chunk) {
			if _, err := w.Write(chunk[:min(len(chunk), size-n)]); err != nil {
				u.cut.Add(1)
				return
			}
			if pace > 0 {
				http.NewResponseController(w).Flush()
				time.Sleep(pace)
			}
		}
	}))
	t.Cleanup(u.srv.Close)
	return u
}

func (u *bodyUpstream) addr() string { return u.srv.Listener.Addr().String() }

// A client that asks for a body far larger than the socket buffers and never reads it is
// disconnected within about client_send_timeout, the upstream connection of its response is
// closed rather than kept for reuse, and other clients are still served.
func TestClientSendTimeoutDisconnectsAStalledClient(t *testing.T) {
	const size = 64 << 20 // more than every socket buffer on the way holds
	for _, e := range engines {
		for _, framing := range []string{"length", "chunked"} {
			t.Run(e.name+"/"+framing, func(t *testing.T) {
				t.Parallel()
				up := newBodyUpstream(t)
				addr := e.start(t, upstream.Options{ReadTimeout: 5 * time.Second, ClientSendTimeout: 300 * time.Millisecond},
					servers(t, shm.Up, up.addr()))
				c := dial(t, addr)
				target := fmt.Sprintf("/body?size=%d", size)
				if framing == "chunked" {
					target += "&chunked=1"
				}
				start := time.Now()
				io.WriteString(c.c, "GET "+target+" HTTP/1.1\r\nHost: a\r\n\r\n")
				eventually(t, "the proxy to give up on the client and close the upstream connection", 5*time.Second,
					func() bool { return up.cut.Load() > 0 })
				t.Logf("the proxy closed the upstream connection %v after the request (client_send_timeout 300ms)",
					time.Since(start).Round(time.Millisecond))

				// What the kernel still holds for the client arrives, then the end: never the whole body,
				// never a connection that stays open.
				c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
				n, err := io.Copy(io.Discard, c.c)
				if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
					t.Fatalf("the stalled client's connection is still open (%d bytes, then silence)", n)
				}
				if n >= size {
					t.Fatalf("the stalled client got all %d bytes", n)
				}
				if resp, body := dial(t, addr).do("GET /small HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 || body != "ok" {
					t.Fatalf("another client after the stalled one: %s %q", resp.Status, body)
				}
			})
		}
	}
}

// A client that reads slower than the whole body could pass within client_send_timeout, but
// keeps the proxy's writes going well within it, gets the whole body: the timeout bounds each
// write, not the response. (A write waits until the kernel takes more of the response, which it
// does once about a third of the proxy's socket buffer, up to 4 MiB on loopback, has drained: the
// client drains that in well under the timeout.)
func TestClientSendTimeoutSparesASteadyReader(t *testing.T) {
	const (
		size    = 12 << 20
		timeout = time.Second
	)
	for _, e := range engines {
		for _, framing := range []string{"length", "chunked"} {
			t.Run(e.name+"/"+framing, func(t *testing.T) {
				t.Parallel()
				up := newBodyUpstream(t)
				addr := e.start(t, upstream.Options{ReadTimeout: 5 * time.Second, ClientSendTimeout: timeout},
					servers(t, shm.Up, up.addr()))
				c := dial(t, addr)
				c.c.SetDeadline(time.Now().Add(30 * time.Second))
				// A fixed receive buffer (no autotuning) far smaller than the body: the proxy has to
				// wait on this client for most of it.
				c.c.(*net.TCPConn).SetReadBuffer(128 << 10)
				target := fmt.Sprintf("/body?size=%d", size)
				if framing == "chunked" {
					target += "&chunked=1"
				}
				io.WriteString(c.c, "GET "+target+" HTTP/1.1\r\nHost: a\r\n\r\n")
				resp, err := http.ReadResponse(c.br, nil)
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				buf := make([]byte, 32<<10)
				got := 0
				for {
					n, err := io.ReadFull(resp.Body, buf)
					got += n
					if err != nil {
						break
					}
					time.Sleep(10 * time.Millisecond) // about 3 MB/s: 32 KiB every 10ms
				}
				took := time.Since(start)
				if got != size {
					t.Fatalf("the steady reader got %d of %d bytes in %v before the proxy cut it off", got, size, took)
				}
				if took < 3*timeout {
					t.Fatalf("the body took %v, not much longer than the send timeout %v: the test proves nothing", took, timeout)
				}
				if up.cut.Load() != 0 {
					t.Error("the upstream's response was cut")
				}
				t.Logf("%d bytes in %v with client_send_timeout %v", got, took.Round(time.Millisecond), timeout)
			})
		}
	}
}

// A response that keeps flowing, but slowly, reaches a client that reads it at once, however
// long the response lasts: client_send_timeout bounds each write, and no write waits on this
// client. (The fast path splices such a body in 1 MiB segments, each of which takes this
// upstream about twice the timeout to send.)
func TestClientSendTimeoutSparesATricklingResponse(t *testing.T) {
	const (
		size    = 2 << 20 // 32 writes of 64 KiB, one every 40ms
		timeout = 300 * time.Millisecond
	)
	for _, e := range engines {
		for _, framing := range []string{"length", "chunked"} {
			t.Run(e.name+"/"+framing, func(t *testing.T) {
				t.Parallel()
				up := newBodyUpstream(t)
				addr := e.start(t, upstream.Options{ReadTimeout: 5 * time.Second, ClientSendTimeout: timeout},
					servers(t, shm.Up, up.addr()))
				target := fmt.Sprintf("/body?size=%d&pace=40ms", size)
				if framing == "chunked" {
					target += "&chunked=1"
				}
				start := time.Now()
				c := dial(t, addr)
				io.WriteString(c.c, "GET "+target+" HTTP/1.1\r\nHost: a\r\n\r\n")
				resp, err := http.ReadResponse(c.br, nil)
				if err != nil {
					t.Fatal(err)
				}
				n, err := io.Copy(io.Discard, resp.Body)
				took := time.Since(start)
				if err != nil || n != size {
					t.Fatalf("the trickling response was cut after %d of %d bytes in %v: %v", n, size, took, err)
				}
				if took < 3*timeout {
					t.Fatalf("the body took %v, not much longer than the send timeout %v: the test proves nothing", took, timeout)
				}
				t.Logf("%d bytes in %v with client_send_timeout %v", n, took.Round(time.Millisecond), timeout)
			})
		}
	}
}

// stallingUpstream listens on loopback, reads the head of each request it accepts and then
// nothing more, and writes answer (nothing when it is ""), until the test ends: a server that
// stopped taking a request body. accepts counts its connections.
func stallingUpstream(t *testing.T, accepts *atomic.Int64, answer string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		close(done)
		ln.Close()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			go func() {
				defer c.Close()
				c.(*net.TCPConn).SetReadBuffer(16 << 10)
				http.ReadRequest(bufio.NewReader(c)) // the head; the body is never read
				io.WriteString(c, answer)
				<-done
			}()
		}
	}()
	return ln.Addr().String()
}

// An upstream that stops reading a request body fails the request after send_timeout without
// progress, not after read_timeout: the client gets 504, the failure counts as a timeout for the
// passive checks (it ejects the server at max_fails = 1), and the request is not retried on the
// other server because part of its body was sent.
func TestSendTimeoutFailsAStalledUpload(t *testing.T) {
	const size = 64 << 20
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			var accepts, ejected atomic.Int64
			ss := servers(t, shm.Up, stallingUpstream(t, &accepts, ""), stallingUpstream(t, &accepts, ""))
			addr := e.start(t, upstream.Options{
				ReadTimeout: 30 * time.Second, SendTimeout: 300 * time.Millisecond,
				Retry:    upstream.RetryPolicy{Tries: 1, On: upstream.ParseFailures([]string{"timeout"})},
				MaxFails: 1, FailTimeout: 10 * time.Second,
				OnEject: func(*upstream.Server, string) { ejected.Add(1) },
			}, ss)
			c := dial(t, addr)
			start := time.Now()
			io.WriteString(c.c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
			go func() {
				chunk := make([]byte, 64<<10)
				for n := 0; n < size; n += len(chunk) {
					if _, err := c.c.Write(chunk); err != nil {
						return // the proxy closed the connection after its answer
					}
				}
			}()
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("no answer to the stalled upload: %v", err)
			}
			resp.Body.Close()
			took := time.Since(start)
			if resp.StatusCode != 504 {
				t.Fatalf("stalled upload: %s, want 504", resp.Status)
			}
			if took > 5*time.Second {
				t.Fatalf("504 after %v: send_timeout is 300ms (read_timeout 30s)", took)
			}
			t.Logf("504 %v after the request began", took.Round(time.Millisecond))
			var passive, errs uint64
			for _, s := range ss {
				in := s.Slot.Info()
				passive += in.Passive
				errs += in.Errors
			}
			// retry_on lists only "timeout": a counted failure is a timeout.
			if passive != 1 || errs != 1 || ejected.Load() != 1 {
				t.Errorf("passive failures %d, errors %d, ejections %d; want 1, 1, 1", passive, errs, ejected.Load())
			}
			if n := accepts.Load(); n != 1 {
				t.Errorf("%d upstream connections: a request whose body was partly sent was retried", n)
			}
		})
	}
}

// A server that answers early (413) and stops reading the request body has its answer relayed,
// not a 504: the send timeout that follows finds the answer waiting.
func TestSendTimeoutRelaysAnEarlyAnswer(t *testing.T) {
	const size = 64 << 20
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			var accepts atomic.Int64
			up := stallingUpstream(t, &accepts, "HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo big\n")
			addr := e.start(t, upstream.Options{ReadTimeout: 30 * time.Second, SendTimeout: 300 * time.Millisecond},
				servers(t, shm.Up, up))
			c := dial(t, addr)
			io.WriteString(c.c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: "+strconv.Itoa(size)+"\r\n\r\n")
			go func() {
				chunk := make([]byte, 64<<10)
				for n := 0; n < size; n += len(chunk) {
					if _, err := c.c.Write(chunk); err != nil {
						return
					}
				}
			}()
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 413 || string(body) != "too big\n" {
				t.Fatalf("early answer: %s %q, want 413", resp.Status, body)
			}
			if !resp.Close {
				t.Error("the rest of the request body is unread, but the connection is kept")
			}
		})
	}
}

// An upgraded connection (WebSocket) has no send timeout on either side, as before the send
// timeouts existed: it stays usable after idling for many send timeouts, and a message far
// larger than the socket buffers passes although the client reads its echo only after a pause
// of many timeouts, so that the proxy's writes both ways wait that long.
func TestTunnelOutlivesSendTimeouts(t *testing.T) {
	up := echoUpgrades(t)
	const timeout = 100 * time.Millisecond
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			ss := servers(t, shm.Up, up)
			addr := e.start(t, upstream.Options{ReadTimeout: 5 * time.Second, SendTimeout: timeout, ClientSendTimeout: timeout}, ss)
			c := dial(t, addr)
			io.WriteString(c.c, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
			resp, err := http.ReadResponse(c.br, nil)
			if err != nil || resp.StatusCode != 101 {
				t.Fatalf("upgrade: %v %v", resp, err)
			}
			echo := func(msg string) {
				t.Helper()
				go io.WriteString(c.c, msg)
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c.br, got); err != nil || string(got) != msg {
					t.Fatalf("echo of %d bytes: %v", len(msg), err)
				}
			}
			echo("before the pause")
			time.Sleep(5 * timeout) // the tunnel idles for five send timeouts
			echo("after the pause")

			const size = 64 << 20
			chunk := []byte(strings.Repeat("0123456789abcdef", 4<<10))
			go func() {
				for n := 0; n < size; n += len(chunk) {
					if _, err := c.c.Write(chunk); err != nil {
						return
					}
				}
			}()
			time.Sleep(5 * timeout) // the client reads nothing meanwhile
			got := make([]byte, len(chunk))
			for n := 0; n < size; n += len(chunk) {
				if _, err := io.ReadFull(c.br, got); err != nil || string(got) != string(chunk) {
					t.Fatalf("echo of a large message: cut after %d of %d bytes: %v", n, size, err)
				}
			}
			// The std engine ends a tunnel on goroutines of its own: wait for the last of them to
			// touch the server's slot before the test unmaps the table.
			c.c.Close()
			eventually(t, "the tunnel to end", 5*time.Second, func() bool { return ss[0].Slot.Active() == 0 })
		})
	}
}

// echoUpgrades is an upstream on loopback that answers every request with 101 and then echoes
// every byte back until the client closes.
func echoUpgrades(t *testing.T) string {
	return rawServer(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(c, br) // echo
	})
}

// A client that pipelines many requests and reads no response until it sent them all gets
// every response, whole and in order, in both engines: the proxy's writes wait on the client
// once the socket buffers are full, a response written from inside the wait for the next
// request (the fast engine's pending response) included, and none is lost or cut.
func TestPipelinedRequestsToAClientThatReadsLate(t *testing.T) {
	const n, size = 400, 12 << 10 // 4.8 MiB of responses: more than the buffers on the way hold
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) {
			t.Parallel()
			up := newBodyUpstream(t)
			addr := e.start(t, upstream.Options{ReadTimeout: 5 * time.Second, ClientSendTimeout: 10 * time.Second},
				servers(t, shm.Up, up.addr()))
			// A small receive buffer, set before the handshake (shrinking it later makes the
			// kernel drop segments already in flight and stall on retransmission backoff).
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				var serr error
				rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4<<10) })
				return serr
			}}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			werr := make(chan error, 1)
			go func() {
				req := fmt.Sprintf("GET /body?size=%d HTTP/1.1\r\nHost: a\r\n\r\n", size)
				for range n {
					if _, err := io.WriteString(c, req); err != nil {
						werr <- err
						return
					}
				}
				werr <- nil
			}()
			time.Sleep(300 * time.Millisecond) // the proxy fills the buffers toward the client
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(c)
			want := strings.Repeat("0123456789abcdef", size/16)
			for i := range n {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d of %d: %v", i+1, n, err)
				}
				body, err := io.ReadAll(resp.Body)
				if err != nil || resp.StatusCode != 200 || string(body) != want {
					t.Fatalf("response %d of %d: %s, %d bytes (want %d), %v (upstream cut %d)", i+1, n, resp.Status, len(body), size, err, up.cut.Load())
				}
			}
			if err := <-werr; err != nil {
				t.Fatalf("sending the requests: %v", err)
			}
		})
	}
}
