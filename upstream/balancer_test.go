package upstream

import (
	"testing"
	"time"

	"hcproxy/shm"
)

// servers allocates one slot per weight in a real table file under t.TempDir.
func servers(t testing.TB, weights ...int) ([]*Server, *shm.Table) {
	t.Helper()
	tb, err := shm.OpenMaster(t.TempDir()+"/t", len(weights))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	var out []*Server
	for i, w := range weights {
		addr := "127.0.0.1:" + string(rune('0'+i))
		idx, err := tb.Alloc(uint64(i), addr, "u", time.Second, 1, shm.Up)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &Server{Address: addr, Weight: w, Slot: tb.Slot(idx)})
	}
	return out, tb
}

func setHealth(t testing.TB, tb *shm.Table, s *Server, up bool) {
	t.Helper()
	tok := tb.NewToken(1)
	fence, ok := s.Slot.Claim(s.Slot.Owner(), tok, 0)
	if !ok {
		t.Fatal("claim")
	}
	for s.Slot.State().Available() != up {
		if _, err := s.Slot.Record(tok, fence, shm.Result{OK: up}, 1, 1); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRoundRobinHonoursWeightsSmoothly(t *testing.T) {
	ss, _ := servers(t, 1, 2, 5)
	rr := NewRoundRobin(ss)
	counts := map[*Server]int{}
	var seq []*Server
	for i := 0; i < 8*100; i++ {
		s := rr.Pick("", Available)
		counts[s]++
		seq = append(seq, s)
	}
	for i, w := range []int{1, 2, 5} {
		if counts[ss[i]] != w*100 {
			t.Errorf("server weight %d got %d of 800, want %d", w, counts[ss[i]], w*100)
		}
	}
	// Smooth: the weight-5 server never gets more than 2 picks in a row (nginx's sequence for
	// 5,1,1 is a a b a c a a).
	run := 0
	for _, s := range seq {
		if s == ss[2] {
			run++
			if run > 2 {
				t.Fatal("weighted picks come in bursts")
			}
		} else {
			run = 0
		}
	}
}

func TestRoundRobinSkipsUnavailable(t *testing.T) {
	ss, tb := servers(t, 1, 1, 1)
	rr := NewRoundRobin(ss)
	setHealth(t, tb, ss[1], false)
	ss[2].Slot.SetAdmin(shm.Drain)
	for i := 0; i < 30; i++ {
		if s := rr.Pick("", Available); s != ss[0] {
			t.Fatalf("pick %d went to %s, which is down or drained", i, s.Address)
		}
	}
	setHealth(t, tb, ss[0], false)
	if s := rr.Pick("", Available); s != nil {
		t.Fatalf("every server unavailable, picked %s", s.Address)
	}
	setHealth(t, tb, ss[1], true)
	if s := rr.Pick("", Available); s != ss[1] {
		t.Fatal("a server that came back is not picked")
	}
}
