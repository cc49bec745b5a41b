package shm

import "runtime/metrics"

// Runtime figures: each worker (and the master) writes a few figures of its Go runtime into the
// table from time to time (PublishRuntime), so that /metrics, served by any worker, gives every
// process's figures under a stable label (its worker entry; the master's own place), with no
// series per pid.

// Runtime is one process's Go runtime figures.
type Runtime struct {
	Goroutines uint64 // live goroutines
	HeapBytes  uint64 // bytes of heap memory occupied by live and not yet swept objects
	GCCycles   uint64 // completed GC cycles since the process started
}

// runtimeSamples are the runtime/metrics names read for Runtime, in its field order.
var runtimeSamples = []string{"/sched/goroutines:goroutines", "/memory/classes/heap/objects:bytes", "/gc/cycles/total:gc-cycles"}

// ReadRuntime reads this process's Runtime (no stop-the-world, unlike runtime.ReadMemStats).
func ReadRuntime() Runtime {
	s := make([]metrics.Sample, len(runtimeSamples))
	for i, n := range runtimeSamples {
		s[i].Name = n
	}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() == metrics.KindUint64 {
			return s[i].Value.Uint64()
		}
		return 0
	}
	return Runtime{Goroutines: v(0), HeapBytes: v(1), GCCycles: v(2)}
}

// runtimeOff is where the figures of worker entry i (or the master's, i < 0) live.
func runtimeOff(i int) int {
	if i < 0 {
		return hMasterRuntime
	}
	return hRuntime + i*8*runtimeWords
}

// SetRuntime records r for worker entry i, or the master if i < 0.
func (t *Table) SetRuntime(i int, r Runtime) {
	if i >= WorkerCap {
		return
	}
	off := runtimeOff(i)
	t.m.store(off, r.Goroutines)
	t.m.store(off+8, r.HeapBytes)
	t.m.store(off+16, r.GCCycles)
}

// Runtime reads the figures of worker entry i, or the master's if i < 0 (zero: none written).
func (t *Table) Runtime(i int) Runtime {
	if i >= WorkerCap {
		return Runtime{}
	}
	off := runtimeOff(i)
	return Runtime{Goroutines: t.m.load(off), HeapBytes: t.m.load(off + 8), GCCycles: t.m.load(off + 16)}
}

// clearRuntime zeroes the figures of worker entry i.
func (t *Table) clearRuntime(i int) {
	t.SetRuntime(i, Runtime{})
}
