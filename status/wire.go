package status

import (
	"sort"
	"strconv"
	"strings"
	"time"

	"hcproxy/probe"
	"hcproxy/shm"
)

// Document is the whole status view: the table header, the workers and every backend. Its JSON
// form is the status page's ?format=json and hcctl dump --json.
type Document struct {
	Generation uint64 `json:"generation"` // generation the master last published
	MasterPid  int    `json:"master_pid"` // pid of the master that last attached
	// MasterRunning is false when that master is gone (stopped, killed, or its pid now names
	// another process): the table is a leftover, its states as they were at LastWrittenUnixMs.
	MasterRunning     bool       `json:"master_running"`
	LastWrittenUnixMs int64      `json:"last_written_unix_ms"` // newest of the master's attach, a heartbeat, a check
	Capacity          int        `json:"capacity"`             // slots in the table
	GeneratedUnixMs   int64      `json:"generated_unix_ms"`    // when the snapshot was taken
	Workers           []Worker   `json:"workers"`              // non-free entries of the worker table, by index
	Upstreams         []Upstream `json:"upstreams"`            // the servers summed up by upstream label, by name
	Backends          []Backend  `json:"backends"`             // allocated slots, by upstream then address
	// Fleet is this host's place in the fleet (docs/fleet.md), absent without a [fleet].
	Fleet *Fleet `json:"fleet,omitempty"`
}

// Fleet is the fleet's figures the master records in the table.
type Fleet struct {
	Mode       string `json:"mode"`        // fleet (joined), fallback (checking every server here)
	Members    int    `json:"members"`     // live members seen (0 in fallback)
	Claims     int    `json:"claims"`      // servers this host holds a claim on (0 in fallback)
	RoundTrips uint64 `json:"round_trips"` // etcd requests since the master started
	Writes     uint64 `json:"writes"`      // etcd write requests
	Fallbacks  uint64 `json:"fallbacks"`   // times the host left the fleet for fallback
	Sessions   uint64 `json:"sessions"`    // times it joined
	// SinceUnixMs is when the host entered its mode: when it joined, or fell back.
	SinceUnixMs int64 `json:"since_unix_ms"`
}

// Worker is one entry of the worker table.
type Worker struct {
	Index           int    `json:"index"`
	Pid             int    `json:"pid"`    // 0 until the worker registered
	Serial          uint32 `json:"serial"` // never reused; with the pid it is the ownership token
	Generation      uint64 `json:"generation"`
	State           string `json:"state"` // starting, ready, draining, dead
	HeartbeatUnixMs int64  `json:"heartbeat_unix_ms"`
	StartedUnixMs   int64  `json:"started_unix_ms"`
	ChecksOwned     int    `json:"checks_owned"` // slots owned at the last heartbeat
	Requests        uint64 `json:"requests"`     // requests the worker proxied
}

// Backend is one checked server (one slot of the table).
type Backend struct {
	Slot            int    `json:"slot"`
	Upstream        string `json:"upstream"` // names of the upstreams using it, comma separated
	Address         string `json:"address"`
	State           string `json:"state"` // up, down, checking
	Admin           string `json:"admin"` // ready, drain, maint
	Available       bool   `json:"available"`
	OwnerPid        int    `json:"owner_pid"`    // 0 when no worker owns the check
	OwnerSerial     uint32 `json:"owner_serial"` // 0 when no worker owns the check
	Consecutive     int    `json:"consecutive"`  // results in a row equal to the last one
	LastOK          bool   `json:"last_ok"`
	Checks          uint64 `json:"checks"`
	Failures        uint64 `json:"failures"`
	Transitions     uint64 `json:"transitions"`
	LastResult      string `json:"last_result"` // reason name, "ok" when passing, "" before any check
	LastStatus      int    `json:"last_status"` // HTTP status of the last check, 0 if none
	LastDetail      string `json:"last_detail"` // detail of the last failure (kept after a pass)
	LastRTTUs       int64  `json:"last_rtt_us"`
	LastCheckUnixMs int64  `json:"last_check_unix_ms"` // 0 before any check
	SinceUnixMs     int64  `json:"since_unix_ms"`      // last transition, or when the slot was allocated
	SinceReason     string `json:"since_reason"`       // reason of the last transition, "" if none
	History         string `json:"history"`            // last min(64, checks) results, oldest first: + pass, - fail
	IntervalMs      int64  `json:"interval_ms"`
	ActiveRequests  int64  `json:"active_requests"`  // in flight, all workers
	Requests        uint64 `json:"requests"`         // proxied, all workers
	Errors          uint64 `json:"errors"`           // proxied requests that failed upstream, all workers
	PassiveFailures uint64 `json:"passive_failures"` // failed requests counted by passive checks
	Ejected         bool   `json:"ejected"`          // taken out by passive checks until a check passes
	Weight          int    `json:"weight"`           // configured balancing weight
	AgentAdmin      string `json:"agent_admin"`      // admin state an agent check asked for: ready, drain, maint
	AgentWeightPct  int    `json:"agent_weight_pct"` // weight in percent an agent check asked for, -1 none
	// EffectiveWeight is the weight the balancers give the server while it is available, as a
	// decimal: Weight times AgentWeightPct and the slow-start ramp (shm.EffectiveWeight), with
	// the weight and slow start of the first upstream listing it (the master records no slow
	// start for hash, which does not ramp; hash also ignores an agent's percentage).
	EffectiveWeight      float64 `json:"effective_weight"`
	SlowStartMs          int64   `json:"slow_start_ms"`           // slow-start ramp, 0 none
	SlowStartRemainingMs int64   `json:"slow_start_remaining_ms"` // time left of the ramp, 0 when none runs
	// Source is where the state comes from: "local" (this host's checks) or "fleet" (another
	// host of the fleet checks it; the state is the fleet's vote, its deciders in last_detail).
	Source string `json:"source"`
}

// Build turns a snapshot of the table into a Document; now is its generation time (wall clock),
// and the snapshot's NowNs the monotonic time its effective weights are computed at. It never
// drops a slot: a backend whose owner is gone is shown with that owner.
func Build(sn shm.Snapshot, now time.Time) Document {
	d := Document{
		Generation:        sn.Generation,
		MasterPid:         sn.MasterPid,
		MasterRunning:     sn.MasterRunning,
		LastWrittenUnixMs: LastWritten(sn),
		Capacity:          sn.Capacity,
		GeneratedUnixMs:   now.UnixMilli(),
		Workers:           make([]Worker, 0, len(sn.Workers)),
		Backends:          make([]Backend, 0, len(sn.Slots)),
	}
	if f := sn.Fleet; f.Mode != shm.FleetNone {
		d.Fleet = &Fleet{Mode: f.Mode.String(), Members: f.Members, Claims: f.Claims, RoundTrips: f.RoundTrips,
			Writes: f.Writes, Fallbacks: f.Fallbacks, Sessions: f.Sessions, SinceUnixMs: f.SinceMs}
	}
	for _, w := range sn.Workers {
		d.Workers = append(d.Workers, Worker{
			Index:           w.Index,
			Pid:             w.Token.Pid(),
			Serial:          w.Token.Serial(),
			Generation:      w.Generation,
			State:           w.State.String(),
			HeartbeatUnixMs: w.HeartbeatMs,
			StartedUnixMs:   w.StartedMs,
			ChecksOwned:     w.Owned,
			Requests:        w.Requests,
		})
	}
	for _, in := range sn.Slots {
		d.Backends = append(d.Backends, backend(in, sn.NowNs))
	}
	d.Upstreams = upstreams(sn.Slots)
	sort.SliceStable(d.Backends, func(i, j int) bool {
		a, b := d.Backends[i], d.Backends[j]
		if a.Upstream != b.Upstream {
			return a.Upstream < b.Upstream
		}
		if a.Address != b.Address {
			return a.Address < b.Address
		}
		return a.Slot < b.Slot
	})
	return d
}

// LastWritten returns when the table was last written, as far as its times tell (Unix ms): the
// newest of the master's attach, a worker's heartbeat and a check.
func LastWritten(sn shm.Snapshot) int64 {
	t := sn.MasterMs
	for _, w := range sn.Workers {
		t = max(t, w.HeartbeatMs)
	}
	for _, in := range sn.Slots {
		t = max(t, in.LastCheckMs)
	}
	return t
}

// StaleLine is what hcctl and the status page say about a table whose master is gone.
func StaleLine(d Document) string {
	at := "never"
	if d.LastWrittenUnixMs > 0 {
		at = time.UnixMilli(d.LastWrittenUnixMs).UTC().Format("2006-01-02T15:04:05Z")
	}
	return "master not running; table last written at " + at
}

// backend is the wire form of a slot; mono is the snapshot's monotonic time (shm.Snapshot.NowNs).
func backend(in shm.SlotInfo, mono int64) Backend {
	b := Backend{
		Slot:            in.Index,
		Upstream:        in.Label,
		Address:         in.Address,
		State:           in.State.Health().String(),
		Admin:           in.State.Admin().String(),
		Available:       in.State.Available(),
		Consecutive:     in.State.Streak(),
		LastOK:          in.State.LastOK(),
		Checks:          in.Checks,
		Failures:        in.Failures,
		Transitions:     in.Transitions,
		LastStatus:      in.LastStatus,
		LastDetail:      in.Detail,
		LastRTTUs:       in.LastRTT.Microseconds(),
		LastCheckUnixMs: in.LastCheckMs,
		SinceUnixMs:     in.SinceMs,
		History:         history(in.History, in.Checks),
		IntervalMs:      in.Interval.Milliseconds(),
		ActiveRequests:  in.Active,
		Requests:        in.Requests,
		Errors:          in.Errors,
		PassiveFailures: in.Passive,
		Ejected:         in.State.Ejected(),
		Weight:          in.Weight,
		AgentAdmin:      in.State.AgentAdmin().String(),
		AgentWeightPct:  in.AgentWeight,

		EffectiveWeight:      float64(in.EffectiveWeight(mono)) / shm.WeightScale,
		SlowStartMs:          in.SlowStart.Milliseconds(),
		SlowStartRemainingMs: (in.SlowStartLeft(mono) + time.Millisecond - 1).Milliseconds(), // > 0 while it runs
	}
	if in.Owner != 0 {
		b.OwnerPid, b.OwnerSerial = in.Owner.Pid(), in.Owner.Serial()
	}
	b.Source = "local"
	if in.State.Remote() {
		b.Source = "fleet"
	}
	if in.Checks > 0 {
		b.LastResult = probe.Reason(in.LastReason).String()
	}
	if in.Transitions > 0 {
		b.SinceReason = probe.Reason(in.SinceReason).String()
	}
	return b
}

// history renders the newest min(64, checks) bits of the history bitmap (newest in bit 0) as a
// string, oldest first: '+' for a pass, '-' for a failure.
func history(bits, checks uint64) string {
	n := min(checks, 64)
	out := make([]byte, n)
	for i := range n {
		if bits>>(n-1-i)&1 == 1 {
			out[i] = '+'
		} else {
			out[i] = '-'
		}
	}
	return string(out)
}

// Event is one entry of the event ring on the wire: the data of a /status/events message and of
// hcctl tail --json.
type Event struct {
	Seq        uint64 `json:"seq"`          // sequence number in the ring, from 0, never reused
	TimeUnixMs int64  `json:"time_unix_ms"` // when it was appended
	Kind       string `json:"kind"`         // health, admin, owner, passive
	Upstream   string `json:"upstream"`     // names of the upstreams using the server, comma separated
	Address    string `json:"address"`
	Old        string `json:"old"`    // health names (health, passive), admin names (admin), pids (owner)
	New        string `json:"new"`    // as Old
	Reason     string `json:"reason"` // probe reason name of the result behind a health or passive event, else ""
	Pid        int    `json:"pid"`    // the process that appended it (the new owner, for owner events)
	Extra      uint64 `json:"extra"`  // kind-specific; the old owner's pid for owner events
	// Source names who decided a fleet event ("fleet: h1, h2 down"); fleet events have no
	// upstream (the ring's entry has room for one of the two).
	Source string `json:"source,omitempty"`
}

// NewEvent turns an event of the ring into its wire form.
func NewEvent(ev shm.Event) Event {
	e := Event{
		Seq:        ev.Seq,
		TimeUnixMs: ev.TimeMs,
		Kind:       ev.Kind.String(),
		Upstream:   ev.Label,
		Address:    ev.Address,
		Pid:        ev.Pid,
		Extra:      ev.Extra,
	}
	switch ev.Kind {
	case shm.EventHealth, shm.EventPassive:
		e.Old, e.New = shm.Health(ev.Old).String(), shm.Health(ev.New).String()
		e.Reason = probe.Reason(ev.Reason).String()
	case shm.EventAdmin:
		e.Old, e.New = shm.Admin(ev.Old).String(), shm.Admin(ev.New).String()
	case shm.EventOwner:
		e.Old, e.New = strconv.FormatUint(ev.Extra, 10), strconv.Itoa(ev.Pid)
	case shm.EventFleet:
		e.Old, e.New = shm.Health(ev.Old).String(), shm.Health(ev.New).String()
		e.Upstream = ""
		e.Source = "fleet: " + strings.ReplaceAll(ev.Label, ",", ", ") + " " + e.New
	default:
		e.Old, e.New = strconv.Itoa(int(ev.Old)), strconv.Itoa(int(ev.New))
	}
	if e.Reason == "" && ev.Reason != 0 {
		e.Reason = probe.Reason(ev.Reason).String()
	}
	return e
}

// Line formats e as one line for tail-like reading:
//
//	2026-11-25T05:04:55.788Z health app 127.0.0.1:9102 up->down reason=bad_status pid=123
//
// An empty upstream is shown as "-"; reason= appears when there is one.
func (e Event) Line() string {
	up := e.Upstream
	if up == "" {
		up = "-"
	}
	var b strings.Builder
	b.WriteString(time.UnixMilli(e.TimeUnixMs).UTC().Format("2006-01-02T15:04:05.000Z07:00"))
	b.WriteString(" " + e.Kind + " " + up + " " + e.Address + " " + e.Old + "->" + e.New)
	if e.Reason != "" {
		b.WriteString(" reason=" + e.Reason)
	}
	if e.Source != "" {
		b.WriteString(" source=\"" + e.Source + "\"")
	}
	b.WriteString(" pid=" + strconv.Itoa(e.Pid))
	return b.String()
}
