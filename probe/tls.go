package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// TLSOptions configures the TLS client of the tls, https and grpc checks.
// The zero value verifies the peer against the system roots with TLS 1.2 or
// newer, without SNI other than the dialed host name.
type TLSOptions struct {
	// ServerName is the SNI and the name the certificate must match; ""
	// means the host part of the probed address.
	ServerName string
	// Insecure skips certificate verification (verify = false). The
	// certificate's expiry is still reported and judged.
	Insecure bool
	// CAFile is a PEM bundle of roots to verify against instead of the
	// system's; "" uses the system roots.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and key; both or
	// neither.
	CertFile, KeyFile string
	// MinVersion is a tls.VersionTLS1x constant; 0 means TLS 1.2.
	MinVersion uint16
	// CertMinDays, if > 0, fails the check with CertExpiring when the leaf
	// certificate expires in fewer days.
	CertMinDays int
}

// handshakeSlack is what a TLS check may read beyond max_response: the
// handshake (certificate chains) is not part of the response it judges.
const handshakeSlack = 64 << 10

// config builds the tls.Config; nextProtos is the ALPN list. It reads the
// CA and client certificate files, so it runs once, in the constructor.
func (o TLSOptions) config(nextProtos ...string) (*tls.Config, error) {
	cfg := &tls.Config{
		ServerName:         o.ServerName,
		InsecureSkipVerify: o.Insecure,
		MinVersion:         o.MinVersion,
		NextProtos:         nextProtos,
	}
	if cfg.MinVersion == 0 {
		cfg.MinVersion = tls.VersionTLS12
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("probe: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("probe: ca_file %s: no PEM certificate", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if o.CertFile != "" || o.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			// The key's bytes never reach the error: LoadX509KeyPair reports
			// only what it could not parse.
			return nil, fmt.Errorf("probe: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// handshake runs a TLS client handshake on conn (which the caller owns)
// with cfg, filling in ServerName from addr when cfg has none. It returns
// the TLS connection or a failed Result.
func handshake(ctx context.Context, conn net.Conn, addr string, cfg *tls.Config) (*tls.Conn, Result) {
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			host = addr
		}
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, handshakeFailure(ctx, err)
	}
	return tc, Result{}
}

// handshakeFailure classifies a handshake error: timeouts first, then what
// the handshake found wrong.
func handshakeFailure(ctx context.Context, err error) Result {
	var (
		unknown  x509.UnknownAuthorityError
		invalid  x509.CertificateInvalidError
		hostname x509.HostnameError
		verify   *tls.CertificateVerificationError
		header   tls.RecordHeaderError
		alert    tls.AlertError
	)
	detail := "handshake: "
	switch {
	case isTimeout(err), ctx.Err() != nil:
		return Result{Reason: Timeout, Detail: "timeout in the TLS handshake"}
	case errors.Is(err, ErrTooLarge):
		return Result{Reason: TooLarge, Detail: "TLS handshake larger than the read budget"}
	case errors.As(err, &hostname):
		detail += "certificate is not valid for " + hostname.Host
	case errors.As(err, &unknown):
		detail += "certificate signed by an unknown authority"
	case errors.As(err, &invalid):
		detail += "invalid certificate: " + invalid.Error()
	case errors.As(err, &verify):
		detail += "certificate verification failed"
	case errors.As(err, &header):
		detail += "peer does not speak TLS"
	case errors.As(err, &alert):
		detail += "peer sent alert: " + alert.Error()
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		detail += "peer closed the connection"
	default:
		detail += err.Error()
	}
	return Result{Reason: TLSHandshake, Detail: detail}
}

// judgeCert records the leaf certificate's expiry in res and fails it with
// CertExpiring when fewer than minDays remain. It leaves a failed res as is
// except for CertExpiry.
func judgeCert(res *Result, st tls.ConnectionState, minDays int, now time.Time) {
	if len(st.PeerCertificates) == 0 {
		return
	}
	res.CertExpiry = st.PeerCertificates[0].NotAfter
	if minDays <= 0 || res.Reason != OK {
		return
	}
	left := res.CertExpiry.Sub(now)
	if left < time.Duration(minDays)*24*time.Hour {
		res.Reason = CertExpiring
		if left < 0 {
			res.Detail = fmt.Sprintf("certificate expired %s", res.CertExpiry.UTC().Format(time.DateOnly))
		} else {
			res.Detail = fmt.Sprintf("certificate expires %s, in %d days (cert_min_days %d)",
				res.CertExpiry.UTC().Format(time.DateOnly), int(left.Hours()/24), minDays)
		}
	}
}

// tlsProber is the Prober NewTLS returns.
type tlsProber struct {
	cfg     *tls.Config
	minDays int
	max     int64
}

var _ Prober = (*tlsProber)(nil)

// NewTLS returns a Prober that connects and completes a TLS handshake; it
// passes when the handshake succeeds and the certificate is valid for
// CertMinDays more days. It reads the CA and client certificate files now.
func NewTLS(o TLSOptions) (Prober, error) {
	cfg, err := o.config()
	if err != nil {
		return nil, err
	}
	return &tlsProber{cfg: cfg, minDays: o.CertMinDays, max: DefaultMaxResponse}, nil
}

// Probe implements Prober.
func (p *tlsProber) Probe(ctx context.Context, addr string) (res Result) {
	start := time.Now()
	defer recoverInto(&res, start)
	conn, res := dial(ctx, addr)
	if conn == nil {
		return finish(res, start)
	}
	cc := newCountConn(conn, p.max+handshakeSlack)
	defer cc.Close()
	tc, res := handshake(ctx, cc, addr, p.cfg)
	res.Bytes = cc.read()
	if tc == nil {
		return finish(res, start)
	}
	judgeCert(&res, tc.ConnectionState(), p.minDays, time.Now())
	return finish(res, start)
}
