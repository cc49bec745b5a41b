// Package etcdtest runs a real etcd cluster for tests: separate processes of Debian's
// etcd-server binary (/usr/bin/etcd) on loopback ports, their data in the test's temporary
// directory, each member started and stopped by its pid. The fleet package's tests and the
// end-to-end fleet test of cmd/hcproxy use it; a test that needs etcd skips, saying so, when
// the binary is missing.
package etcdtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Bin is Debian's etcd-server.
const Bin = "/usr/bin/etcd"

// Cluster is a real etcd cluster of separate processes on loopback.
type Cluster struct {
	t       testing.TB
	Members []*Member
}

// Member is one etcd process.
type Member struct {
	Name, Dir    string
	Client, Peer string // URLs
	args         []string
	cmd          *exec.Cmd
	done         chan struct{}
}

// Need skips the test when etcd is not installed.
func Need(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(Bin); err != nil {
		t.Skipf("%s is missing (apt-get install etcd-server): this test needs a real etcd", Bin)
	}
}

// FreePort returns a loopback address ("127.0.0.1:port") that was free a moment ago.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Start starts an n-member etcd cluster with fast elections and waits until it serves
// requests; t.Cleanup stops it. It skips the test without etcd.
func Start(t testing.TB, n int) *Cluster {
	Need(t)
	c := &Cluster{t: t}
	var initial []string
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i), Dir: filepath.Join(t.TempDir(), "etcd"),
			Client: "http://" + FreePort(t), Peer: "http://" + FreePort(t)}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.Peer)
	}
	for _, m := range c.Members {
		m.args = []string{"--name", m.Name, "--data-dir", m.Dir,
			"--listen-client-urls", m.Client, "--advertise-client-urls", m.Client,
			"--listen-peer-urls", m.Peer, "--initial-advertise-peer-urls", m.Peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "hcproxy-fleet-test",
			"--heartbeat-interval", "50", "--election-timeout", "500",
			"--logger", "zap", "--log-level", "error"}
		c.Start(m)
	}
	t.Cleanup(c.StopAll)
	c.WaitHealthy()
	return c
}

// Start starts member m (again, on its data).
func (c *Cluster) Start(m *Member) {
	c.t.Helper()
	m.cmd = exec.Command(Bin, m.args...)
	if os.Getenv("FLEET_ETCD_LOG") != "" {
		m.cmd.Stdout, m.cmd.Stderr = os.Stderr, os.Stderr
	}
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		c.t.Fatalf("start etcd %s: %v", m.Name, err)
	}
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(m.cmd, m.done)
}

// Stop stops member m by its pid (TERM, KILL after 5s) and waits for it.
func (c *Cluster) Stop(m *Member) {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
	m.cmd = nil
}

// StopAll stops every member.
func (c *Cluster) StopAll() {
	for _, m := range c.Members {
		c.Stop(m)
	}
}

// RestartAll starts every stopped member again on its data and waits until the cluster serves.
func (c *Cluster) RestartAll() {
	for _, m := range c.Members {
		if m.cmd == nil {
			c.Start(m)
		}
	}
	c.WaitHealthy()
}

// Leader returns the member that leads the cluster now (nil if none answers): stopping it is
// the harder case of losing one member, an election that cuts every watch that requires a
// leader.
func (c *Cluster) Leader() *Member {
	c.t.Helper()
	cli := c.Client()
	for _, m := range c.Members {
		if m.cmd == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := cli.Status(ctx, m.Client)
		cancel()
		if err == nil && st.Leader == st.Header.MemberId {
			return m
		}
	}
	return nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var e []string
	for _, m := range c.Members {
		e = append(e, m.Client)
	}
	return e
}

// Client is a plain etcd client for the test's own reads, closed when the test ends.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// WaitHealthy waits (up to 20s) until a write through the cluster succeeds.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	cli := c.Client()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Put(ctx, "/health-probe", "x")
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("etcd cluster not healthy after 20s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
