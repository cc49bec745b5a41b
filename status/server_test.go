package status

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"
)

// serve runs NewServer(h, o) on a loopback listener until the test ends (its handlers returned)
// and returns its address.
func serve(t *testing.T, h http.Handler, o ServerOptions) string {
	t.Helper()
	ts := httptest.NewUnstartedServer(h)
	ts.Config = NewServer(h, o)
	ts.Start()
	t.Cleanup(ts.Close)
	return ts.Listener.Addr().String()
}

// rawExchange sends raw on a new connection to addr and returns what came back before the
// server closed the connection; it fails the test if the server has not closed it within wait.
func rawExchange(t *testing.T, addr, raw string, wait time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, raw) // the server may close before it has read everything
	c.SetReadDeadline(time.Now().Add(wait))
	got, err := io.ReadAll(c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection still open %v after %q, got so far %q", wait, trim(raw), got)
	}
	return string(got) // io.EOF or a reset: closed
}

func trim(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// A head of 16 KiB or more is answered 431 (net/http's slack beyond MaxHeaderBytes included) and
// the connection closed; one just under it is served.
func TestServerHeadLimit(t *testing.T) {
	addr := serve(t, Handler(newFixture(t).tab, Options{}), ServerOptions{})
	head := func(n int) string {
		h := "GET /status?format=json HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX-Pad: "
		return h + strings.Repeat("p", n-len(h)-4) + "\r\n\r\n"
	}
	if got := rawExchange(t, addr, head(MaxHeadBytes+100), 5*time.Second); !strings.HasPrefix(got, "HTTP/1.1 431 ") {
		t.Errorf("head of %d bytes: got %q, want 431", MaxHeadBytes+100, trim(got))
	}
	if got := rawExchange(t, addr, head(MaxHeadBytes-100), 5*time.Second); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
		t.Errorf("head of %d bytes: got %q, want 200", MaxHeadBytes-100, trim(got))
	}
}

// Regression: a POST whose body never arrives held its connection (and goroutine) for ever, as
// net/http has no read deadline without ReadTimeout. Now the server cuts it off after it.
func TestServerStalledBodyIsDisconnected(t *testing.T) {
	addr := serve(t, Handler(newFixture(t).tab, Options{Admin: true}), ServerOptions{HeaderTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})
	start := time.Now()
	got := rawExchange(t, addr, "POST /status/admin HTTP/1.1\r\nHost: a\r\nContent-Type: application/x-www-form-urlencoded\r\n"+
		"Content-Length: 100\r\n\r\nupstream=a", 5*time.Second)
	if got != "" && !strings.HasPrefix(got, "HTTP/1.1 400 ") {
		t.Errorf("stalled body: got %q, want a 400 or nothing", trim(got))
	}
	t.Logf("stalled body: closed after %v with %q", time.Since(start).Round(time.Millisecond), trim(got))
}

// Regression: with a ReadTimeout, net/http's background read hit the deadline and cancelled the
// event stream's context: the stream must outlive ReadTimeout many times over.
func TestServerEventStreamOutlivesReadTimeout(t *testing.T) {
	h := Handler(newFixture(t).tab, Options{}).(*handler)
	h.heartbeat = 100 * time.Millisecond
	addr := serve(t, h, ServerOptions{HeaderTimeout: 200 * time.Millisecond, ReadTimeout: 300 * time.Millisecond})
	_, lines := openStream(t, "http://"+addr+"/status/events?format=text&n=0")
	start := time.Now()
	for time.Since(start) < 1500*time.Millisecond {
		if l := nextLine(t, lines); !strings.HasPrefix(l, "# heartbeat ") {
			t.Fatalf("got %q, want heartbeats", l)
		}
	}
}

// A chunked request, and so one with both Content-Length and Transfer-Encoding, is answered 400
// and its connection closed: the request smuggled after the body is never answered.
func TestServerRefusesChunkedAndCloses(t *testing.T) {
	addr := serve(t, Handler(newFixture(t).tab, Options{Admin: true}), ServerOptions{})
	for _, raw := range []string{
		"POST /status/admin HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /status HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /status HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		got := rawExchange(t, addr, raw, 5*time.Second)
		if !strings.HasPrefix(got, "HTTP/1.1 400 ") || strings.Count(got, "HTTP/1.1 ") != 1 {
			t.Errorf("%q: got %q, want one 400 and the end of the connection", trim(raw), got)
		}
	}
}
