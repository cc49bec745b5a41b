package main

import (
	"syscall"
	"testing"
	"time"

	"hcproxy/status"
)

// A worker that hangs (SIGSTOP) keeps its table entry, so only its lapsed lease lets the others
// take its checks; when it resumes it finds them taken and writes nothing over its successors
// (its fence is stale), and no backend is then checked twice per interval.
func TestHungWorkerLosesChecksByLeaseAndResumesFenced(t *testing.T) {
	bs := startBackends(t, 6)
	p := startProxy(t, proxyOpts{workers: 2, interval: "200ms"}, bs)
	d := p.eventually("all checks owned", 10*time.Second, func(d status.Document) bool {
		for _, b := range d.Backends {
			if b.OwnerPid == 0 || b.Checks < 2 {
				return false
			}
		}
		return true
	})
	hung := d.Backends[0].OwnerPid
	if err := syscall.Kill(hung, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	defer func() {
		if !resumed {
			syscall.Kill(hung, syscall.SIGCONT)
		}
	}()
	// lease = interval + timeout + 2s
	p.eventually("checks of the hung worker taken over", 10*time.Second, func(d status.Document) bool {
		for _, b := range d.Backends {
			if b.OwnerPid == hung || b.OwnerPid == 0 {
				return false
			}
		}
		return true
	})
	syscall.Kill(hung, syscall.SIGCONT)
	resumed = true
	resumedAt := time.Now()
	time.Sleep(2 * time.Second)
	for _, b := range bs {
		if lo, _ := minMax(probeGaps(b, resumedAt)); lo < 50*time.Millisecond {
			t.Errorf("backend %s checked twice within %v after the hung worker resumed", b.Addr, lo)
		}
		n := len(probeGaps(b, resumedAt))
		if n < 7 || n > 11 {
			t.Errorf("backend %s: %d checks in 2s at 200ms after the resume", b.Addr, n+1)
		}
	}
	if !alive(hung) {
		t.Error("the resumed worker died")
	}
}
