package shm

import (
	"testing"
	"time"
)

func TestPassiveEjectionAndRestore(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Up)
	s := tb.Slot(i)
	now := Now()
	if s.PassiveFailure(now, 3, time.Second) || s.PassiveFailure(now+1, 3, time.Second) {
		t.Fatal("ejected before max_fails")
	}
	// A failure after the window closed starts a new window.
	if s.PassiveFailure(now+int64(2*time.Second), 3, time.Second) {
		t.Fatal("failures from an old window counted")
	}
	s.PassiveFailure(now+int64(2*time.Second)+1, 3, time.Second)
	if !s.PassiveFailure(now+int64(2*time.Second)+2, 3, time.Second) {
		t.Fatal("max_fails failures within fail_timeout did not eject")
	}
	if s.Available() || !s.State().Ejected() || s.State().Health() != Up {
		t.Fatalf("ejected server: state %b", s.State())
	}
	// A passing check before fail_timeout is over does not bring it back; after, it does.
	tok := tb.NewToken(1)
	f, _ := s.Claim(0, tok, 0)
	s.m.store(s.off+sEjectUntil, uint64(Now()+int64(time.Hour)))
	if tr, _ := s.Record(tok, f, Result{OK: true}, 1, 1); tr.Restored || s.Available() {
		t.Fatal("restored before fail_timeout")
	}
	s.m.store(s.off+sEjectUntil, uint64(Now()-1))
	if tr, _ := s.Record(tok, f, Result{OK: true}, 1, 1); !tr.Restored || !s.Available() {
		t.Fatal("a passing check after fail_timeout did not restore the server")
	}
	// A failing check keeps the ejection and the fence logic intact.
	if got := s.Info().Passive; got != 5 {
		t.Errorf("passive failures %d, want 5", got)
	}
}

func TestOutlierConsecutive5xx(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Up)
	s := tb.Slot(i)
	now := Now()
	s.Response(now, true, 3, time.Second)
	s.Response(now, true, 3, time.Second)
	s.Response(now, false, 3, time.Second) // resets
	s.Response(now, true, 3, time.Second)
	s.Response(now, true, 3, time.Second)
	if s.State().Ejected() {
		t.Fatal("ejected without 3 consecutive 5xx")
	}
	if !s.Response(now, true, 3, time.Second) || s.Available() {
		t.Fatal("3 consecutive 5xx did not eject")
	}
}

func TestUpSinceOnTransition(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Down)
	s := tb.Slot(i)
	tok := tb.NewToken(1)
	f, _ := s.Claim(0, tok, 0)
	before := Now()
	s.Record(tok, f, Result{OK: true}, 1, 1)
	if s.UpSince() < before {
		t.Fatalf("up-since %d not set at the transition (before %d)", s.UpSince(), before)
	}
}

// The agent's admin state and weight live beside the operator's and survive check results.
func TestAgentState(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 4, Up)
	s := tb.Slot(i)
	if s.AgentWeight() != -1 || s.State().AgentAdmin() != Ready {
		t.Fatal("a fresh slot has agent settings")
	}
	if old := s.SetAgent(75, Drain); old != Ready || s.Available() || s.AgentWeight() != 75 {
		t.Fatalf("agent drain: old %v available %v weight %d", old, s.Available(), s.AgentWeight())
	}
	tok := tb.NewToken(1)
	f, _ := s.Claim(0, tok, 0)
	s.Record(tok, f, Result{OK: true}, 1, 1)
	if s.State().AgentAdmin() != Drain || s.State().Admin() != Ready {
		t.Fatal("a check result lost the agent's state, or it leaked into the operator's")
	}
	s.SetAgent(-1, Ready)
	if !s.Available() || s.AgentWeight() != -1 {
		t.Fatal("agent ready did not restore the server")
	}
}
