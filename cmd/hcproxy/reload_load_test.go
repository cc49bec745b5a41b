package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"hcproxy/internal/load"
	"hcproxy/status"
)

// Reloads under load lose no client request: keep-alive clients of a draining worker are told
// Connection: close after their response and reconnect to the new workers, the listening socket
// is never closed, and no connection waits in a queue nobody accepts from.
func TestReloadsUnderLoadLoseNoRequest(t *testing.T) {
	bs := startBackends(t, 3)
	p := startProxy(t, proxyOpts{workers: 2}, bs)
	p.eventually("backends checked", 10*time.Second, func(d status.Document) bool {
		for _, b := range d.Backends {
			if b.Checks == 0 {
				return false
			}
		}
		return true
	})
	done := make(chan load.Result)
	go func() {
		done <- load.Run(context.Background(), load.Options{Addr: p.listen, Conns: 16, Duration: 6 * time.Second, MaxRequests: 2_000_000})
	}()
	reloads := 0
	gen := p.dump().Generation
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		p.signal(syscall.SIGHUP)
		reloads++
	}
	res := <-done
	t.Logf("%d reloads under load: %v", reloads, res)
	if res.Requests < 1000 {
		t.Fatalf("load too small to mean anything: %v", res)
	}
	if res.Failed() != 0 || res.Non2xx != 0 {
		t.Fatalf("clients lost requests across %d reloads: %v", reloads, res)
	}
	d := p.eventually("settled", 20*time.Second, func(d status.Document) bool { return readyWorkers(d) == 2 && len(d.Workers) == 2 })
	if d.Generation < gen+2 {
		t.Errorf("generation %d after %d reloads from %d", d.Generation, reloads, gen)
	}
}
