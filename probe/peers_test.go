package probe

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// testCA is a certificate authority made by the test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hcproxy test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue makes a leaf certificate for names (DNS names or IPs) valid until notAfter.
func (ca *testCA) issue(t *testing.T, notAfter time.Time, client bool, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// writeCA writes the CA's PEM to a temporary file and returns its path.
func (ca *testCA) writeCA(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// writeKeyPair writes cert and key as PEM files and returns their paths.
func writeKeyPair(t *testing.T, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	kb, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// serveConns accepts connections on a loopback listener and runs handle on
// each, with a 10 s deadline on the connection, until the test ends; it
// returns the address. Unlike rawServer it reads nothing first.
func serveConns(t *testing.T, handle func(c net.Conn, done <-chan struct{})) string {
	t.Helper()
	return acceptLoop(t, func(c net.Conn, done <-chan struct{}) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		handle(c, done)
	})
}

// acceptLoop accepts connections on a loopback listener and runs serve on
// each in its own goroutine, closing the connection when serve returns; it
// returns the address. t.Cleanup closes done and the listener and waits for
// every goroutine it started, so serve must return once done is closed.
func acceptLoop(t *testing.T, serve func(c net.Conn, done <-chan struct{})) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				serve(c, done)
			})
		}
	})
	t.Cleanup(func() {
		close(done)
		ln.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// replyWith returns a handler that reads whatever the client sends first
// (up to a short pause) and then writes reply and closes.
func replyWith(reply string) func(net.Conn, <-chan struct{}) {
	return func(c net.Conn, done <-chan struct{}) {
		c.Write([]byte(reply))
		drain(c)
	}
}

// replyThenClose returns a handler that waits for the client's first bytes
// (up to a second), writes reply and closes.
func replyThenClose(reply string) func(net.Conn, <-chan struct{}) {
	return func(c net.Conn, done <-chan struct{}) {
		c.SetReadDeadline(time.Now().Add(time.Second))
		c.Read(make([]byte, 4096))
		c.Write([]byte(reply))
	}
}

// drain reads from c until the client closes or a second passes.
func drain(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(time.Second))
	b := make([]byte, 4096)
	for {
		if _, err := c.Read(b); err != nil {
			return
		}
	}
}

// stall keeps c open, sending nothing, until the test ends.
func stall(c net.Conn, done <-chan struct{}) {
	<-done
}

// findServer returns the path of a server binary from a Debian package, or
// skips the test saying which package to install.
func findServer(t *testing.T, pkg string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/lib/postgresql/*/bin"} {
			if m, _ := filepath.Glob(filepath.Join(dir, n)); len(m) > 0 {
				return m[len(m)-1]
			}
		}
	}
	t.Skipf("SKIP: %s is not installed (apt-get install %s); this check type was tested only against fakes", names[0], pkg)
	return ""
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startServer runs cmd as a child until the test ends (stopped by pid with
// SIGTERM, then SIGKILL) and waits until the server at addr answers its
// protocol: answers (ready_test.go) gets a fresh connection, with a deadline,
// and returns nil once the server serves. Accepting TCP is not enough.
func startServer(t *testing.T, cmd *exec.Cmd, addr string, answers func(net.Conn) error) {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			err = answers(c)
			c.Close()
			if err == nil {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before it answered on %s (%v):\n%s", cmd.Path, addr, err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer on %s within 60s (last: %v):\n%s", cmd.Path, addr, err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// asServiceUser wraps a command so that it runs as a user the server
// accepts: as is for a non-root test, through runuser as "postgres" (or
// "nobody") for root, with dir made theirs.
func asServiceUser(t *testing.T, user, dir string, argv ...string) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		return exec.Command(argv[0], argv[1:]...)
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		t.Skip("SKIP: running as root without runuser")
	}
	if out, err := exec.Command("chown", "-R", user, dir).CombinedOutput(); err != nil {
		t.Skipf("SKIP: cannot chown %s to %s: %v %s", dir, user, err, out)
	}
	traversable(dir)
	return exec.Command("runuser", append([]string{"-u", user, "--"}, argv...)...)
}

// traversable makes the test's temporary directories above dir searchable
// by other users (a server child that runs as postgres, mysql or nobody).
func traversable(dir string) {
	for d := filepath.Dir(dir); strings.HasPrefix(d, filepath.Clean(os.TempDir())+"/"); d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			os.Chmod(d, fi.Mode().Perm()|0o011)
		}
	}
}
