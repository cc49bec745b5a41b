// Package checks turns a check of the config into what the checker runs: the probe of its type
// with its options (NewProber), and the address it connects to (Addr). The worker's checker and
// hcctl check use it, so a check that hcctl tries is exactly the one the workers run; it links
// the probes and the config, not the data plane.
package checks

import (
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"

	"hcproxy/config"
	"hcproxy/probe"
)

// Addr is the address a check of server connects to: the host of the check's address
// override ("host" or "host:port") or else the server's, with the check's port, else the
// override's, else the server's.
func Addr(server string, c *config.Check) (string, error) {
	if c.Address == "" && c.Port == 0 {
		return server, nil
	}
	var host, port string
	if c.Address != "" {
		if h, p, err := net.SplitHostPort(c.Address); err == nil {
			host, port = h, p
		} else {
			host = strings.Trim(c.Address, "[]")
		}
	}
	if c.Port != 0 {
		port = strconv.Itoa(c.Port)
	}
	if host == "" || port == "" {
		sh, sp, err := net.SplitHostPort(server)
		if err != nil {
			return "", err
		}
		if host == "" {
			host = sh
		}
		if port == "" {
			port = sp
		}
	}
	return net.JoinHostPort(host, port), nil
}

// NewProber builds the probe a check describes (also used by hcctl check). It reads the TLS
// files a check names, so a missing CA or key is an error here, not a failing check.
func NewProber(c *config.Check) (probe.Prober, error) {
	var expectHeader *probe.HeaderMatch
	if c.ExpectHeader != "" {
		name, value, _ := strings.Cut(c.ExpectHeader, ":")
		expectHeader = &probe.HeaderMatch{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)}
	}
	httpOpts := probe.HTTPOptions{
		Send: c.Send, URI: c.URI, Host: c.Host, StatusOK: c.StatusOK,
		ExpectBody: c.ExpectBody, BodyRegexp: c.BodyRegexp(), MaxResponse: c.MaxResponse,
		Headers: c.HeaderList(), ExpectHeader: expectHeader, KeepAlive: c.KeepAlive,
	}
	if len(c.ExpectStatus) == 0 {
		httpOpts.StatusOK = nil // 2xx or 3xx
	}
	switch c.Type {
	case "http":
		return probe.NewHTTP(httpOpts), nil
	case "tcp":
		if len(c.Sequence) == 0 {
			return probe.NewTCP(), nil
		}
		return probe.NewTCPSequence(probe.TCPOptions{Sequence: probeSteps(c.Steps()), MaxResponse: c.MaxResponse}), nil
	case "tls":
		o := tlsOptions(c)
		o.CertMinDays = c.CertMinDays
		return probe.NewTLS(o)
	case "https":
		return probe.NewHTTPS(httpOpts, tlsOptions(c))
	case "grpc":
		o := probe.GRPCOptions{Service: c.Service, MaxResponse: c.MaxResponse, KeepAlive: c.KeepAlive}
		if c.TLS {
			t := tlsOptions(c)
			o.TLS = &t
		}
		return probe.NewGRPC(o)
	case "redis":
		return probe.NewRedis(probe.RedisOptions{Password: c.Password, Role: c.Role, MaxResponse: c.MaxResponse}), nil
	case "mysql":
		return probe.NewMySQL(probe.MySQLOptions{User: c.User, MaxResponse: c.MaxResponse}), nil
	case "postgres":
		return probe.NewPostgres(probe.PostgresOptions{User: c.User, Database: c.Database, Password: c.Password, MaxResponse: c.MaxResponse}), nil
	case "smtp":
		return probe.NewSMTP(probe.SMTPOptions{EHLO: c.EHLO, MaxResponse: c.MaxResponse}), nil
	case "fastcgi":
		return probe.NewFastCGI(probe.FastCGIOptions{
			URI: c.URI, StatusOK: httpOpts.StatusOK, ExpectBody: c.ExpectBody, BodyRegexp: c.BodyRegexp(), MaxResponse: c.MaxResponse,
		}), nil
	case "agent":
		return probe.NewAgent(probe.AgentOptions{Send: c.Send, MaxResponse: c.MaxResponse}), nil
	}
	return nil, fmt.Errorf("check type %q not supported", c.Type)
}

// tlsOptions maps a check's TLS settings.
func tlsOptions(c *config.Check) probe.TLSOptions {
	o := probe.TLSOptions{
		ServerName: c.SNI, Insecure: c.SkipVerify, CAFile: c.CAFile, CertFile: c.CertFile, KeyFile: c.KeyFile,
		CertMinDays: c.CertMinDays,
	}
	switch c.MinVersion {
	case "1.0":
		o.MinVersion = tls.VersionTLS10
	case "1.1":
		o.MinVersion = tls.VersionTLS11
	case "1.3":
		o.MinVersion = tls.VersionTLS13
	}
	return o
}

// probeSteps maps a compiled tcp sequence.
func probeSteps(steps []config.Step) []probe.Step {
	out := make([]probe.Step, len(steps))
	for i, s := range steps {
		out[i] = probe.Step{Send: s.Send, Expect: s.Expect, Regexp: s.Regexp}
		switch s.Match {
		case "exact":
			out[i].Match = probe.MatchExact
		case "regex":
			out[i].Match = probe.MatchRegexp
		}
	}
	return out
}
