package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"hcproxy/internal/backend"
	"hcproxy/status"
)

// timeoutBackend is an upstream for the send timeouts: GET /health passes, GET /big sends 64 MiB
// (cut counts the times the proxy closed the connection under it), and POST /upload reads
// nothing of its body and answers nothing until the test ends.
type timeoutBackend struct {
	srv *httptest.Server
	cut atomic.Int64
}

const bigBody = 64 << 20 // more than every socket buffer on the way holds

func newTimeoutBackend(t *testing.T) *timeoutBackend {
	b := &timeoutBackend{}
	done := make(chan struct{})
	chunk := []byte(strings.Repeat("0123456789abcdef", 4<<10))
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			io.WriteString(w, "ok\n")
		case "/big":
			w.Header().Set("Content-Length", strconv.Itoa(bigBody))
			for n := 0; n < bigBody; n += len(chunk) {
				if _, err := w.Write(chunk); err != nil {
					b.cut.Add(1)
					return
				}
			}
		case "/upload":
			<-done
		}
	}))
	t.Cleanup(func() {
		close(done)
		b.srv.Close()
	})
	return b
}

// client_send_timeout and send_timeout reach both engines of a real worker: a client that never
// reads a large response is cut off within about client_send_timeout while others are served,
// and an upstream that stops reading an upload fails it with 504 within about send_timeout
// (read_timeout is 30s), counted as a passive failure that ejects the server (max_fails = 1).
func TestSendTimeoutOptions(t *testing.T) {
	for _, engine := range []string{"fast", "std"} {
		t.Run(engine, func(t *testing.T) {
			up := newTimeoutBackend(t)
			addr := up.srv.Listener.Addr().String()
			p := startProxy(t, proxyOpts{
				workers:  1,
				interval: "1s",
				top:      `engine = "` + engine + `"`,
				server:   `client_send_timeout = "300ms"`,
				upstream: "send_timeout = \"300ms\"\nread_timeout = \"30s\"",
			}, []*backend.Backend{{Name: "timeouts", Addr: addr}})
			stallResponse(t, p, up)
			stallUpload(t, p)
			p.eventually("the send timeout counted as a passive failure", 5*time.Second, func(d status.Document) bool {
				b, ok := backendState(d, addr)
				return ok && b.PassiveFailures == 1 && b.Ejected
			})
		})
	}
}

// stallResponse asks for /big and reads nothing: the proxy must give up within a bound, close
// the client's connection and still serve another client.
func stallResponse(t *testing.T, p *proxy, up *timeoutBackend) {
	t.Helper()
	stalled, err := net.Dial("tcp", p.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	start := time.Now()
	io.WriteString(stalled, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
	waitFor(t, "the proxy to give up on the stalled client", func() bool { return up.cut.Load() > 0 })
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the stalled client was cut off after %v (client_send_timeout 300ms)", took)
	}
	stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, stalled)
	if ne, ok := errors.AsType[net.Error](err); (ok && ne.Timeout()) || n >= bigBody {
		t.Fatalf("the stalled client's connection: %d bytes, then %v; want less than the body, then its end", n, err)
	}
	resp, err := http.Get("http://" + p.listen + "/health")
	if err != nil {
		t.Fatalf("another client after the stalled one: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("another client after the stalled one: %s", resp.Status)
	}
}

// stallUpload streams a large body to /upload, which reads none of it: the answer must be 504
// within a bound far below read_timeout.
func stallUpload(t *testing.T, p *proxy) {
	t.Helper()
	c, err := net.Dial("tcp", p.listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	start := time.Now()
	io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: "+strconv.Itoa(bigBody)+"\r\n\r\n")
	go func() {
		chunk := make([]byte, 64<<10)
		for n := 0; n < bigBody; n += len(chunk) {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to the stalled upload: %v", err)
	}
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != 504 || took > 5*time.Second {
		t.Fatalf("stalled upload: %s after %v, want 504 within about send_timeout (300ms)", resp.Status, took)
	}
}
