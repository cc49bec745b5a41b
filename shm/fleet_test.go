package shm

import (
	"errors"
	"sync"
	"testing"
	"time"
)

// The remote bit survives every other writer of the routing word: a probe's Record, a claim,
// an operator's admin change, an agent's, a passive ejection; and it never makes a server
// unavailable by itself.
func TestRemoteBitKept(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Up)
	s := tb.Slot(i)
	if s.Remote() {
		t.Fatal("a new slot is remote")
	}
	if was := s.SetRemote(true); was || !s.Remote() {
		t.Fatalf("SetRemote(true): was %v, now %v", was, s.Remote())
	}
	if !s.Available() {
		t.Fatal("the remote bit made an up server unavailable")
	}
	tok := tb.NewToken(1)
	f, ok := s.Claim(0, tok, Now()+int64(time.Second))
	if !ok || !s.Remote() {
		t.Fatalf("claim: ok %v remote %v", ok, s.Remote())
	}
	if _, err := s.Record(tok, f, Result{OK: false}, 1, 1); err != nil || !s.Remote() || s.State().Health() != Down {
		t.Fatalf("record: err %v remote %v health %v", err, s.Remote(), s.State().Health())
	}
	s.SetAdmin(Drain)
	s.SetAgent(50, Maint)
	if !s.Remote() || s.State().Admin() != Drain || s.State().AgentAdmin() != Maint {
		t.Fatalf("admin writes: %064b", s.State())
	}
	if was := s.SetRemote(false); !was || s.Remote() || s.State().Admin() != Drain || s.State().Fence() != f {
		t.Fatalf("SetRemote(false): was %v, state %064b", was, s.State())
	}
}

func TestClearRemote(t *testing.T) {
	tb := heapTable(t, 4)
	for k := range 3 {
		i, _ := tb.Alloc(uint64(k+1), "a:1", "u", time.Second, 1, Up)
		if k < 2 {
			tb.Slot(i).SetRemote(true)
		}
	}
	if n := tb.ClearRemote(); n != 2 {
		t.Fatalf("ClearRemote cleared %d, want 2", n)
	}
	for _, in := range tb.Snapshot().Slots {
		if in.State.Remote() {
			t.Fatalf("slot %d still remote", in.Index)
		}
	}
}

// WriteFleet is fenced like Record: the master writes the fleet's verdict under its own claim,
// and a worker that held an older fence writes nothing over it; once a worker claims the slot
// again, the master's fence is stale.
func TestWriteFleetFenced(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Up)
	s := tb.Slot(i)
	worker := tb.NewToken(10)
	wf, _ := s.Claim(0, worker, Now()+int64(time.Second))
	s.SetRemote(true)
	master := tb.NewToken(1)
	if _, err := s.WriteFleet(master, wf, Down, "fleet: h1 down"); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("write by a non-owner: %v", err)
	}
	// The worker was stopped inside a probe; its lease lapsed and the master took the slot.
	mf, ok := s.Claim(worker, master, Now()+int64(time.Hour))
	if !ok {
		t.Fatal("master claim failed")
	}
	tr, err := s.WriteFleet(master, mf, Down, "fleet: h1, h2 down")
	if err != nil || tr.From != Up || tr.To != Down {
		t.Fatalf("WriteFleet: %+v %v", tr, err)
	}
	in := s.Info()
	if in.State.Health() != Down || in.State.Streak() != 0 || !in.State.Remote() || in.Detail != "fleet: h1, h2 down" || in.Transitions != 1 {
		t.Fatalf("after WriteFleet: state %064b detail %q transitions %d", in.State, in.Detail, in.Transitions)
	}
	if tr, err := s.WriteFleet(master, mf, Down, "again"); err != nil || tr.Changed() || s.Info().Detail != "fleet: h1, h2 down" {
		t.Fatalf("same verdict again: %+v %v %q", tr, err, s.Info().Detail)
	}
	// The stale worker resumes: its result is not written.
	if _, err := s.Record(worker, wf, Result{OK: true}, 1, 1); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("stale worker's record: %v", err)
	}
	if s.State().Health() != Down {
		t.Fatal("stale worker overwrote the fleet's verdict")
	}
	// Handed back: the master releases, a worker claims; the master's fence is stale now.
	s.SetRemote(false)
	s.Release(master)
	w2 := tb.NewToken(11)
	f2, _ := s.Claim(0, w2, Now()+int64(time.Second))
	if _, err := s.WriteFleet(w2, mf, Up, "x"); !errors.Is(err, ErrFenced) {
		t.Fatalf("write under a stale fence: %v", err)
	}
	// The local check that follows starts its rise afresh from the fleet's verdict.
	if tr, _ := s.Record(w2, f2, Result{OK: true}, 2, 2); tr.To != Down || tr.Streak != 1 {
		t.Fatalf("first local pass after a fleet down: %+v", tr)
	}
	if tr, _ := s.Record(w2, f2, Result{OK: true}, 2, 2); tr.To != Up {
		t.Fatalf("second local pass: %+v", tr)
	}
}

// The master's SetRemote and a worker's Record race on the routing word: neither loses the
// other's write.
func TestRemoteRacesRecord(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Up)
	s := tb.Slot(i)
	tok := tb.NewToken(1)
	f, _ := s.Claim(0, tok, Now()+int64(time.Hour))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := range 2000 {
			s.SetRemote(k%2 == 0)
		}
	}()
	for range 2000 {
		if _, err := s.Record(tok, f, Result{OK: true}, 1, 1); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if s.Remote() || s.Info().Checks != 2000 || s.State().Streak() != 2000 {
		t.Fatalf("remote %v checks %d streak %d", s.Remote(), s.Info().Checks, s.State().Streak())
	}
}

func TestFleetStats(t *testing.T) {
	tb := heapTable(t, 1)
	if f, at := tb.FleetStats(); f != (FleetStats{}) || !at.IsZero() || f.Mode.String() != "none" {
		t.Fatalf("a new table: %+v %v", f, at)
	}
	want := FleetStats{Mode: FleetJoined, Members: 3, Claims: 7, RoundTrips: 100, Writes: 20, Fallbacks: 1, Sessions: 2, SinceMs: 1234}
	tb.SetFleetStats(want)
	if f, at := tb.FleetStats(); f != want || at.IsZero() {
		t.Fatalf("FleetStats = %+v, want %+v", f, want)
	}
	if tb.Snapshot().Fleet != want {
		t.Fatal("snapshot lacks the fleet figures")
	}
}
