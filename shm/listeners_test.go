package shm

import (
	"fmt"
	"sync"
	"testing"
)

func TestHeaderFits(t *testing.T) {
	if headerEnd > HeaderSize {
		t.Fatalf("header fields end at %d, past HeaderSize %d", headerEnd, HeaderSize)
	}
	if hMasterRuntime+8*runtimeWords > hWorkers {
		t.Fatalf("master runtime figures end at %d, past the worker table at %d", hMasterRuntime+8*runtimeWords, hWorkers)
	}
}

// TestListenerCounters: two workers counting on one address meet on one record; open is the
// sum of the live workers' lanes, and a worker that died takes its connections with it.
func TestListenerCounters(t *testing.T) {
	tb := heapTable(t, 4)
	w0, _ := tb.ReserveWorker(1)
	w1, _ := tb.ReserveWorker(1)
	a0, a1 := tb.Listener("127.0.0.1:80", w0), tb.Listener("127.0.0.1:80", w1)
	b1 := tb.Listener("[::1]:81", w1) // the second lane of the word
	for i := 0; i < 5; i++ {
		a0.Accepted()
	}
	a1.Accepted()
	a0.Closed()
	b1.Accepted()
	b1.Accepted()
	b1.Closed()
	got := tb.Listeners()
	want := []ListenerInfo{{"127.0.0.1:80", 6, 5}, {"[::1]:81", 2, 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("listeners %v, want %v", got, want)
	}
	tb.SetWorkerState(w0, WorkerDead) // killed: its 4 open connections are gone with it
	if got := tb.Listeners()[0]; got.Open != 1 || got.Accepted != 6 {
		t.Fatalf("after worker 0 died: %+v, want 6 accepted, 1 open", got)
	}
	tb.FreeWorker(w0)
	w2, _ := tb.ReserveWorker(2) // takes entry w0 again: its lanes start at 0
	if w2 != w0 {
		t.Fatalf("reserved %d, want the freed %d", w2, w0)
	}
	if got := tb.Listeners()[0]; got.Open != 1 {
		t.Fatalf("after the entry was reused: %+v, want 1 open", got)
	}
}

func TestListenerCapCountsNothingBeyond(t *testing.T) {
	tb := heapTable(t, 4)
	w, _ := tb.ReserveWorker(1)
	for i := 0; i < ListenerCap; i++ {
		tb.Listener(fmt.Sprintf("127.0.0.1:%d", 1000+i), w).Accepted()
	}
	extra := tb.Listener("127.0.0.1:9", w)
	extra.Accepted() // counts nothing, and does not panic
	extra.Closed()
	if n := len(tb.Listeners()); n != ListenerCap {
		t.Fatalf("%d listeners, want %d", n, ListenerCap)
	}
	if (Listener{}).ok || tb.Listener("", w).ok || tb.Listener("x:1", WorkerCap).ok {
		t.Fatal("an empty address or an out-of-range worker got a counting handle")
	}
}

// TestListenerClaimRace: workers claiming records for the same addresses at once end with one
// record per address (run under -race).
func TestListenerClaimRace(t *testing.T) {
	tb := heapTable(t, 4)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		i, _ := tb.ReserveWorker(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := 0; a < 3; a++ {
				l := tb.Listener(fmt.Sprintf("127.0.0.1:%d", 80+a), i)
				l.Accepted()
				l.Closed()
			}
		}()
	}
	wg.Wait()
	ls := tb.Listeners()
	if len(ls) != 3 {
		t.Fatalf("%d records, want 3: %v", len(ls), ls)
	}
	for _, l := range ls {
		if l.Accepted != 8 || l.Open != 0 {
			t.Fatalf("%+v, want 8 accepted, 0 open", l)
		}
	}
}

func TestRuntimeFigures(t *testing.T) {
	tb := heapTable(t, 4)
	w, _ := tb.ReserveWorker(1)
	r := ReadRuntime()
	if r.Goroutines == 0 || r.HeapBytes == 0 {
		t.Fatalf("ReadRuntime %+v: no goroutines or heap", r)
	}
	tb.SetRuntime(w, r)
	tb.SetRuntime(-1, Runtime{Goroutines: 7})
	if got := tb.Runtime(w); got != r {
		t.Fatalf("worker runtime %+v, want %+v", got, r)
	}
	if got := tb.Runtime(-1); got.Goroutines != 7 {
		t.Fatalf("master runtime %+v", got)
	}
	tb.FreeWorker(w)
	if got := tb.Runtime(w); got != (Runtime{}) {
		t.Fatalf("freed entry keeps %+v", got)
	}
}
