package shm

import (
	"testing"
	"time"
)

// BenchmarkAvailable is the data plane's per-request table read: one atomic load of the routing
// word and a mask.
func BenchmarkAvailable(b *testing.B) {
	tb := heapTable(b, 1)
	i, _ := tb.Alloc(1, "127.0.0.1:80", "app", time.Second, 1, Up)
	s := tb.Slot(i)
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		if s.Available() {
			n++
		}
	}
	if n == 0 {
		b.Fatal("server not available")
	}
}

// BenchmarkRecord is one check result written by its owner.
func BenchmarkRecord(b *testing.B) {
	tb := heapTable(b, 1)
	i, _ := tb.Alloc(1, "127.0.0.1:80", "app", time.Second, 1, Up)
	s := tb.Slot(i)
	tok := tb.NewToken(1)
	f, _ := s.Claim(0, tok, 0)
	b.ReportAllocs()
	for b.Loop() {
		s.Record(tok, f, Result{OK: true, RTT: time.Millisecond}, 2, 3)
	}
}
