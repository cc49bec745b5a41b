package worker

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"hcproxy/probe"
	"hcproxy/shm"
)

// slowHealth is a real server that answers each probe after delay and records when each arrived.
type slowHealth struct {
	addr  string
	mu    sync.Mutex
	times []time.Time
}

func startSlowHealth(t *testing.T, delay time.Duration) *slowHealth {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h := &slowHealth{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				h.mu.Lock()
				h.times = append(h.times, time.Now())
				h.mu.Unlock()
				time.Sleep(delay)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
			}()
		}
	}()
	return h
}

func (h *slowHealth) arrivals() []time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Time(nil), h.times...)
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A reload with a probe in flight: the old generation's owner drains, its probe finishes and is
// recorded under its fence, and only then does the new generation's worker get the slot; it
// continues the schedule, so the server sees one probe per interval (issue 13, finding 1: the
// new generation took the slot at once, the old result was refused, and the check was lost).
func TestDrainRecordsTheProbeInFlightAndHandsTheSlotOver(t *testing.T) {
	const iv, timeout = 500 * time.Millisecond, 400 * time.Millisecond
	srv := startSlowHealth(t, 250*time.Millisecond)
	tb, err := shm.OpenMaster(filepath.Join(t.TempDir(), "table"), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	si, err := tb.Alloc(1, srv.addr, "app", iv, 1, shm.Up)
	if err != nil {
		t.Fatal(err)
	}
	slot := tb.Slot(si)
	register := func(gen uint64) (int, shm.Token) {
		i, err := tb.ReserveWorker(gen)
		if err != nil {
			t.Fatal(err)
		}
		tok := tb.Register(i, os.Getpid())
		tb.SetWorkerState(i, shm.WorkerReady)
		return i, tok
	}
	newTarget := func() *target {
		return &target{slot: slot, addr: srv.addr, server: srv.addr, label: "app", prober: probe.NewHTTP(probe.HTTPOptions{URI: "/health"}),
			interval: iv, timeout: timeout, rise: 1, fall: 1, seed: 7}
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	tb.SetGeneration(1)
	ia, toka := register(1)
	a := newChecker(tb, toka, ia, 1, []*target{newTarget()}, log)
	a.Start(context.Background())
	defer a.Stop()
	waitFor(t, "a probe in flight", 3*time.Second, func() bool { return len(srv.arrivals()) == 1 })

	// The reload: a new generation is ready and published, the old worker drains.
	ib, tokb := register(2)
	b := newChecker(tb, tokb, ib, 2, []*target{newTarget()}, log)
	b.Start(context.Background())
	defer b.Stop()
	tb.SetGeneration(2)
	tb.SetWorkerState(ia, shm.WorkerDraining)
	a.Drain()
	select {
	case <-a.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("drain did not finish")
	}
	if in := slot.Info(); in.Checks != 1 || in.LastReason != 0 {
		t.Fatalf("the probe in flight at the drain: %d checks recorded (reason %d), want 1 passing", in.Checks, in.LastReason)
	}
	waitFor(t, "the new generation owns the slot", 2*time.Second, func() bool { return slot.Owner() == tokb })
	waitFor(t, "three more checks", 3*time.Second, func() bool { return slot.Info().Checks >= 4 })
	ts := srv.arrivals()
	for i := 1; i < len(ts); i++ {
		if g := ts[i].Sub(ts[i-1]); g < iv*3/4 || g > iv*5/4 {
			t.Errorf("probes %d and %d %v apart, want one interval (%v)", i-1, i, g.Round(time.Millisecond), iv)
		}
	}
	if in := slot.Info(); int(in.Checks) != len(ts) && int(in.Checks) != len(ts)-1 {
		t.Errorf("%d probes reached the server, %d recorded", len(ts), in.Checks)
	}
}
