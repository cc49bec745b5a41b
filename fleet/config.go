package fleet

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"hcproxy/config"
)

// Config is what a Coordinator needs; FromConfig builds it from a
// validated [fleet] table.
type Config struct {
	// Endpoints are etcd's client URLs; at least one.
	Endpoints []string
	// TLS is the client's TLS configuration for https endpoints, nil for
	// http.
	TLS *tls.Config
	// Username and Password authenticate to etcd; "" for none.
	Username, Password string
	// Prefix is the key prefix, starting and ending with "/".
	Prefix string
	// Host is this host's name, unique in the fleet, without "/".
	Host string
	// Checkers is how many hosts check each key, at least 1.
	Checkers int
	// TTL is the lease of this host's keys: a whole number of seconds, at
	// least 2s.
	TTL time.Duration
}

// Errors of New.
var (
	ErrConfig = errors.New("fleet: invalid config")
)

// FromConfig turns a validated [fleet] table into a Config, loading its TLS
// files.
func FromConfig(f *config.Fleet) (Config, error) {
	c := Config{
		Endpoints: f.Endpoints,
		Username:  f.Username,
		Password:  f.Password,
		Prefix:    f.Prefix,
		Host:      f.Host,
		Checkers:  f.Checkers,
		TTL:       f.LeaseTTL,
	}
	if len(f.Endpoints) > 0 && len(f.Endpoints[0]) >= 8 && f.Endpoints[0][:8] == "https://" {
		t, err := loadTLS(f.CertFile, f.KeyFile, f.CAFile)
		if err != nil {
			return Config{}, err
		}
		c.TLS = t
	}
	return c, nil
}

func loadTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("fleet.cert_file: %w", err)
		}
		t.Certificates = []tls.Certificate{cert}
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("fleet.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("fleet.ca_file: %s: no PEM certificate in it", caFile)
		}
		t.RootCAs = pool
	}
	return t, nil
}

// check reports what makes c unusable; config's validation refuses all of
// it earlier, this guards callers that build a Config by hand.
func (c Config) check() error {
	switch {
	case len(c.Endpoints) == 0:
		return fmt.Errorf("%w: no endpoints", ErrConfig)
	case !validHost(c.Host):
		return fmt.Errorf("%w: host %q", ErrConfig, c.Host)
	case len(c.Prefix) == 0 || c.Prefix[0] != '/' || c.Prefix[len(c.Prefix)-1] != '/':
		return fmt.Errorf("%w: prefix %q", ErrConfig, c.Prefix)
	case c.Checkers < 1:
		return fmt.Errorf("%w: checkers %d", ErrConfig, c.Checkers)
	case c.TTL < 2*time.Second || c.TTL%time.Second != 0:
		return fmt.Errorf("%w: lease TTL %s (whole seconds, at least 2s)", ErrConfig, c.TTL)
	}
	return nil
}

func validHost(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if c <= ' ' || c == '/' || c == 0x7f {
			return false
		}
	}
	return true
}
