package shm

import "time"

// The table's layout. Version bumps whenever any offset or meaning below changes; Attach refuses a
// table of another version (the operator removes the file, or a new master recreates it). A field
// appended in a slot's unused tail (before SlotSize) changes neither, so it needs no bump if 0
// means "none" for it: a table an older build wrote holds 0 there (the file is created zeroed and
// an older build never writes past its slotEnd), and a newer master rewrites master-owned fields
// of every slot it uses when it starts.
//
// Version 2 grew SlotSize from 1024 to 1088 bytes (version 1's tail was full) for the requests
// of an upstream that no server could take (sNoServer), which version 1 counted once for the
// whole table in the header (hNoServer, now unused); no offset moved. The rest of the new cache
// line is tail for appends as above.
const (
	Magic   = 0x3130_4c42_5450_4348 // "HCPTBL01" in little-endian byte order
	Version = 2

	HeaderSize      = 32768
	SlotSize        = 1088
	WorkerCap       = 256
	workerEntrySize = 64

	// MaxSlots bounds a table's capacity, so a tampered header cannot ask for a huge mapping.
	MaxSlots = 1 << 20

	// EventCap events of EventSize bytes follow the header, before the slots.
	EventCap  = 4096
	EventSize = 128

	addrLen   = 64
	labelLen  = 64
	detailLen = 96
)

// Header word offsets. Words hVersion..hEventSize are fixed at creation and covered by hChecksum.
const (
	hMagic      = 0
	hVersion    = 8
	hHeaderSize = 16
	hSlotSize   = 24
	hSlotCap    = 32
	hWorkerCap  = 40
	hFileSize   = 48
	hEventCap   = 56
	hEventSize  = 64
	hChecksum   = 72

	hGeneration = 80  // current (newest ready) generation, published by the master
	hMasterPid  = 88  //
	hSerial     = 96  // token serial counter, never reused
	hMasterMs   = 104 // when the current master attached (Unix ms)
	hEventHead  = 112 // sequence number of the next event to append
	hBootID     = 128 // 16 bytes: the kernel's boot_id when the monotonic times were written
	// Appended after hBootID without a Version bump: an older table holds 0 there, "unknown".
	hMasterStart = 144 // the master's start time: field 22 of /proc/PID/stat (clock ticks since boot)
	// Process counters for /metrics (process.go), appended the same way: 0 is "none yet".
	_              = 152 // unused since Version 2 (version 1's table-wide no-server count: see sNoServer)
	hReloadsOK     = 160 // reloads that published a new generation
	hReloadsFailed = 168 // reloads that kept the running generation
	hReloadLastMs  = 176 // when the last reload ended (Unix ms)
	hReloadLastOK  = 184 // 1 when the last reload succeeded
	hRestartsExit  = 192 // workers that exited unexpectedly by themselves, replaced
	hRestartsKill  = 200 // workers killed by a signal, replaced
	hMasterRuntime = 208 // the master's Go runtime figures (runtime.go): runtimeWords words
	hWorkers       = 256
	// Appended after the worker table the same way (listeners.go, runtime.go): 0 is "none".
	hListeners  = hWorkers + WorkerCap*workerEntrySize   // ListenerCap records of listenerSize bytes
	hListenOpen = hListeners + ListenerCap*listenerSize  // per worker entry: open connections by listener, 32 bits each
	hRuntime    = hListenOpen + WorkerCap*listenOpenSize // per worker entry: its Go runtime figures, runtimeWords words
	// The fleet's figures (fleet.go), written by the master, appended the same way: 0 is "no
	// [fleet]".
	hFleet    = hRuntime + WorkerCap*8*runtimeWords // fleetWords words
	headerEnd = hFleet + 8*fleetWords               // <= HeaderSize (TestHeaderFits)
)

// Listener records: the key (a hash of the address, 0 = free), connections accepted, the address.
const (
	ListenerCap    = 8
	listenerSize   = 16 + addrLen
	lKey           = 0
	lAccepted      = 8
	lAddr          = 16
	listenOpenSize = ListenerCap * 4
	runtimeWords   = 3
)

// Worker entry offsets, relative to the entry.
const (
	wToken     = 0
	wGen       = 8
	wState     = 16
	wHeartbeat = 24 // Unix ms, written by the worker
	wStarted   = 32 // Unix ms, written by the master
	wOwned     = 40 // slots owned, written by the worker
	wBeatNs    = 48 // monotonic ns of the last heartbeat, for liveness
	wRequests  = 56 // requests this worker proxied
)

// Slot offsets, relative to the slot.
const (
	sKey         = 0  // check definition hash
	sUsed        = 8  // 0 free, 1 allocated
	sOwner       = 16 // owner token, 0 = none
	sLease       = 24 // monotonic ns after which the owner's claim lapses
	sState       = 32 // the routing word, see state.go
	sNextDue     = 40 // monotonic ns when the next check is due
	sHistory     = 48 // last 64 results, bit 0 newest, 1 = pass
	sSeq         = 56 // seqlock of the diagnostic record
	sLastCheckMs = 64 // [diag] Unix ms of the last check
	sLastRTT     = 72 // [diag] round trip of the last check, µs
	sLastResult  = 80 // [diag] reason code | HTTP status << 8
	sChecks      = 88
	sFailures    = 96
	sTransitions = 104
	sSinceMs     = 112                                // [diag] Unix ms of the last transition (or allocation)
	sSinceReason = 120                                // [diag] reason code of the result that caused it
	sPassive     = 128                                // passive failures (data plane)
	sActive      = 136                                // active requests (data plane, all workers)
	sRequests    = 144                                // requests proxied (data plane, all workers)
	sInterval    = 152                                // configured check interval, ns (written by the master)
	sAddr        = 160                                // server address, length-prefixed (written by the master before publishing)
	sLabel       = sAddr + addrLen                    // upstream names, comma separated
	sDetail      = sLabel + labelLen                  // [diag] last failure detail
	sWeight      = sDetail + detailLen                // configured weight (of the first upstream listing it), written by the master
	sErrors      = sWeight + 8                        // proxied requests that failed upstream (data plane, all workers)
	sRTTSum      = sErrors + 8                        // sum of check round trips, µs
	sRTTBuckets  = sRTTSum + 8                        // check round-trip histogram: RTTBounds then +Inf, cumulative when read
	sFailReasons = sRTTBuckets + 8*(len(RTTBounds)+1) // failed checks by probe reason code 0..MaxReasons-1
	sPassWindow  = sFailReasons + 8*MaxReasons        // monotonic ns when the current passive-failure window opened
	sPassCount   = sPassWindow + 8                    // passive failures in that window
	sEjectUntil  = sPassCount + 8                     // monotonic ns until which a passive ejection holds
	sConsec5xx   = sEjectUntil + 8                    // consecutive 5xx responses (outlier detection)
	sUpSinceNs   = sConsec5xx + 8                     // monotonic ns of the last transition to up (slow start)
	sAgentWeight = sUpSinceNs + 8                     // weight in percent an agent check asked for, plus 1 (0: none)
	sSlowStart   = sAgentWeight + 8                   // slow-start ramp, ns (of the first upstream listing it), written by the master; 0 none
	// Request metrics (data plane, all workers; Slot.CountRequest), appended without a bump:
	// an older table reads 0, "none yet".
	sRespClass  = sSlowStart + 8                 // responses to clients by status class 1xx..5xx (5 words)
	sReqDurSum  = sRespClass + 8*5               // sum of request durations, µs
	sReqDurBkts = sReqDurSum + 8                 // request duration histogram: ReqBounds, per bucket (+Inf is the class total)
	sBytesIn    = sReqDurBkts + 8*len(ReqBounds) // request body bytes from clients
	sBytesOut   = sBytesIn + 8                   // response body bytes to clients
	sRetries    = sBytesOut + 8                  // tries after the first
	sHeaderSum  = sRetries + 8                   // sum of times from the first try to the response head, µs
	sConnectSum = sHeaderSum + 8                 // sum of connect times of new upstream connections, µs
	sConnects   = sConnectSum + 8                // new upstream connections timed
	sOwnResp    = sConnects + 8                  // responses hcproxy made itself, by OwnReason 1..3 (3 words)
	// Version 2: requests answered 503 because no server of an upstream could take them,
	// counted in that upstream's one home slot (Slot.CountNoServer), all workers.
	sNoServer = sOwnResp + 8*3
	slotEnd   = sNoServer + 8
)

// ReqBounds are the upper bounds (inclusive) of the request duration histogram's buckets:
// Prometheus's default buckets, capped at 10s.
var ReqBounds = [...]time.Duration{
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
	2500 * time.Millisecond, 10 * time.Second,
}

// RTTBounds are the upper bounds (inclusive) of the check round-trip histogram's buckets.
var RTTBounds = [...]time.Duration{
	500 * time.Microsecond, time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
}

// MaxReasons bounds the probe reason codes counted per slot; higher codes count in the last.
const MaxReasons = 32

// Size is the file size of a table with capacity slots.
func Size(capacity int) int { return slotsOff + capacity*SlotSize }

const (
	eventsOff = HeaderSize
	slotsOff  = eventsOff + EventCap*EventSize
)

func slotOff(i int) int   { return slotsOff + i*SlotSize }
func eventOff(i int) int  { return eventsOff + i*EventSize }
func workerOff(i int) int { return hWorkers + i*workerEntrySize }
