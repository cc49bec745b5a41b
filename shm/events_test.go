package shm

import (
	"sync"
	"testing"
)

func TestEventsAppendAndRead(t *testing.T) {
	tb := heapTable(t, 1)
	for i := 0; i < 5; i++ {
		tb.AppendEvent(Event{Kind: EventHealth, Slot: i, Address: "127.0.0.1:80", Label: "app", Old: uint8(Up), New: uint8(Down), Reason: 7, Pid: 42})
	}
	evs, next, missed := tb.ReadEvents(0, 100)
	if len(evs) != 5 || next != 5 || missed != 0 {
		t.Fatalf("read %d events, next %d, missed %d", len(evs), next, missed)
	}
	e := evs[3]
	if e.Seq != 3 || e.Slot != 3 || e.Kind != EventHealth || Health(e.Old) != Up || Health(e.New) != Down || e.Reason != 7 || e.Pid != 42 || e.Address != "127.0.0.1:80" || e.Label != "app" || e.TimeMs == 0 {
		t.Fatalf("event %+v", e)
	}
	if evs, next, _ := tb.ReadEvents(next, 100); len(evs) != 0 || next != 5 {
		t.Fatalf("nothing new: %d events, next %d", len(evs), next)
	}
	if evs, next, _ := tb.ReadEvents(2, 2); len(evs) != 2 || next != 4 || evs[0].Seq != 2 {
		t.Fatalf("bounded read: %d events, next %d", len(evs), next)
	}
}

// A reader that falls more than a ring behind is told how many events it missed, and continues
// with the oldest one still there.
func TestEventsReaderFallsBehind(t *testing.T) {
	tb := heapTable(t, 1)
	for i := 0; i < EventCap+10; i++ {
		tb.AppendEvent(Event{Kind: EventOwner, Slot: i})
	}
	evs, next, missed := tb.ReadEvents(0, 5)
	if missed != 10 || len(evs) != 5 || evs[0].Seq != 10 || next != 15 {
		t.Fatalf("missed %d, %d events from %d, next %d", missed, len(evs), evs[0].Seq, next)
	}
	// A cursor past the head (a table recreated under the reader) starts at the head.
	if evs, next, _ := tb.ReadEvents(1<<40, 5); len(evs) != 0 || next != tb.EventHead() {
		t.Fatalf("cursor past head: %d events, next %d", len(evs), next)
	}
}

// Concurrent writers and a reader: every event read is complete and in sequence, and read plus
// missed accounts for every event written.
func TestEventsConcurrent(t *testing.T) {
	tb := heapTable(t, 1)
	const writers, each = 4, 3000
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				tb.AppendEvent(Event{Kind: EventHealth, Slot: w, Extra: uint64(i), Address: "x"})
			}
		}(w)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var cur, got, missed uint64
	last := int64(-1)
	for finished := false; !finished; {
		select {
		case <-done:
			finished = true
		default:
		}
		evs, next, m := tb.ReadEvents(cur, 256)
		for _, e := range evs {
			if int64(e.Seq) <= last || e.Address != "x" || e.Kind != EventHealth {
				t.Fatalf("bad event %+v after %d", e, last)
			}
			last = int64(e.Seq)
		}
		got += uint64(len(evs))
		missed += m
		cur = next
	}
	for {
		evs, next, m := tb.ReadEvents(cur, 256)
		got += uint64(len(evs))
		missed += m
		if next == cur {
			break
		}
		cur = next
	}
	if got+missed != writers*each {
		t.Fatalf("read %d + missed %d != written %d", got, missed, writers*each)
	}
}
