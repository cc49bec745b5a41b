package worker

import (
	"testing"
	"time"
)

// The fleet's remote mark: a worker hands back the slots the master marks as checked by another
// host (at the nudge, or before their next probe), never claims them while marked, makes no
// probe of them, and claims them again once the mark is cleared (fallback).
func TestRemoteSlotsHandedBackAndNotClaimed(t *testing.T) {
	const n = 20
	const iv = 200 * time.Millisecond
	st, c, tok := runChecker(t, n, iv, 0)

	for _, s := range st.slots[:n/2] {
		s.SetRemote(true)
	}
	c.Nudge()
	waitFor(t, "the remote slots handed back", iv+iv/2, func() bool { return st.ownedBy(tok, 0, n/2) == 0 })
	before := make([]uint64, n)
	for k, s := range st.slots {
		before[k] = s.Info().Checks
	}
	time.Sleep(4 * iv) // a window of four intervals: the local slots are checked, the remote ones not
	for k, s := range st.slots {
		got := s.Info().Checks - before[k]
		switch {
		case k < n/2 && (got != 0 || s.Owner() != 0):
			t.Errorf("remote slot %d: %d checks in the window, owner %v", k, got, s.Owner())
		case k >= n/2 && (got < 3 || s.Owner() != tok):
			t.Errorf("local slot %d: %d checks in 4 intervals, owner %v", k, got, s.Owner())
		}
	}

	st.tb.ClearRemote()
	c.Nudge()
	waitFor(t, "the slots claimed again", iv, func() bool { return st.ownedBy(tok, 0, n) == n })
	waitFor(t, "the slots checked again", 2*iv, func() bool {
		for k, s := range st.slots[:n/2] {
			if s.Info().Checks == before[k] {
				return false
			}
		}
		return true
	})
}
