package upstream

import (
	"testing"
)

// Every balancer's pick, over 8 servers of mixed weights, all available: zero allocations.
func BenchmarkPick(b *testing.B) {
	for _, name := range []string{"round_robin", "least_conn", "hash", "random_two"} {
		b.Run(name, func(b *testing.B) {
			ss, _ := servers(b, 1, 2, 3, 1, 1, 2, 1, 1)
			bal := New(name, ss)
			b.ReportAllocs()
			for b.Loop() {
				if bal.Pick("/some/path?q=1", Available) == nil {
					b.Fatal("no pick")
				}
			}
		})
	}
}

// BenchmarkPoolPick is the pick the proxy makes per request (primary, then backup).
func BenchmarkPoolPick(b *testing.B) {
	ss, _ := servers(b, 1, 1, 1, 1)
	p := NewPool("round_robin", "fail", ss)
	b.ReportAllocs()
	for b.Loop() {
		if s, _ := p.Pick("", nil); s == nil {
			b.Fatal("no pick")
		}
	}
}
