package shm

import (
	"runtime"
	"time"
)

// SlotInfo is a consistent copy of one slot, for hcctl, the status page and tests.
type SlotInfo struct {
	Index       int
	Key         uint64
	Address     string
	Label       string
	Owner       Token
	LeaseNs     int64
	State       State
	NextDueNs   int64
	History     uint64
	Interval    time.Duration
	LastCheckMs int64
	LastRTT     time.Duration
	LastReason  uint8
	LastStatus  int
	Detail      string
	SinceMs     int64
	SinceReason uint8
	Checks      uint64
	Failures    uint64
	Transitions uint64
	Passive     uint64
	Active      int64
	Requests    uint64
	Errors      uint64
	Weight      int
	RTTSumUs    uint64
	RTTBuckets  [len(RTTBounds) + 1]uint64 // per bucket (not cumulative); the last is +Inf
	FailReasons [MaxReasons]uint64         // failed checks by probe reason code
	AgentWeight int                        // percent an agent asked for, -1 none
	UpSinceNs   int64                      // monotonic ns of the last transition to up, 0 none
	SlowStart   time.Duration              // slow-start ramp the master recorded, 0 none
	Req         RequestStats               // request metrics, all workers
}

// seqWait is how long a reader waits for the diagnostic record's seqlock before it takes the
// record as it is (a variable for tests).
var seqWait = 250 * time.Millisecond

// Info reads the slot. The diagnostic record is read under its seqlock (retried while a write is
// in progress, and taken as it is after seqWait, so a dead writer cannot hang a reader).
func (s Slot) Info() SlotInfo {
	in := SlotInfo{
		Index:       s.i,
		Key:         s.Key(),
		Address:     s.Address(),
		Label:       s.Label(),
		Owner:       s.Owner(),
		LeaseNs:     s.Lease(),
		State:       s.State(),
		NextDueNs:   s.NextDue(),
		History:     s.m.load(s.off + sHistory),
		Interval:    s.Interval(),
		Checks:      s.m.load(s.off + sChecks),
		Failures:    s.m.load(s.off + sFailures),
		Transitions: s.m.load(s.off + sTransitions),
		Passive:     s.m.load(s.off + sPassive),
		Active:      int64(s.m.load(s.off + sActive)),
		Requests:    s.m.load(s.off + sRequests),
		Req:         s.RequestStats(),
		Errors:      s.m.load(s.off + sErrors),
		Weight:      s.Weight(),
		AgentWeight: s.AgentWeight(),
		UpSinceNs:   s.UpSince(),
		SlowStart:   s.SlowStart(),
		RTTSumUs:    s.m.load(s.off + sRTTSum),
	}
	for i := range in.RTTBuckets {
		in.RTTBuckets[i] = s.m.load(s.off + sRTTBuckets + 8*i)
	}
	for i := range in.FailReasons {
		in.FailReasons[i] = s.m.load(s.off + sFailReasons + 8*i)
	}
	// Retry while a write is in progress or one happened during the read, for up to seqWait;
	// then take the record as it is (a writer that died inside the lock: the next claim repairs
	// it). The bound is in time, not in tries: a fixed number of tries (10,000) passed in a few
	// milliseconds, less than a live writer can be descheduled on a busy machine, and the reader
	// then returned a record torn between two writes.
	var deadline time.Time
	for try := 0; ; try++ {
		q := s.m.load(s.off + sSeq)
		expired := try > 0 && !time.Now().Before(deadline)
		if q&1 == 0 || expired {
			in.LastCheckMs = int64(s.m.load(s.off + sLastCheckMs))
			in.LastRTT = time.Duration(s.m.load(s.off+sLastRTT)) * time.Microsecond
			res := s.m.load(s.off + sLastResult)
			in.LastReason, in.LastStatus = uint8(res), int(uint16(res>>8))
			in.Detail = s.m.loadString(s.off+sDetail, detailLen)
			in.SinceMs = int64(s.m.load(s.off + sSinceMs))
			in.SinceReason = uint8(s.m.load(s.off + sSinceReason))
			if s.m.load(s.off+sSeq) == q || expired {
				break
			}
		}
		if try == 0 {
			deadline = time.Now().Add(seqWait)
		}
		if try < 100 {
			runtime.Gosched()
		} else {
			time.Sleep(50 * time.Microsecond)
		}
	}
	return in
}

// Snapshot is a copy of the whole table.
type Snapshot struct {
	Generation uint64
	MasterPid  int
	// MasterRunning says the master that last attached still runs (Table.MasterRunning);
	// MasterMs is when it attached (Unix ms).
	MasterRunning bool
	MasterMs      int64
	Capacity      int
	NowNs         int64 // CLOCK_MONOTONIC (Now) when it was taken: "now" for its monotonic times
	Workers       []WorkerInfo
	Slots         []SlotInfo // allocated slots, in index order
	Fleet         FleetStats // the master's fleet figures (Mode FleetNone without a [fleet])
}

// Snapshot copies the header, the worker table and every allocated slot.
func (t *Table) Snapshot() Snapshot {
	sn := Snapshot{Generation: t.Generation(), MasterPid: t.MasterPid(), Capacity: t.slots, NowNs: Now(), Workers: t.Workers(),
		MasterRunning: t.MasterRunning(), MasterMs: t.MasterAttachedMs()}
	sn.Fleet, _ = t.FleetStats()
	for i := 0; i < t.slots; i++ {
		if s := t.Slot(i); s.Used() {
			sn.Slots = append(sn.Slots, s.Info())
		}
	}
	return sn
}
