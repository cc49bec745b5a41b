package upstream

import (
	"testing"
	"time"

	"hcproxy/shm"
)

// The weight a balancer gives a server is the effective weight the status page computes from the
// slot, at every point of a slow-start ramp under an agent's percentage: they cannot disagree.
func TestWeightAtIsTheStatusPagesEffectiveWeight(t *testing.T) {
	ss, tb := servers(t, 1) // the slot records weight 1, as the master does for this server
	s := ss[0]
	setHealth(t, tb, s, false)
	setHealth(t, tb, s, true)
	s.SlowStart = 4 * time.Second
	tb.SetSlowStart(s.Slot.Index(), s.SlowStart)
	s.Slot.SetAgent(50, shm.Ready)
	up := s.Slot.UpSince()
	for _, at := range []time.Duration{-time.Second, 0, time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, time.Hour} {
		now := up + int64(at)
		got, want := s.weightAt(now), s.Slot.Info().EffectiveWeight(now)
		if got != want {
			t.Errorf("%v into the ramp: balancer weight %d, status page %d", at, got, want)
		}
	}
	if w := s.weightAt(up + int64(time.Second)); w != 12 { // 1 × 100 × 50% × 1/4
		t.Errorf("a second into a 4s ramp at agent 50%%: %d, want 12", w)
	}
}
