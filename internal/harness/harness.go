// Package harness runs hcproxy's real binaries for the integration tests (cmd/hcproxy) and the
// chaos suite (chaos/): it builds hcproxy and hcctl once per test binary, starts a master on a
// config in a temporary directory, reads its health table through hcctl, waits for its workers
// with a deadline, shows its log when a test failed, and stops it and every worker it had by
// pid, never by name.
//
// A Proxy is one master process at a time (Start again after it exited, for a restart); its
// directory holds the config, the table and the pid file, so a second Proxy on the same
// directory is a second master on the same table. Every wait polls with a deadline and fails
// the test with what it last saw.
package harness

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"hcproxy/internal/backend"
	"hcproxy/status"
)

// Binaries are the paths of the hcproxy and hcctl built for a test binary.
type Binaries struct {
	Hcproxy, Hcctl string
}

// Main is a TestMain's body: it builds hcproxy and hcctl into a temporary directory (with
// -race when HCPROXY_RACE=1), hands their paths to use, runs the tests and removes the
// binaries. It returns the exit code for os.Exit.
func Main(m *testing.M, use func(Binaries)) int {
	dir, err := os.MkdirTemp("", "hcproxy-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	b := Binaries{Hcproxy: filepath.Join(dir, "hcproxy"), Hcctl: filepath.Join(dir, "hcctl")}
	args := []string{"build"}
	if os.Getenv("HCPROXY_RACE") == "1" {
		args = append(args, "-race")
	}
	for out, pkg := range map[string]string{b.Hcproxy: "hcproxy/cmd/hcproxy", b.Hcctl: "hcproxy/cmd/hcctl"} {
		if out, err := exec.Command("go", append(args, "-o", out, pkg)...).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	use(b)
	return m.Run()
}

// FreeAddr returns a loopback address nobody listened on a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// StartBackends starts n test backends on loopback, named prefix0, prefix1, ..., closed when
// the test ends.
func StartBackends(t testing.TB, prefix string, n int) []*backend.Backend {
	t.Helper()
	var bs []*backend.Backend
	for i := 0; i < n; i++ {
		b, err := backend.Start(fmt.Sprintf("%s%d", prefix, i), "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		bs = append(bs, b)
	}
	return bs
}

// ReadyWorkers counts the ready workers of d's published generation.
func ReadyWorkers(d status.Document) int {
	n := 0
	for _, w := range d.Workers {
		if w.State == "ready" && w.Generation == d.Generation {
			n++
		}
	}
	return n
}

// BackendState returns the table's row for the server at addr.
func BackendState(d status.Document, addr string) (status.Backend, bool) {
	for _, b := range d.Backends {
		if b.Address == addr {
			return b, true
		}
	}
	return status.Backend{}, false
}
