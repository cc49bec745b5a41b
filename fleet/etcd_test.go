package fleet

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

// etcdBin is Debian's etcd-server; the tests that need it skip without it.
const etcdBin = "/usr/bin/etcd"

// cluster is a real etcd cluster of separate processes on loopback, each
// member started and stopped by its pid.
type cluster struct {
	t       testing.TB
	members []*member
}

type member struct {
	name, dir, client, peer string
	args                    []string
	cmd                     *exec.Cmd
	done                    chan struct{}
}

// needEtcd skips the test when etcd is not installed.
func needEtcd(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(etcdBin); err != nil {
		t.Skipf("%s is missing (apt-get install etcd-server): fleet tests need a real etcd", etcdBin)
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startCluster starts an n-member etcd cluster with fast elections and waits
// until it serves requests; t.Cleanup stops it.
func startCluster(t testing.TB, n int) *cluster {
	needEtcd(t)
	c := &cluster{t: t}
	var initial []string
	for i := range n {
		m := &member{name: fmt.Sprintf("m%d", i), dir: filepath.Join(t.TempDir(), "etcd"),
			client: "http://" + freePort(t), peer: "http://" + freePort(t)}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	for _, m := range c.members {
		m.args = []string{"--name", m.name, "--data-dir", m.dir,
			"--listen-client-urls", m.client, "--advertise-client-urls", m.client,
			"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", "hcproxy-fleet-test",
			"--heartbeat-interval", "50", "--election-timeout", "500",
			"--logger", "zap", "--log-level", "error"}
		c.start(m)
	}
	t.Cleanup(c.stopAll)
	c.waitHealthy()
	return c
}

func (c *cluster) start(m *member) {
	c.t.Helper()
	m.cmd = exec.Command(etcdBin, m.args...)
	if os.Getenv("FLEET_ETCD_LOG") != "" {
		m.cmd.Stdout, m.cmd.Stderr = os.Stderr, os.Stderr
	}
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		c.t.Fatalf("start etcd %s: %v", m.name, err)
	}
	m.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(m.cmd, m.done)
}

// stop stops one member by its pid and waits for it.
func (c *cluster) stop(m *member) {
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

func (c *cluster) stopAll() {
	for _, m := range c.members {
		c.stop(m)
	}
}

// restartAll starts every stopped member again on its data.
func (c *cluster) restartAll() {
	for _, m := range c.members {
		if m.cmd == nil {
			c.start(m)
		}
	}
	c.waitHealthy()
}

func (c *cluster) endpoints() []string {
	var e []string
	for _, m := range c.members {
		e = append(e, m.client)
	}
	return e
}

// client is a plain etcd client for the test's own reads.
func (c *cluster) client() *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cli.Close() })
	return cli
}

// waitHealthy waits until a write through the cluster succeeds.
func (c *cluster) waitHealthy() {
	c.t.Helper()
	cli := c.client()
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
