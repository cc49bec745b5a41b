package shm

import (
	"sync"
	"testing"
	"time"
)

// Workers count no-server requests and finished requests into the same slot at once: every one
// is counted, the no-server count apart from the status classes, and a reader sees them grow.
// On the heap, so that -race sees the accesses.
func TestCountNoServerConcurrent(t *testing.T) {
	tb := heapTable(t, 2)
	i, err := tb.Alloc(1, "127.0.0.1:9101", "app", time.Second, 1, Down)
	if err != nil {
		t.Fatal(err)
	}
	s := tb.Slot(i)
	other := tb.Slot(1 - i)
	const workers, each = 4, 500
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < each; n++ {
				s.CountNoServer()
				s.CountRequest(&Request{Status: 200, Duration: time.Millisecond})
			}
		}()
	}
	var last uint64
	for done := false; !done; {
		r := s.RequestStats()
		if r.NoServer < last {
			t.Fatalf("no-server count went back from %d to %d", last, r.NoServer)
		}
		last = r.NoServer
		done = last == workers*each
	}
	wg.Wait()
	r := s.RequestStats()
	if r.NoServer != workers*each || r.Classes != [5]uint64{0, workers * each, 0, 0, 0} {
		t.Errorf("no server %d, classes %v; want %d and %d 2xx", r.NoServer, r.Classes, workers*each, workers*each)
	}
	if n := other.RequestStats().NoServer; n != 0 {
		t.Errorf("the other slot counted %d", n)
	}
	if n := s.Info().Req.NoServer; n != workers*each {
		t.Errorf("Info: no server %d, want %d", n, workers*each)
	}
}

// A slot freed and allocated again starts with no no-server count: a server that comes back
// (or the next one in the slot) does not inherit its former upstream's 503s.
func TestAllocClearsNoServer(t *testing.T) {
	tb := heapTable(t, 1)
	i, err := tb.Alloc(1, "127.0.0.1:9101", "app", time.Second, 1, Down)
	if err != nil {
		t.Fatal(err)
	}
	tb.Slot(i).CountNoServer()
	tb.Free(i)
	j, err := tb.Alloc(2, "127.0.0.1:9102", "api", time.Second, 1, Down)
	if err != nil {
		t.Fatal(err)
	}
	if j != i {
		t.Fatalf("slot %d, want the freed %d", j, i)
	}
	if n := tb.Slot(j).RequestStats().NoServer; n != 0 {
		t.Errorf("fresh slot's no-server count %d, want 0", n)
	}
}
