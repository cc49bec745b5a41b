package probe

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

func probeCtx(t *testing.T, p Prober, addr string, timeout time.Duration) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	return p.Probe(ctx, addr)
}

func checkResult(t *testing.T, got Result, want Reason, wantStatus int, wantDetail string) {
	t.Helper()
	if got.Reason != want || got.Status != wantStatus || !strings.Contains(got.Detail, wantDetail) {
		t.Errorf("got %v status %d detail %q; want %v status %d detail containing %q",
			got.Reason, got.Status, got.Detail, want, wantStatus, wantDetail)
	}
	if got.OK() != (want == OK) {
		t.Errorf("OK() = %v for reason %v", got.OK(), got.Reason)
	}
	if len(got.Detail) > maxDetail {
		t.Errorf("detail is %d bytes, more than %d", len(got.Detail), maxDetail)
	}
	if got.RTT <= 0 {
		t.Errorf("RTT = %v, want > 0", got.RTT)
	}
}

// TestHTTPHTTPTest checks against net/http servers and asserts on what the
// server received from the built request.
func TestHTTPHTTPTest(t *testing.T) {
	type seen struct{ method, uri, host, ua, conn string }
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		opt        HTTPOptions
		want       Reason
		wantStatus int
		wantDetail string
	}{
		{"200 ok", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") },
			HTTPOptions{}, OK, 200, ""},
		{"503 bad status", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) },
			HTTPOptions{}, BadStatus, 503, "status 503, want 2xx,3xx"},
		{"302 counts as ok", func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Location", "/x"); w.WriteHeader(302) },
			HTTPOptions{}, OK, 302, ""},
		{"custom status set", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(418) },
			HTTPOptions{StatusOK: func(c int) bool { return c == 418 }}, OK, 418, ""},
		{"custom status set rejects 200", func(w http.ResponseWriter, r *http.Request) {},
			HTTPOptions{StatusOK: func(c int) bool { return c == 204 }}, BadStatus, 200, "status 200"},
		{"body contains", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "status: pong\n") },
			HTTPOptions{ExpectBody: "pong"}, OK, 200, ""},
		{"body mismatch", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "status: down\n") },
			HTTPOptions{ExpectBody: "pong"}, BodyMismatch, 200, `body does not contain "pong"`},
		{"regexp matches", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"ok":true}`) },
			HTTPOptions{BodyRegexp: regexp.MustCompile(`"ok":\s*true`)}, OK, 200, ""},
		{"regexp mismatch", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, `{"ok":false}`) },
			HTTPOptions{BodyRegexp: regexp.MustCompile(`"ok":\s*true`)}, BodyMismatch, 200, "does not match"},
		{"status judged before body", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500); fmt.Fprint(w, "nope") },
			HTTPOptions{ExpectBody: "pong"}, BadStatus, 500, "status 500"},
		{"chunked via flush", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, "hello ")
			w.(http.Flusher).Flush()
			fmt.Fprint(w, "world")
		}, HTTPOptions{ExpectBody: "hello world"}, OK, 200, ""},
		{"too large body", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, strings.Repeat("x", 5000)) },
			HTTPOptions{MaxResponse: 1000}, TooLarge, 200, "larger than 1000"},
		{"uri and host", func(w http.ResponseWriter, r *http.Request) {},
			HTTPOptions{URI: "/healthz?full=1", Host: "svc.example"}, OK, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan seen, 1)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got <- seen{r.Method, r.RequestURI, r.Host, r.UserAgent(), r.Header.Get("Connection")}
				tt.handler(w, r)
			}))
			defer srv.Close()
			addr := srv.Listener.Addr().String()
			res := probeCtx(t, NewHTTP(tt.opt), addr, 5*time.Second)
			checkResult(t, res, tt.want, tt.wantStatus, tt.wantDetail)
			if res.Bytes <= 0 || res.Bytes > int(max(tt.opt.MaxResponse, 0))+DefaultMaxResponse+4096 {
				t.Errorf("Bytes = %d", res.Bytes)
			}
			wantURI, wantHost := "/", addr
			if tt.opt.URI != "" {
				wantURI = tt.opt.URI
			}
			if tt.opt.Host != "" {
				wantHost = tt.opt.Host
			}
			want := seen{"GET", wantURI, wantHost, "hcproxy-check", "close"}
			if s := <-got; s != want {
				t.Errorf("server saw %+v, want %+v", s, want)
			}
		})
	}
}

// TestHTTPRaw checks against raw servers that write exact bytes.
func TestHTTPRaw(t *testing.T) {
	const max = 2048
	stall := func(c net.Conn, done <-chan struct{}) { <-done }
	reset := func(c net.Conn, done <-chan struct{}) {
		c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}
	tests := []struct {
		name       string
		resp       string
		after      func(c net.Conn, done <-chan struct{}) // then; nil closes
		opt        HTTPOptions
		want       Reason
		wantStatus int
		wantDetail string
	}{
		{"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", stall,
			HTTPOptions{ExpectBody: "hello"}, OK, 200, ""},
		{"close-delimited", "HTTP/1.0 200 OK\r\n\r\nhello world", nil,
			HTTPOptions{ExpectBody: "world"}, OK, 200, ""},
		{"chunked with extensions and trailers",
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n", stall,
			HTTPOptions{ExpectBody: "hello world"}, OK, 200, ""},
		{"100 continue then 200", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", stall,
			HTTPOptions{}, OK, 200, ""},
		{"204 without body", "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", stall,
			HTTPOptions{}, OK, 204, ""},
		{"503", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", nil,
			HTTPOptions{}, BadStatus, 503, "status 503, want 2xx,3xx"},
		{"too large by content-length", "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", stall,
			HTTPOptions{MaxResponse: max}, TooLarge, 200, "larger than 2048"},
		{"too large endless chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			func(c net.Conn, done <-chan struct{}) { writeForever(c, done, "10\r\n0123456789abcdef\r\n") },
			HTTPOptions{MaxResponse: max}, TooLarge, 200, ""},
		{"too large endless close-delimited", "HTTP/1.0 200 OK\r\n\r\n",
			func(c net.Conn, done <-chan struct{}) { writeForever(c, done, strings.Repeat("y", 1000)) },
			HTTPOptions{MaxResponse: max}, TooLarge, 200, ""},
		{"too large endless header", "HTTP/1.1 200 OK\r\nX-Long: ",
			func(c net.Conn, done <-chan struct{}) { writeForever(c, done, strings.Repeat("z", 1000)) },
			HTTPOptions{MaxResponse: max}, TooLarge, 200, ""},
		{"garbage", "SSH-2.0-OpenSSH_9.6\r\n", nil,
			HTTPOptions{}, BadResponse, 0, "bad status line"},
		{"bad header framing", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", nil,
			HTTPOptions{}, BadResponse, 200, "conflicting Content-Length"},
		{"half a response then close", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf", nil,
			HTTPOptions{}, EarlyClose, 200, "closed"},
		{"close before any byte", "", nil,
			HTTPOptions{}, EarlyClose, 0, "closed after 0 bytes"},
		{"reset mid-response", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf", reset,
			HTTPOptions{}, EarlyClose, 0, ""}, // status: 200 if the head arrived before the RST, see below
		{"stall", "", stall,
			HTTPOptions{}, Timeout, 0, "no complete response in time"},
		{"stall mid-body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf", stall,
			HTTPOptions{}, Timeout, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newRawServer(t, func(c net.Conn, done <-chan struct{}) {
				c.Write([]byte(tt.resp))
				if tt.after != nil {
					tt.after(c, done)
				}
			})
			const timeout = 500 * time.Millisecond
			res := probeCtx(t, NewHTTP(tt.opt), srv.addr, timeout)
			wantStatus := tt.wantStatus
			if tt.name == "reset mid-response" {
				wantStatus = res.Status // the RST may overtake the head
			}
			checkResult(t, res, tt.want, wantStatus, tt.wantDetail)
			t.Logf("%v status %d bytes %d rtt %v: %s", res.Reason, res.Status, res.Bytes, res.RTT, res.Detail)
			limit := tt.opt.MaxResponse
			if limit <= 0 {
				limit = DefaultMaxResponse
			}
			if res.Bytes > int(limit)+4096 || res.Bytes > len(tt.resp) && tt.after == nil {
				t.Errorf("Bytes = %d, limit %d, sent %d", res.Bytes, limit, len(tt.resp))
			}
			if tt.want == Timeout && (res.RTT < timeout-50*time.Millisecond || res.RTT > timeout+time.Second) {
				t.Errorf("timeout after %v, want about %v", res.RTT, timeout)
			}
			head := srv.lastRequest(t)
			wantHead := "GET / HTTP/1.1\r\nHost: " + srv.addr + "\r\nUser-Agent: hcproxy-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
			if head != wantHead {
				t.Errorf("server received %q, want %q", head, wantHead)
			}
		})
	}
}

// TestHTTPRawSend checks that Send goes out byte for byte and that a HEAD
// request's response is read without a body.
func TestHTTPRawSend(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn, done <-chan struct{}) {
		// A HEAD response announces a body it does not send, and keeps the
		// connection open: reading a body would time out.
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"))
		<-done
	})
	for _, send := range []string{
		"HEAD /ping HTTP/1.1\r\nHost: raw.example\r\nX-Check: 1\r\n\r\n",
		"HEAD / HTTP/1.0\r\n\r\n",
	} {
		res := probeCtx(t, NewHTTP(HTTPOptions{Send: send, Host: "ignored", URI: "/ignored"}), srv.addr, 2*time.Second)
		checkResult(t, res, OK, 200, "")
		if got := srv.lastRequest(t); got != send {
			t.Errorf("server received %q, want %q", got, send)
		}
	}
}

func TestHTTPConnectRefused(t *testing.T) {
	res := probeCtx(t, NewHTTP(HTTPOptions{}), closedPort(t), 2*time.Second)
	checkResult(t, res, ConnectRefused, 0, "refused")
	if res.Bytes != 0 {
		t.Errorf("Bytes = %d", res.Bytes)
	}
}

// TestConnectTimeoutBlackhole dials an address that drops SYNs, if the
// sandbox routes one; where it fails fast (unreachable, refused) the case is
// skipped.
func TestConnectTimeoutBlackhole(t *testing.T) {
	for _, p := range []Prober{NewHTTP(HTTPOptions{}), NewTCP()} {
		res := probeCtx(t, p, "192.0.2.1:80", 300*time.Millisecond) // TEST-NET-1
		if res.Reason != ConnectTimeout && res.RTT < 250*time.Millisecond {
			t.Skipf("no blackhole route here: %v: %s", res.Reason, res.Detail)
		}
		checkResult(t, res, ConnectTimeout, 0, "")
		if res.RTT > 2*time.Second {
			t.Errorf("connect timeout took %v", res.RTT)
		}
	}
}

func TestHTTPCancel(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn, done <-chan struct{}) { <-done })
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(100*time.Millisecond, cancel)
	res := NewHTTP(HTTPOptions{}).Probe(ctx, srv.addr) // no deadline: only cancel ends it
	if res.Reason != Timeout || res.RTT > 5*time.Second {
		t.Errorf("got %v after %v, want timeout soon after cancel", res.Reason, res.RTT)
	}
}

func TestHTTPInvalidOptions(t *testing.T) {
	for _, o := range []HTTPOptions{{URI: "/a b"}, {Host: "x\r\nEvil: 1"}} {
		res := NewHTTP(o).Probe(t.Context(), "127.0.0.1:1")
		checkResult(t, res, Internal, 0, "invalid")
	}
}

// TestHTTPPanicRecovered pins that a panicking hook cannot take down the
// worker: it becomes an Internal result.
func TestHTTPPanicRecovered(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn, done <-chan struct{}) {
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
	})
	p := NewHTTP(HTTPOptions{StatusOK: func(int) bool { panic("boom") }})
	res := probeCtx(t, p, srv.addr, 2*time.Second)
	checkResult(t, res, Internal, 0, "panic: boom")
}

func TestTCP(t *testing.T) {
	srv := newRawServer(t, func(c net.Conn, done <-chan struct{}) {})
	checkResult(t, probeCtx(t, NewTCP(), srv.addr, 2*time.Second), OK, 0, "")
	checkResult(t, probeCtx(t, NewTCP(), closedPort(t), 2*time.Second), ConnectRefused, 0, "refused")
	expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	checkResult(t, NewTCP().Probe(expired, srv.addr), ConnectTimeout, 0, "")
	checkResult(t, NewHTTP(HTTPOptions{}).Probe(expired, srv.addr), ConnectTimeout, 0, "")
	checkResult(t, probeCtx(t, NewTCP(), "127.0.0.1:notaport", 2*time.Second), ConnectError, 0, "")
}

// TestHTTPHeadersAndExpectHeader checks the extra request headers and expect_header of the
// HTTP/1 check against a net/http server.
func TestHTTPHeadersAndExpectHeader(t *testing.T) {
	got := make(chan http.Header, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		w.Header().Set("X-Health", "green; build=7")
	}))
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	opt := HTTPOptions{Headers: [][2]string{{"X-Check", "hcproxy"}, {"Authorization", "Bearer t"}},
		ExpectHeader: &HeaderMatch{Name: "x-health", Value: "green"}}
	checkResult(t, probeCtx(t, NewHTTP(opt), addr, time.Second), OK, 200, "")
	h := <-got
	if h.Get("X-Check") != "hcproxy" || h.Get("Authorization") != "Bearer t" {
		t.Errorf("server got headers %v", h)
	}
	opt.ExpectHeader = &HeaderMatch{Name: "X-Health", Value: "red"}
	checkResult(t, probeCtx(t, NewHTTP(opt), addr, time.Second), Unexpected, 200, `no response header "X-Health: red"`)
	<-got
	bad := NewHTTP(HTTPOptions{Headers: [][2]string{{"X-Bad", "a\r\nInjected: 1"}}})
	checkResult(t, probeCtx(t, bad, addr, time.Second), Internal, 0, "invalid header")
}
