package probe

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// tlsServer serves TLS with cfg on loopback; each connection completes the
// handshake, then handle runs (nil: close after the handshake).
func tlsServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	return serveConns(t, func(c net.Conn, done <-chan struct{}) {
		tc := tls.Server(c, cfg)
		if tc.Handshake() == nil {
			drain(tc)
		}
	})
}

func TestTLS(t *testing.T) {
	ca := newTestCA(t)
	caFile := ca.writeCA(t)
	good := ca.issue(t, time.Now().Add(90*24*time.Hour), false, "127.0.0.1", "backend.test")
	soon := ca.issue(t, time.Now().Add(5*24*time.Hour), false, "127.0.0.1")
	expired := ca.issue(t, time.Now().Add(-time.Hour), false, "127.0.0.1")
	client := ca.issue(t, time.Now().Add(24*time.Hour), true, "hcproxy")
	clientCert, clientKey := writeKeyPair(t, client)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)

	goodAddr := tlsServer(t, &tls.Config{Certificates: []tls.Certificate{good}})
	soonAddr := tlsServer(t, &tls.Config{Certificates: []tls.Certificate{soon}})
	expiredAddr := tlsServer(t, &tls.Config{Certificates: []tls.Certificate{expired}})
	// TLS 1.2: under 1.3 the server rejects a missing client certificate
	// only after the client's handshake completed, which a handshake-only
	// check cannot see.
	mtlsAddr := tlsServer(t, &tls.Config{Certificates: []tls.Certificate{good}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MaxVersion: tls.VersionTLS12})
	tls13Only := tlsServer(t, &tls.Config{Certificates: []tls.Certificate{good}, MaxVersion: tls.VersionTLS12})
	plain := serveConns(t, replyWith("SSH-2.0-OpenSSH_9.6\r\n"))

	tests := []struct {
		name       string
		addr       string
		opt        TLSOptions
		want       Reason
		wantDetail string
	}{
		{"verified by CA file", goodAddr, TLSOptions{CAFile: caFile}, OK, ""},
		{"SNI name", goodAddr, TLSOptions{CAFile: caFile, ServerName: "backend.test"}, OK, ""},
		{"wrong SNI name", goodAddr, TLSOptions{CAFile: caFile, ServerName: "other.test"}, TLSHandshake, "not valid for other.test"},
		{"unknown authority", goodAddr, TLSOptions{}, TLSHandshake, "unknown authority"},
		{"verify = false accepts it", goodAddr, TLSOptions{Insecure: true}, OK, ""},
		{"expires within cert_min_days", soonAddr, TLSOptions{CAFile: caFile, CertMinDays: 30}, CertExpiring, "in 4 days (cert_min_days 30)"},
		{"expires after cert_min_days", soonAddr, TLSOptions{CAFile: caFile, CertMinDays: 3}, OK, ""},
		{"expired: verification fails", expiredAddr, TLSOptions{CAFile: caFile}, TLSHandshake, "invalid certificate"},
		{"expired, unverified: cert_min_days fails it", expiredAddr, TLSOptions{Insecure: true, CertMinDays: 1}, CertExpiring, "certificate expired"},
		{"client certificate", mtlsAddr, TLSOptions{CAFile: caFile, CertFile: clientCert, KeyFile: clientKey}, OK, ""},
		{"client certificate missing", mtlsAddr, TLSOptions{CAFile: caFile}, TLSHandshake, "handshake"},
		{"min_version 1.3 against a 1.2 server", tls13Only, TLSOptions{CAFile: caFile, MinVersion: tls.VersionTLS13}, TLSHandshake, "protocol version"},
		{"not TLS", plain, TLSOptions{Insecure: true}, TLSHandshake, "does not speak TLS"},
		{"stall", serveConns(t, stall), TLSOptions{Insecure: true}, Timeout, "TLS handshake"},
		{"closes at once", serveConns(t, func(net.Conn, <-chan struct{}) {}), TLSOptions{Insecure: true}, TLSHandshake, "closed"},
		{"refused", closedPort(t), TLSOptions{}, ConnectRefused, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewTLS(tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			got := probeCtx(t, p, tt.addr, time.Second)
			checkResult(t, got, tt.want, 0, tt.wantDetail)
			if tt.want == OK && got.CertExpiry.IsZero() {
				t.Error("no certificate expiry in the result")
			}
		})
	}
}

func TestNewTLSBadFiles(t *testing.T) {
	if _, err := NewTLS(TLSOptions{CAFile: "/nonexistent/ca.pem"}); err == nil {
		t.Error("missing CA file accepted")
	}
	if _, err := NewTLS(TLSOptions{CertFile: "/nonexistent/c.pem", KeyFile: "/nonexistent/k.pem"}); err == nil {
		t.Error("missing key pair accepted")
	}
}

func TestHTTPS(t *testing.T) {
	ca := newTestCA(t)
	caFile := ca.writeCA(t)
	cert := ca.issue(t, time.Now().Add(90*24*time.Hour), false, "127.0.0.1")
	var mu sync.Mutex
	var seen []*http.Request
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r)
		mu.Unlock()
		switch r.URL.Path {
		case "/big":
			w.Write([]byte(strings.Repeat("x", 5000)))
		case "/down":
			w.WriteHeader(503)
		default:
			w.Header().Set("X-Health", "green")
			w.Write([]byte("pong"))
		}
	})
	start := func(h2 bool) string {
		s := httptest.NewUnstartedServer(handler)
		s.EnableHTTP2 = h2
		s.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
		s.StartTLS()
		t.Cleanup(s.Close)
		return s.Listener.Addr().String()
	}
	h2, h1 := start(true), start(false)
	tlsOpt := TLSOptions{CAFile: caFile}
	tests := []struct {
		name       string
		addr       string
		opt        HTTPOptions
		topt       TLSOptions
		want       Reason
		status     int
		wantDetail string
		proto      int
	}{
		{"h2 via ALPN", h2, HTTPOptions{ExpectBody: "pong"}, tlsOpt, OK, 200, "", 2},
		{"http/1.1 when h2 is not offered", h1, HTTPOptions{ExpectBody: "pong"}, tlsOpt, OK, 200, "", 1},
		{"headers, host, expect_header", h2, HTTPOptions{URI: "/hc?x=1", Host: "svc.test", Headers: [][2]string{{"X-Check", "1"}},
			ExpectHeader: &HeaderMatch{Name: "x-health", Value: "green"}}, tlsOpt, OK, 200, "", 2},
		{"expect_header missing", h1, HTTPOptions{ExpectHeader: &HeaderMatch{Name: "X-Other"}}, tlsOpt, Unexpected, 200, `no response header "X-Other"`, 1},
		{"bad status", h2, HTTPOptions{URI: "/down"}, tlsOpt, BadStatus, 503, "status 503", 2},
		{"body too large", h2, HTTPOptions{URI: "/big", MaxResponse: 1000}, tlsOpt, TooLarge, 200, "larger than 1000", 2},
		{"body too large h1", h1, HTTPOptions{URI: "/big", MaxResponse: 1000}, tlsOpt, TooLarge, 200, "larger than 1000", 1},
		{"unverified certificate", h2, HTTPOptions{}, TLSOptions{}, TLSHandshake, 0, "unknown authority", 0},
		{"cert_min_days", h2, HTTPOptions{}, TLSOptions{CAFile: caFile, CertMinDays: 365}, CertExpiring, 200, "cert_min_days 365", 2},
		{"plain HTTP server", serveConns(t, replyWith("HTTP/1.1 200 OK\r\n\r\n")), HTTPOptions{}, tlsOpt, TLSHandshake, 0, "does not speak TLS", 0},
		{"stall", serveConns(t, stall), HTTPOptions{}, tlsOpt, Timeout, 0, "", 0},
		{"refused", closedPort(t), HTTPOptions{}, tlsOpt, ConnectRefused, 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			p, err := NewHTTPS(tt.opt, tt.topt)
			if err != nil {
				t.Fatal(err)
			}
			got := probeCtx(t, p, tt.addr, time.Second)
			checkResult(t, got, tt.want, tt.status, tt.wantDetail)
			if tt.proto == 0 {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != 1 {
				t.Fatalf("server saw %d requests", len(seen))
			}
			r := seen[0]
			if r.ProtoMajor != tt.proto {
				t.Errorf("protocol HTTP/%d, want HTTP/%d", r.ProtoMajor, tt.proto)
			}
			if tt.opt.Host != "" && r.Host != tt.opt.Host {
				t.Errorf("Host %q, want %q", r.Host, tt.opt.Host)
			}
			for _, h := range tt.opt.Headers {
				if r.Header.Get(h[0]) != h[1] {
					t.Errorf("header %s = %q, want %q", h[0], r.Header.Get(h[0]), h[1])
				}
			}
			if tt.opt.URI != "" && r.URL.RequestURI() != tt.opt.URI {
				t.Errorf("URI %q, want %q", r.URL.RequestURI(), tt.opt.URI)
			}
		})
	}
}

// TestHTTPSHeadersTooLarge pins that a server streaming headers forever is cut at max_response.
func TestHTTPSHeadersTooLarge(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.issue(t, time.Now().Add(24*time.Hour), false, "127.0.0.1")
	addr := serveConns(t, func(c net.Conn, done <-chan struct{}) {
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
		if tc.Handshake() != nil {
			return
		}
		tc.Write([]byte("HTTP/1.1 200 OK\r\n"))
		writeForever(tc, done, "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")
	})
	p, err := NewHTTPS(HTTPOptions{MaxResponse: 2000}, TLSOptions{Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	got := probeCtx(t, p, addr, 2*time.Second)
	if got.Reason != TooLarge && got.Reason != BadResponse {
		t.Errorf("got %v %q, want too_large or bad_response", got.Reason, got.Detail)
	}
	if got.Bytes > 2000+handshakeSlack+appSlack {
		t.Errorf("read %d bytes", got.Bytes)
	}
}
