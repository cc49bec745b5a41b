package shm

// Process counters: written by the master (reloads, restarts), in the header, so every worker's
// /metrics gives the same values and they survive reloads. (Requests that no server could take
// are counted per upstream, in slots: Slot.CountNoServer.)

// CountReload records the outcome of a reload and when it ended. Only the master calls it.
func (t *Table) CountReload(ok bool) {
	if ok {
		t.m.add(hReloadsOK, 1)
		t.m.store(hReloadLastOK, 1)
	} else {
		t.m.add(hReloadsFailed, 1)
		t.m.store(hReloadLastOK, 0)
	}
	t.m.store(hReloadLastMs, uint64(NowMs()))
}

// CountRestart counts a worker replaced after an unexpected exit: killed by a signal or exited
// by itself. Only the master calls it.
func (t *Table) CountRestart(killed bool) {
	if killed {
		t.m.add(hRestartsKill, 1)
	} else {
		t.m.add(hRestartsExit, 1)
	}
}

// ProcessStats are the header's process counters.
type ProcessStats struct {
	ReloadsOK, ReloadsFailed   uint64
	ReloadLastMs               int64 // 0 before the first reload
	ReloadLastOK               bool
	RestartsExit, RestartsKill uint64
}

// ProcessStats reads the process counters.
func (t *Table) ProcessStats() ProcessStats {
	return ProcessStats{
		ReloadsOK: t.m.load(hReloadsOK), ReloadsFailed: t.m.load(hReloadsFailed),
		ReloadLastMs: int64(t.m.load(hReloadLastMs)), ReloadLastOK: t.m.load(hReloadLastOK) == 1,
		RestartsExit: t.m.load(hRestartsExit), RestartsKill: t.m.load(hRestartsKill),
	}
}
