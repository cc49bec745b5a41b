package shm

import (
	"testing"
	"time"
)

// Now is CLOCK_MONOTONIC (the clock other processes write into the table), not a process-relative
// reading: it lies between two clock_gettime(2) calls made around it, give or take the
// calibration's error, which is far below the milliseconds that leases and schedules use.
func TestNowIsClockMonotonic(t *testing.T) {
	const slack = int64(5 * time.Millisecond)
	for range 100 {
		before := rawNow()
		now := Now()
		after := rawNow()
		if now < before-slack || now > after+slack {
			t.Fatalf("Now() = %d, outside clock_gettime's [%d, %d] by more than %v", now, before, after, time.Duration(slack))
		}
	}
	a := Now()
	time.Sleep(20 * time.Millisecond)
	if d := Now() - a; d < int64(20*time.Millisecond) {
		t.Fatalf("Now() advanced %v over a 20ms sleep", time.Duration(d))
	}
}

// At(t) is Now as it was when t was read: between two readings of Now around time.Now.
func TestAtIsNowOfAReading(t *testing.T) {
	for range 100 {
		before := Now()
		at := At(time.Now())
		after := Now()
		if at < before || at > after {
			t.Fatalf("At(time.Now()) = %d, outside Now's [%d, %d]", at, before, after)
		}
	}
	t0 := time.Now()
	if d := At(t0.Add(time.Second)) - At(t0); d != int64(time.Second) {
		t.Fatalf("At(t+1s) - At(t) = %v", time.Duration(d))
	}
}

func BenchmarkNow(b *testing.B) {
	for b.Loop() {
		Now()
	}
}

func BenchmarkClockGettime(b *testing.B) {
	for b.Loop() {
		rawNow()
	}
}
