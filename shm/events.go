package shm

import (
	"fmt"
	"runtime"
)

// EventKind says what an event records.
type EventKind uint8

// Event kinds. Values are stored in the table: never renumber, only append.
const (
	EventHealth  EventKind = 1 // a health transition: Old and New are Health values
	EventAdmin   EventKind = 2 // an operator's admin change: Old and New are Admin values
	EventOwner   EventKind = 3 // a check changed owner: Pid is the new owner, Extra the old owner's pid (0 if none)
	EventPassive EventKind = 4 // a passive ejection by the data plane: Old and New are Health values
	// EventFleet: the master wrote the fleet's verdict into a slot another host checks: Old and
	// New are Health values, Label names the hosts whose verdicts decided it (comma separated,
	// cut to fit), Extra packs the vote: checkers | up<<8 | down<<16.
	EventFleet EventKind = 5
)

func (k EventKind) String() string {
	switch k {
	case EventHealth:
		return "health"
	case EventAdmin:
		return "admin"
	case EventOwner:
		return "owner"
	case EventPassive:
		return "passive"
	case EventFleet:
		return "fleet"
	}
	return fmt.Sprintf("kind_%d", uint8(k))
}

// Event is one entry of the event ring.
type Event struct {
	Seq     uint64 // sequence number, from 0, never reused
	TimeMs  int64  // Unix ms
	Kind    EventKind
	Slot    int
	Address string
	Label   string // the slot's upstream names
	Old     uint8
	New     uint8
	Reason  uint8 // probe reason code of the result that caused it
	Pid     int   // the process that appended it
	Extra   uint64
}

// Event entry offsets, relative to the entry.
const (
	eSeq   = 0 // Seq+1 once the entry is complete, eWriting|Seq while it is written, 0 never written
	eTime  = 8
	eInfo  = 16 // kind | old<<8 | new<<16 | reason<<24 | slot<<32
	ePid   = 24
	eExtra = 32
	eAddr  = 40
	eLabel = eAddr + 48
	eEnd   = eLabel + 40

	eWriting = 1 << 63
)

// AppendEvent adds ev to the ring (any process may, concurrently) and returns its sequence
// number; Seq and TimeMs (when zero) are filled in. The writer takes the next number, claims the
// entry by a CAS of its sequence word from the older event's value to a writing mark (with its
// number), writes it, and publishes the number with a CAS. A writer that finds a newer event
// there (it was lapped) drops its own, which readers count as missed; a writer never waits long
// for an older one that holds the entry (it may have been stopped or died inside): it takes the
// entry over, so an append cannot block a worker.
func (t *Table) AppendEvent(ev Event) uint64 {
	if t.readOnly {
		return 0
	}
	seq := t.m.add(hEventHead, 1) - 1
	off := eventOff(int(seq % EventCap))
	mine := eWriting | seq
	for try := 0; ; try++ {
		cur := t.m.load(off + eSeq)
		if cur&eWriting != 0 {
			holder := cur &^ eWriting
			if holder >= seq {
				return seq // lapped: a newer event is being written here
			}
			// An older writer holds it. It takes nanoseconds; one that holds it much longer
			// was stopped or died inside: take the entry from it (its publish will fail).
			if try >= 1000 && t.m.cas(off+eSeq, cur, mine) {
				break
			}
			runtime.Gosched()
			continue
		}
		if cur > seq+1 {
			return seq // lapped: a newer event holds the entry
		}
		if t.m.cas(off+eSeq, cur, mine) {
			break
		}
	}
	if ev.TimeMs == 0 {
		ev.TimeMs = NowMs()
	}
	t.m.store(off+eTime, uint64(ev.TimeMs))
	t.m.store(off+eInfo, uint64(ev.Kind)|uint64(ev.Old)<<8|uint64(ev.New)<<16|uint64(ev.Reason)<<24|uint64(uint32(ev.Slot))<<32)
	t.m.store(off+ePid, uint64(ev.Pid))
	t.m.store(off+eExtra, ev.Extra)
	t.m.storeString(off+eAddr, 48, ev.Address)
	t.m.storeString(off+eLabel, 40, ev.Label)
	t.m.cas(off+eSeq, mine, seq+1) // fails only if a later writer took the entry from us
	return seq
}

// EventHead returns the sequence number the next event will get: a reader that wants only new
// events starts there.
func (t *Table) EventHead() uint64 { return t.m.load(hEventHead) }

// ReadEvents returns up to max complete events from sequence number from on, the sequence
// number to continue from, and how many events the reader missed because the ring overwrote
// them before they were read. It never blocks and takes no lock: an entry still being written
// ends the batch (the next call returns it) unless half a ring was appended since, an entry
// overwritten while it was read counts as missed.
func (t *Table) ReadEvents(from uint64, max int) (evs []Event, next, missed uint64) {
	head := t.EventHead()
	if from > head { // a reader from another table life, or a bad cursor: start over
		from = head
	}
	if head-from > EventCap {
		missed = head - EventCap - from
		from = head - EventCap
	}
	seq := from
	for ; seq < head && len(evs) < max; seq++ {
		off := eventOff(int(seq % EventCap))
		s1 := t.m.load(off + eSeq)
		if s1&eWriting != 0 || s1 < seq+1 {
			if head-seq > EventCap/2 {
				// Its writer stalled (or a writer of an older lap finished over it): half a
				// ring later it is not coming; count it missed rather than wait forever.
				missed++
				continue
			}
			return evs, seq, missed // still being written
		}
		if s1 > seq+1 { // overwritten already
			missed++
			continue
		}
		info := t.m.load(off + eInfo)
		ev := Event{
			Seq:     seq,
			TimeMs:  int64(t.m.load(off + eTime)),
			Kind:    EventKind(info),
			Old:     uint8(info >> 8),
			New:     uint8(info >> 16),
			Reason:  uint8(info >> 24),
			Slot:    int(uint32(info >> 32)),
			Pid:     int(t.m.load(off + ePid)),
			Extra:   t.m.load(off + eExtra),
			Address: t.m.loadString(off+eAddr, 48),
			Label:   t.m.loadString(off+eLabel, 40),
		}
		if t.m.load(off+eSeq) != s1 { // overwritten while we read it
			missed++
			continue
		}
		evs = append(evs, ev)
	}
	return evs, seq, missed
}
