package shm

import (
	"testing"
	"time"
)

// EffectiveWeight is the one formula the balancers and the status page share: a wrong case here
// is a server taking a share of traffic the page does not show.
func TestEffectiveWeight(t *testing.T) {
	const s = int64(time.Second)
	up := 1000 * s // the last transition to up
	for _, tc := range []struct {
		name              string
		weight, agent     int
		upSince, slow, at int64
		want              int
		left              time.Duration
	}{
		{"no slow start", 10, -1, up, 0, up + s, 1000, 0},
		{"slow start, never came up (started up)", 10, -1, 0, 4 * s, up, 1000, 0},
		{"ramp start", 10, -1, up, 4 * s, up, 1, 4 * time.Second},
		{"ramp 25%", 10, -1, up, 4 * s, up + s, 250, 3 * time.Second},
		{"ramp 50%, weight 1", 1, -1, up, 4 * s, up + 2*s, 50, 2 * time.Second},
		{"ramp never below 1 of a weight of 1", 1, -1, up, int64(time.Hour), up + s, 1, time.Hour - time.Second},
		{"ramp over exactly", 10, -1, up, 4 * s, up + 4*s, 1000, 0},
		{"after the ramp", 10, -1, up, 4 * s, up + time.Hour.Nanoseconds(), 1000, 0},
		{"up_since in the future (another boot)", 10, -1, up, 4 * s, up - s, 1000, 0},
		{"negative slow start is none", 10, -1, up, -4 * s, up + s, 1000, 0},
		{"agent 50%", 10, 50, up, 0, up + s, 500, 0},
		{"agent 100%", 10, 100, 0, 0, up, 1000, 0},
		{"agent 0% takes nothing, even ramping", 10, 0, up, 4 * s, up + s, 0, 3 * time.Second},
		{"agent 50% and ramp 25%", 10, 50, up, 4 * s, up + s, 125, 3 * time.Second},
	} {
		if got := EffectiveWeight(tc.weight, tc.agent, tc.upSince, tc.slow, tc.at); got != tc.want {
			t.Errorf("%s: EffectiveWeight = %d, want %d", tc.name, got, tc.want)
		}
		if got := SlowStartLeft(tc.upSince, tc.slow, tc.at); got != tc.left {
			t.Errorf("%s: SlowStartLeft = %v, want %v", tc.name, got, tc.left)
		}
		in := SlotInfo{Weight: tc.weight, AgentWeight: tc.agent, UpSinceNs: tc.upSince, SlowStart: time.Duration(tc.slow)}
		if got := in.EffectiveWeight(tc.at); got != tc.want {
			t.Errorf("%s: SlotInfo.EffectiveWeight = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// The master's slow start reaches the snapshot with the transition time it ramps from, a freed
// slot's slow start does not leak into its next server, and the snapshot carries its own now.
func TestSlowStartInSnapshot(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 10, Down)
	tb.SetSlowStart(i, 4*time.Second)
	s := tb.Slot(i)
	if s.SlowStart() != 4*time.Second {
		t.Fatalf("slow start %v after SetSlowStart(4s)", s.SlowStart())
	}
	tok := tb.NewToken(1)
	f, _ := s.Claim(0, tok, 0)
	if _, err := s.Record(tok, f, Result{OK: true}, 1, 1); err != nil {
		t.Fatal(err)
	}
	sn := tb.Snapshot()
	in := sn.Slots[0]
	if in.SlowStart != 4*time.Second || in.UpSinceNs == 0 || in.UpSinceNs != s.UpSince() || in.Weight != 10 {
		t.Fatalf("snapshot slot: slow %v up since %d (slot %d) weight %d", in.SlowStart, in.UpSinceNs, s.UpSince(), in.Weight)
	}
	if sn.NowNs < in.UpSinceNs || sn.NowNs > Now() {
		t.Fatalf("snapshot now %d, up since %d", sn.NowNs, in.UpSinceNs)
	}
	if w := in.EffectiveWeight(in.UpSinceNs + int64(time.Second)); w != 250 {
		t.Fatalf("a second into a 4s ramp: %d, want 250", w)
	}
	tb.UpdateSlot(i, "u", time.Second, 10)
	if s.SlowStart() != 4*time.Second {
		t.Fatal("UpdateSlot changed the slow start (only SetSlowStart writes it)")
	}
	tb.SetSlowStart(i, -time.Second)
	if s.SlowStart() != 0 {
		t.Fatalf("a negative slow start is recorded as %v, want 0", s.SlowStart())
	}
	tb.SetSlowStart(i, time.Minute)
	tb.Free(i)
	j, _ := tb.Alloc(2, "b:1", "u", time.Second, 1, Up)
	if got := tb.Slot(j).SlowStart(); got != 0 {
		t.Fatalf("a reused slot kept the slow start %v of the server before", got)
	}
}
