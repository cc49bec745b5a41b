package probe

import (
	"bytes"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// grpcServer starts a real gRPC server with the standard health service on
// loopback; opts may add TLS credentials.
func grpcServer(t *testing.T, opts ...grpc.ServerOption) (string, *health.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(opts...)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(s, hs)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String(), hs
}

func TestGRPC(t *testing.T) {
	addr, hs := grpcServer(t)
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("app.Orders", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("app.Billing", healthpb.HealthCheckResponse_NOT_SERVING)

	ca := newTestCA(t)
	cert := ca.issue(t, time.Now().Add(30*24*time.Hour), false, "127.0.0.1")
	tlsAddr, tlsHS := grpcServer(t, grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}})))
	tlsHS.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	noHealth := func() string { // a gRPC server without the health service
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer()
		go s.Serve(ln)
		t.Cleanup(s.Stop)
		return ln.Addr().String()
	}()

	tests := []struct {
		name       string
		addr       string
		opt        GRPCOptions
		want       Reason
		wantDetail string
	}{
		{"server serving", addr, GRPCOptions{}, OK, ""},
		{"service serving", addr, GRPCOptions{Service: "app.Orders"}, OK, ""},
		{"service not serving", addr, GRPCOptions{Service: "app.Billing"}, NotServing, "NOT_SERVING"},
		{"unknown service", addr, GRPCOptions{Service: "app.Nope"}, ServerError, "grpc-status 5"},
		{"no health service", noHealth, GRPCOptions{}, ServerError, "grpc-status 12"},
		{"over TLS", tlsAddr, GRPCOptions{TLS: &TLSOptions{CAFile: ca.writeCA(t)}}, OK, ""},
		{"over TLS, cert_min_days", tlsAddr, GRPCOptions{TLS: &TLSOptions{Insecure: true, CertMinDays: 60}}, CertExpiring, "cert_min_days 60"},
		{"plaintext against TLS", tlsAddr, GRPCOptions{}, EarlyClose, "closed"},
		{"HTTP/1 server", serveConns(t, replyWith("HTTP/1.1 400 Bad Request\r\n\r\n")), GRPCOptions{}, BadResponse, ""},
		{"stall", serveConns(t, stall), GRPCOptions{}, Timeout, ""},
		{"refused", closedPort(t), GRPCOptions{}, ConnectRefused, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewGRPC(tt.opt)
			if err != nil {
				t.Fatal(err)
			}
			got := probeCtx(t, p, tt.addr, time.Second)
			if tt.name == "plaintext against TLS" {
				// The TLS server closes on the h2 preface; the client sees that as a broken
				// pipe or as a connection the HTTP/2 transport could not establish, depending
				// on timing. Both are failures that name the peer's behaviour.
				if got.Reason != EarlyClose && got.Reason != BadResponse {
					t.Fatalf("plaintext against TLS: %v %q, want early_close or bad_response", got.Reason, got.Detail)
				}
				return
			}
			checkResult(t, got, tt.want, got.Status, tt.wantDetail)
		})
	}

	// A status change is seen by the next check.
	hs.SetServingStatus("app.Orders", healthpb.HealthCheckResponse_NOT_SERVING)
	p, _ := NewGRPC(GRPCOptions{Service: "app.Orders"})
	if got := probeCtx(t, p, addr, time.Second); got.Reason != NotServing {
		t.Errorf("after the service stopped serving: %v %q", got.Reason, got.Detail)
	}
}

func TestParseGRPCHealth(t *testing.T) {
	tests := []struct {
		in      []byte
		want    int
		wantErr bool
	}{
		{[]byte{0, 0, 0, 0, 2, 0x08, 0x01}, 1, false},                  // SERVING
		{[]byte{0, 0, 0, 0, 0}, 0, false},                              // empty message: UNKNOWN
		{[]byte{0, 0, 0, 0, 5, 0x12, 0x01, 'x', 0x08, 0x02}, 2, false}, // unknown field skipped
		{[]byte{1, 0, 0, 0, 2, 0x08, 0x01}, 0, true},                   // compressed
		{[]byte{0, 0, 0, 0, 9, 0x08, 0x01}, 0, true},                   // length beyond the body
		{[]byte{0, 0, 0, 0, 2, 0x08}, 0, true},                         // truncated
		{[]byte{0, 0, 0, 0, 3, 0x12, 0x7f, 0x00}, 0, true},             // nested length past the end
		{[]byte{0, 0, 0, 0, 1, 0x0b}, 0, true},                         // wire type 3
		{bytes.Repeat([]byte{0}, 3), 0, true},                          // short prefix
	}
	for i, tt := range tests {
		got, err := ParseGRPCHealth(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%d: ParseGRPCHealth(%x) = %d, %v; want %d, error %v", i, tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
