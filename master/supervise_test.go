package master

// Unit tests of the process layer through the seam (sys.go): a reload, a failed reload, the
// respawn backoff against a crash loop and the lifeline, each driven by fake worker processes
// and a fake clock (fake_test.go) in front of a real master: real config file, table, pid file,
// listening socket, control sockets and lifeline pipe.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"hcproxy/shm"
)

// fixture is a master running in the test with fake workers.
type fixture struct {
	t      *testing.T
	dir    string
	config string
	listen string
	fake   *fakeOS
	m      *Master
	done   chan error
	table  *shm.Table // read-only view, for assertions
}

// startMaster writes a config with workers and servers and runs a master on it; it returns
// once the first generation is published.
func startMaster(t *testing.T, workers int, servers ...string) *fixture {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	fx := &fixture{t: t, dir: dir, config: filepath.Join(dir, "hcproxy.toml"), listen: listen, fake: newFakeOS(t), done: make(chan error, 1)}
	fx.writeConfig(workers, servers...)
	fx.m = newMaster(fx.config, fx.fake.sys())
	go func() { fx.done <- fx.m.run() }()
	t.Cleanup(fx.stop)
	fx.waitStarted(workers)
	fx.waitFor("the table", func() bool {
		if fx.table == nil {
			fx.table, _ = shm.Open(filepath.Join(dir, "hcproxy.table"), true)
		}
		return fx.table != nil && fx.table.Generation() > 0
	})
	t.Cleanup(func() { fx.table.Close() })
	return fx
}

// writeConfig replaces the config (atomically, as an operator's editor would not, but a reload
// must never read half a file in a test).
func (fx *fixture) writeConfig(workers int, servers ...string) {
	fx.t.Helper()
	cfg := fmt.Sprintf(`workers = %d
pid_file = "hcproxy.pid"
table = "hcproxy.table"
error_log = "hcproxy.log"
steering = "shared"
shutdown_timeout = "1s"
[[server]]
listen = %q
upstream = "app"
[upstream.app]
servers = ["%s"]
[upstream.app.check]
uri = "/health"
interval = "1s"
`, workers, fx.listen, strings.Join(servers, `", "`))
	if err := os.WriteFile(fx.config+".tmp", []byte(cfg), 0o600); err != nil {
		fx.t.Fatal(err)
	}
	if err := os.Rename(fx.config+".tmp", fx.config); err != nil {
		fx.t.Fatal(err)
	}
}

// stop stops the master (TERM) and waits for it; the fake workers exit on "stop".
func (fx *fixture) stop() {
	fx.m.sigs <- syscall.SIGTERM
	select {
	case err := <-fx.done:
		if err != nil {
			fx.t.Errorf("master: %v", err)
		}
	case <-time.After(10 * time.Second):
		fx.t.Errorf("master did not stop within 10s of TERM")
		fx.fake.clock.Advance(time.Hour) // its shutdown deadline: kill what is left
		<-fx.done
	}
	if fx.t.Failed() {
		b, _ := os.ReadFile(filepath.Join(fx.dir, "hcproxy.log"))
		fx.t.Logf("master log:\n%s", b)
	}
}

// waitFor polls cond until it holds, for up to 10s.
func (fx *fixture) waitFor(what string, cond func() bool) {
	fx.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			fx.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitStarted returns the next n workers the master starts.
func (fx *fixture) waitStarted(n int) []*fakeWorker {
	fx.t.Helper()
	var ws []*fakeWorker
	deadline := time.After(10 * time.Second)
	for len(ws) < n {
		select {
		case w := <-fx.fake.started:
			ws = append(ws, w)
		case <-deadline:
			fx.t.Fatalf("%d of %d workers started within 10s", len(ws), n)
		}
	}
	return ws
}

// waitExited waits until w has exited and returns why.
func (fx *fixture) waitExited(w *fakeWorker) string {
	fx.t.Helper()
	var why string
	fx.waitFor(fmt.Sprintf("worker %d to exit", w.pid), func() (ok bool) { ok, why = w.exited(); return ok })
	return why
}

func (fx *fixture) log() string {
	b, _ := os.ReadFile(filepath.Join(fx.dir, "hcproxy.log"))
	return string(b)
}

// reload sends HUP and returns the workers of the new generation once n have started.
func (fx *fixture) reload(n int) []*fakeWorker {
	fx.t.Helper()
	fx.m.sigs <- syscall.SIGHUP
	return fx.waitStarted(n)
}

// consumed waits until the master has read everything ws wrote on their control sockets and
// taken every event off its queue, so what it does about them has been done or is being done
// by its one goroutine.
func (fx *fixture) consumed(ws ...*fakeWorker) {
	fx.t.Helper()
	fx.waitFor("the master to read its workers' messages", func() bool {
		for _, w := range ws {
			var n int
			var err error
			raw, _ := w.files["control"].SyscallConn()
			raw.Control(func(fd uintptr) { n, err = unix.IoctlGetInt(int(fd), unix.SIOCOUTQ) })
			if err != nil || n > 0 {
				return false
			}
		}
		return len(fx.m.events) == 0
	})
}

// slot returns the table slot the payload of w gives address.
func slot(t *testing.T, w *fakeWorker, address string) int {
	t.Helper()
	for _, s := range w.payload.Slots {
		if s.Address == address {
			return s.Slot
		}
	}
	t.Fatalf("worker %d (generation %d) has no slot for %s", w.pid, w.payload.Generation, address)
	return -1
}

// A reload starts the new generation, publishes it only once every new worker is ready, and
// only then drains the old one; a server that stays keeps its slot, a removed server's slot is
// freed once the old generation is gone, an added one gets a fresh slot.
func TestReloadPublishesNewGenerationWhenReadyThenDrainsOld(t *testing.T) {
	fx := startMaster(t, 2, "127.0.0.1:1", "127.0.0.1:2")
	old := fx.fake.all()
	keptSlot, removedSlot := slot(t, old[0], "127.0.0.1:1"), slot(t, old[0], "127.0.0.1:2")

	fx.fake.behave(holdReady)
	fx.writeConfig(3, "127.0.0.1:1", "127.0.0.1:3")
	armed := fx.fake.clock.asked(readyTimeout)
	nw := fx.reload(3)
	for _, w := range nw {
		if w.payload.Generation != 2 {
			t.Fatalf("new worker %d has generation %d, want 2", w.pid, w.payload.Generation)
		}
	}
	fx.waitFor("the ready timeout to be armed", func() bool { return fx.fake.clock.asked(readyTimeout) > armed })

	nw[0].releaseReady()
	nw[1].releaseReady()
	fx.consumed(nw[0], nw[1])
	if g := fx.table.Generation(); g != 1 {
		t.Fatalf("generation %d published with one new worker not ready", g)
	}
	for _, w := range old {
		if w.got("drain") {
			t.Fatalf("old worker %d told to drain with one new worker not ready", w.pid)
		}
	}

	nw[2].releaseReady()
	fx.waitFor("generation 2 published", func() bool { return fx.table.Generation() == 2 })
	for _, w := range old {
		if why := fx.waitExited(w); why != "drain" {
			t.Errorf("old worker %d exited by %q, want drain", w.pid, why)
		}
	}
	for _, w := range nw {
		if done, why := w.exited(); done || w.got("drain") {
			t.Errorf("new worker %d: exited %v (%s), drained %v", w.pid, done, why, w.got("drain"))
		}
	}
	if s := slot(t, nw[0], "127.0.0.1:1"); s != keptSlot {
		t.Errorf("a server that stayed moved from slot %d to %d (its state would be lost)", keptSlot, s)
	}
	added := slot(t, nw[0], "127.0.0.1:3")
	fx.waitFor("the removed server's slot freed", func() bool { return !fx.table.Slot(removedSlot).Used() || removedSlot == added })
	if s := fx.table.Slot(added); !s.Used() || s.Address() != "127.0.0.1:3" {
		t.Errorf("added server's slot %d: used %v, address %q", added, s.Used(), s.Address())
	}
	if log := fx.log(); !strings.Contains(log, "msg=reloaded") || !strings.Contains(log, " generation=2 workers=3 ") {
		t.Errorf("no reload logged:\n%s", fx.log())
	}
}

// A reload whose new workers do not get ready (they hang until the ready timeout, or exit)
// kills them and keeps the running generation: not drained, still published, its slots as
// they were; the slot allocated for the failed config is freed. A later reload still works.
func TestFailedReloadKeepsOldGeneration(t *testing.T) {
	for _, tc := range []struct {
		name    string
		new     behaviour
		logged  string
		timeout bool
	}{
		{"new workers never ready", neverReady, "workers not ready after 30s", true},
		{"new worker exits before ready", crashAtStart, "exited before it was ready", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := startMaster(t, 2, "127.0.0.1:1")
			old := fx.fake.all()
			kept := slot(t, old[0], "127.0.0.1:1")

			fx.fake.behave(tc.new)
			fx.writeConfig(2, "127.0.0.1:1", "127.0.0.1:9")
			armed := fx.fake.clock.asked(readyTimeout)
			nw := fx.reload(2)
			added := slot(t, nw[0], "127.0.0.1:9")
			if tc.timeout {
				// The new generation's own ready timeout: the first one's is pending too.
				fx.waitFor("the ready timeout to be armed", func() bool { return fx.fake.clock.asked(readyTimeout) > armed })
				fx.fake.clock.Advance(readyTimeout)
			}
			for _, w := range nw {
				fx.waitExited(w)
			}
			fx.waitFor("the failure logged", func() bool {
				return strings.Contains(fx.log(), "reload failed: new workers did not start") && strings.Contains(fx.log(), tc.logged)
			})
			if tc.timeout {
				for _, w := range nw {
					if _, why := w.exited(); why != "killed" {
						t.Errorf("new worker %d exited by %q, want killed", w.pid, why)
					}
				}
			}
			if g := fx.table.Generation(); g != 1 {
				t.Errorf("generation %d published after a failed reload, want 1", g)
			}
			for _, w := range old {
				if done, why := w.exited(); done || w.got("drain") {
					t.Errorf("old worker %d: exited %v (%s), drained %v", w.pid, done, why, w.got("drain"))
				}
			}
			if s := fx.table.Slot(kept); !s.Used() || s.Address() != "127.0.0.1:1" {
				t.Errorf("running server's slot %d: used %v, address %q", kept, s.Used(), s.Address())
			}
			if s := fx.table.Slot(added); s.Used() {
				t.Errorf("slot %d allocated for the failed config is still used (%q)", added, s.Address())
			}

			fx.fake.behave(reportReady)
			next := fx.reload(2)
			fx.waitFor("the next reload published", func() bool { return fx.table.Generation() == next[0].payload.Generation })
			for _, w := range old {
				fx.waitExited(w)
			}
		})
	}
}

// A worker that keeps crashing young is respawned with a delay that doubles from 100ms up to
// 10s (the fake clock's waits say so), so a crash loop cannot spin the CPU; one that lived
// longer than 10s is replaced at once and resets the delay; one killed by a signal is replaced
// at once and leaves the delay as it was.
func TestCrashLoopRespawnsWithGrowingBackoff(t *testing.T) {
	fx := startMaster(t, 1, "127.0.0.1:1")
	clock := fx.fake.clock
	first := fx.fake.all()[0]
	mark := len(clock.Waits())

	fx.fake.behave(crashAtStart)
	first.crash(1)
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 6400 * time.Millisecond, 10 * time.Second, 10 * time.Second}
	for i, d := range want {
		fx.waitFor(fmt.Sprintf("respawn %d to wait %v", i+1, d), func() bool { return clock.pending(d) })
		if i == len(want)-1 {
			fx.fake.behave(reportReady)
		}
		clock.Advance(d)
		w := fx.waitStarted(1)[0]
		if i < len(want)-1 {
			fx.waitExited(w)
		}
	}
	if got := clock.Waits()[mark:]; !slices.Equal(got, want) {
		t.Fatalf("respawn waits %v, want %v", got, want)
	}

	// A worker that lived 11s: replaced at once, and the delay starts over.
	lived := fx.fake.all()[len(fx.fake.all())-1]
	clock.Advance(11 * time.Second)
	fx.fake.behave(crashAtStart)
	lived.crash(1)
	fx.waitExited(fx.waitStarted(1)[0]) // no clock move needed: respawned at once
	fx.waitFor("respawn after a young crash to wait 100ms", func() bool { return clock.pending(100 * time.Millisecond) })

	// Killed by a signal: replaced at once; the delay is not reset (the next crash waits 200ms).
	fx.fake.behave(reportReady)
	clock.Advance(100 * time.Millisecond)
	victim := fx.waitStarted(1)[0]
	fx.fake.behave(crashAtStart)
	victim.Signal(os.Kill)
	fx.waitExited(fx.waitStarted(1)[0])
	fx.waitFor("respawn after the next young crash to wait 200ms", func() bool { return clock.pending(200 * time.Millisecond) })

	wantAll := append(want, 0, 100*time.Millisecond, 0, 200*time.Millisecond)
	if got := clock.Waits()[mark:]; !slices.Equal(got, wantAll) {
		t.Errorf("respawn waits %v, want %v", got, wantAll)
	}
	if n := len(fx.fake.all()); n != 1+len(want)+3 {
		t.Errorf("%d workers started, want %d", n, 1+len(want)+3)
	}
}

// Every worker, of the first generation, of a reload and respawned, holds the lifeline's read
// end and never its write end, so when the master dies (the kernel closes the write end, its
// only copy) every worker sees EOF and exits, however the master died.
func TestLifelineWorkersExitWhenMasterDies(t *testing.T) {
	fx := startMaster(t, 2, "127.0.0.1:1")
	first := fx.fake.all()
	fx.writeConfig(2, "127.0.0.1:1", "127.0.0.1:2")
	gen2 := fx.reload(2)
	for _, w := range first {
		fx.waitExited(w)
	}
	gen2[0].crash(1)
	fx.waitFor("the respawn to wait", func() bool { return fx.fake.clock.pending(100 * time.Millisecond) })
	fx.fake.clock.Advance(100 * time.Millisecond)
	live := append(fx.waitStarted(1), gen2[1])

	for _, w := range append(first, fx.fake.all()...) {
		if w.lineFl&unix.O_ACCMODE != unix.O_RDONLY {
			t.Fatalf("worker %d's lifeline has flags %#x, want the read end", w.pid, w.lineFl)
		}
	}
	// The master dies: its copy of the write end is closed, as the kernel closes it.
	fx.m.lifelineW.Close()
	for _, w := range live {
		if why := fx.waitExited(w); why != "lifeline" {
			t.Errorf("worker %d exited by %q, want lifeline", w.pid, why)
		}
	}
}
