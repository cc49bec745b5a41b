package shm

import "time"

// WeightScale is the unit of EffectiveWeight: a configured weight of 1 is WeightScale, so that
// slow start can ramp even a weight of 1 in steps.
const WeightScale = 100

// EffectiveWeight returns the weight, in units of 1/WeightScale, that the balancers give a server
// at monotonic time now (ns) while it is available: its configured weight, times the percentage
// an agent check asked for (agentPct; -1 for none, and 0 takes no requests), times the slow-start
// ramp, which grows linearly from the server's last transition to up (upSince, monotonic ns; 0
// when it never made one) over slowStart (ns; 0 or less for none) and is never below 1 while it
// runs. An upSince after now (a time from another boot) is no ramp.
//
// It reads no clock and no table, so that the balancers (package upstream) and the status page
// compute the same number from the same inputs.
func EffectiveWeight(weight, agentPct int, upSince, slowStart, now int64) int {
	w := weight * WeightScale
	if agentPct >= 0 {
		w = w * agentPct / 100
	}
	if w <= 0 || !ramping(upSince, slowStart, now) {
		return w
	}
	return max(1, int(int64(w)*(now-upSince)/slowStart))
}

// SlowStartLeft returns how much of the slow-start ramp (see EffectiveWeight) remains at
// monotonic time now: 0 when none runs.
func SlowStartLeft(upSince, slowStart, now int64) time.Duration {
	if !ramping(upSince, slowStart, now) {
		return 0
	}
	return time.Duration(upSince + slowStart - now)
}

// ramping reports whether a slow-start ramp of slowStart ns from upSince runs at now.
func ramping(upSince, slowStart, now int64) bool {
	return slowStart > 0 && upSince != 0 && now >= upSince && now-upSince < slowStart
}

// EffectiveWeight is EffectiveWeight of the slot's recorded weight, agent percentage, last
// transition to up and slow-start ramp at monotonic time now (Snapshot.NowNs).
func (in SlotInfo) EffectiveWeight(now int64) int {
	return EffectiveWeight(in.Weight, in.AgentWeight, in.UpSinceNs, int64(in.SlowStart), now)
}

// SlowStartLeft is SlowStartLeft of the slot at monotonic time now (Snapshot.NowNs).
func (in SlotInfo) SlowStartLeft(now int64) time.Duration {
	return SlowStartLeft(in.UpSinceNs, int64(in.SlowStart), now)
}
