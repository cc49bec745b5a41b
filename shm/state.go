package shm

import "fmt"

// Health is a server's checked health.
type Health uint8

// Health values. Zero is never stored in an allocated slot.
const (
	Up       Health = 1
	Down     Health = 2
	Checking Health = 3 // not yet known: takes no traffic until its first passing check
)

func (h Health) String() string {
	switch h {
	case Up:
		return "up"
	case Down:
		return "down"
	case Checking:
		return "checking"
	}
	return fmt.Sprintf("health_%d", uint8(h))
}

// ParseHealth maps "up", "down" and "checking" to their values.
func ParseHealth(s string) (Health, bool) {
	switch s {
	case "up":
		return Up, true
	case "down":
		return Down, true
	case "checking":
		return Checking, true
	}
	return 0, false
}

// Admin is an operator's state for a server, kept across reloads: Drain takes it out of rotation
// for new requests, Maint also stops treating it as a candidate at all. Checks continue in both.
type Admin uint8

// Admin values.
const (
	Ready Admin = 0
	Drain Admin = 1
	Maint Admin = 2
)

func (a Admin) String() string {
	switch a {
	case Ready:
		return "ready"
	case Drain:
		return "drain"
	case Maint:
		return "maint"
	}
	return fmt.Sprintf("admin_%d", uint8(a))
}

// State is a slot's routing word: health, admin state, the last result and its streak, and the
// fencing number of the current owner, packed in one 64-bit value that is read with one atomic load.
//
//	bits 0-1  health      bits 2-3  admin      bit 4  last result passed
//	bit 5     ejected by passive checks (the data plane saw it fail)
//	bits 6-7  admin state an agent check asked for (HAProxy's agent-check drain/maint)
//	bits 8-23 streak (consecutive results equal to the last one, saturating)
//	bit 24    remote: another host of the fleet checks this server (fleet.go)
//	bits 32-63 fence (bumped by every claim)
//
// Bit 24 was always 0 before the fleet, and 0 means "checked here": it was given its meaning
// without a Version bump, under the rule of layout.go for appended fields.
type State uint64

const maxStreak = 0xffff

// Health returns the checked health.
func (s State) Health() Health { return Health(s & 3) }

// Admin returns the operator's state.
func (s State) Admin() Admin { return Admin(s >> 2 & 3) }

// LastOK reports whether the last check passed.
func (s State) LastOK() bool { return s>>4&1 == 1 }

// Streak is the number of consecutive results equal to the last one.
func (s State) Streak() int { return int(s >> 8 & maxStreak) }

// Fence is the fencing number of the current ownership.
func (s State) Fence() uint32 { return uint32(s >> 32) }

// Ejected reports whether passive checks took the server out of rotation.
func (s State) Ejected() bool { return s&stateEjected != 0 }

const stateEjected State = 1 << 5

// agentMask holds the agent's admin state (bits 6-7).
const agentMask State = 3 << 6

// AgentAdmin returns the admin state the server's agent asked for (Ready when none).
func (s State) AgentAdmin() Admin { return Admin(s >> 6 & 3) }

// Available reports whether the data plane may send new requests to the server: health up, admin
// ready (the operator's and the agent's), and not ejected by passive checks.
func (s State) Available() bool { return s&(3|3<<2|stateEjected|agentMask) == State(Up) }

func makeState(h Health, a Admin, lastOK bool, streak int, fence uint32) State {
	if streak > maxStreak {
		streak = maxStreak
	}
	var ok State
	if lastOK {
		ok = 1
	}
	return State(h&3) | State(a&3)<<2 | ok<<4 | State(streak)<<8 | State(fence)<<32
}

// next applies one check result to s with rise/fall hysteresis and returns the new word.
// Up goes down after fall consecutive failures; down goes up after rise consecutive passes;
// checking goes up on the first pass and down on the first failure.
func (s State) next(ok bool, rise, fall int) State {
	streak := 1
	if s.Streak() > 0 && s.LastOK() == ok {
		streak = s.Streak() + 1
	}
	h := s.Health()
	switch {
	case h == Up && !ok && streak >= fall:
		h = Down
	case h == Down && ok && streak >= rise:
		h = Up
	case h == Checking && ok:
		h = Up
	case h == Checking && !ok:
		h = Down
	}
	return makeState(h, s.Admin(), ok, streak, s.Fence()) | s&(stateEjected|agentMask|stateRemote)
}
