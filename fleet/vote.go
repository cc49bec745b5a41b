package fleet

import "sort"

// State is the fleet's state of one key.
type State uint8

// The states a Vote decides.
const (
	Unknown State = iota // no checker has published
	Up
	Down
)

func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return "unknown"
}

// Vote is the fleet's view of one key: its checkers (the live hosts holding
// a claim on it), who among them says up and who says down, and the state
// they decide.
type Vote struct {
	State    State
	Checkers []string // sorted
	Up       []string // sorted; the checkers whose verdict is up
	Down     []string // sorted; the checkers whose verdict is down
}

// Decide is the voting rule: Down when more than half of the checkers say
// down, Up otherwise, Unknown when no checker has published. A checker that
// has not published yet counts against down: with 3 checkers, one down
// verdict is not enough, two are.
func Decide(checkers, up, down int) State {
	switch {
	case up+down == 0:
		return Unknown
	case 2*down > checkers:
		return Down
	}
	return Up
}

// makeVote builds the Vote of a key from its claim holders and their
// published verdicts.
func makeVote(checkers map[string]bool, verdicts map[string]bool) Vote {
	var v Vote
	for h := range checkers {
		v.Checkers = append(v.Checkers, h)
		if up, ok := verdicts[h]; ok {
			if up {
				v.Up = append(v.Up, h)
			} else {
				v.Down = append(v.Down, h)
			}
		}
	}
	sort.Strings(v.Checkers)
	sort.Strings(v.Up)
	sort.Strings(v.Down)
	v.State = Decide(len(v.Checkers), len(v.Up), len(v.Down))
	return v
}
