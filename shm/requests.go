package shm

import "time"

// Request metrics: every worker adds each request it finished to its server's slot (one call,
// Slot.CountRequest, from the policy both engines share), so the counters are the sum over
// all workers and live as long as the slot: across reloads and worker restarts. A request that
// no server of its upstream could take has no server's slot: it is counted in the upstream's
// home slot instead (Slot.CountNoServer; which slot that is, upstream.Policy decides), so it
// is summed the same way and read per upstream label like the others.

// OwnReason is why hcproxy answered a request itself instead of relaying a server's response.
type OwnReason uint8

// The reasons counted per server (a request no server could take is counted per upstream,
// by Slot.CountNoServer).
const (
	OwnNone          OwnReason = iota
	OwnTimeout                 // 504: the server did not answer in time
	OwnUpstreamError           // 502: connect error, reset, a malformed response
	OwnClientClosed            // 499/408: the client went away or stalled before the response
	ownReasons                 // count of the above, 1..ownReasons-1 stored
)

// String names the reason as the metrics label does.
func (r OwnReason) String() string {
	switch r {
	case OwnTimeout:
		return "timeout"
	case OwnUpstreamError:
		return "upstream_error"
	case OwnClientClosed:
		return "client_closed"
	}
	return "none"
}

// Request is one finished request as the slot counts it.
type Request struct {
	Status   int           // status sent to the client (or logged, for one closed without an answer)
	Own      OwnReason     // OwnNone when the server's response was relayed
	Duration time.Duration // from the request's arrival to its end
	Header   time.Duration // from the first try to the response head (or the last failure)
	Connect  time.Duration // connect time of a new upstream connection; 0 when one was reused
	BytesIn  int64         // request body bytes read from the client
	BytesOut int64         // response body bytes sent to the client
	Retries  int           // tries after the first
}

// CountRequest adds r to the slot's request metrics: a handful of atomic adds, no allocation.
func (s Slot) CountRequest(r *Request) {
	s.m.add(s.off+sReqDurSum, uint64(r.Duration/time.Microsecond))
	for i, b := range ReqBounds {
		if r.Duration <= b {
			s.m.add(s.off+sReqDurBkts+8*i, 1)
			break
		}
	}
	if r.BytesIn > 0 {
		s.m.add(s.off+sBytesIn, uint64(r.BytesIn))
	}
	if r.BytesOut > 0 {
		s.m.add(s.off+sBytesOut, uint64(r.BytesOut))
	}
	if r.Retries > 0 {
		s.m.add(s.off+sRetries, uint64(r.Retries))
	}
	s.m.add(s.off+sHeaderSum, uint64(r.Header/time.Microsecond))
	if r.Connect > 0 {
		s.m.add(s.off+sConnectSum, uint64(r.Connect/time.Microsecond))
		s.m.add(s.off+sConnects, 1)
	}
	if r.Own > OwnNone && r.Own < ownReasons {
		s.m.add(s.off+sOwnResp+8*(int(r.Own)-1), 1)
	}
	// The class last: it is the histogram's count, which a reader reads after the buckets.
	if c := r.Status / 100; c >= 1 && c <= 5 {
		s.m.add(s.off+sRespClass+8*(c-1), 1)
	}
}

// CountNoServer counts a request answered 503 because no server of an upstream could take it,
// in the upstream's home slot (the caller's choice: one slot per upstream, so that a sum over
// the slots of a label counts each request once). One atomic add, no allocation.
func (s Slot) CountNoServer() { s.m.add(s.off+sNoServer, 1) }

// RequestStats are a slot's request metrics as read (each counter read once, while others may
// be counting: the histogram's buckets are never above Responses, which is read last).
type RequestStats struct {
	Classes     [5]uint64 // responses by status class 1xx..5xx
	DurSumUs    uint64
	DurBuckets  [len(ReqBounds)]uint64 // per bucket, not cumulative; above the last bound: none
	BytesIn     uint64
	BytesOut    uint64
	Retries     uint64
	HeaderSumUs uint64
	ConnectSum  uint64 // µs
	Connects    uint64
	Own         [ownReasons - 1]uint64 // by OwnReason 1..
	// NoServer counts the requests answered 503 because no server of an upstream could take
	// them, when the slot is that upstream's home (Slot.CountNoServer); not in Classes.
	NoServer uint64
}

// Responses returns the requests counted: the sum of the status classes.
func (r RequestStats) Responses() uint64 {
	var n uint64
	for _, c := range r.Classes {
		n += c
	}
	return n
}

// RequestStats reads the slot's request metrics.
func (s Slot) RequestStats() RequestStats {
	var r RequestStats
	for i := range r.DurBuckets {
		r.DurBuckets[i] = s.m.load(s.off + sReqDurBkts + 8*i)
	}
	r.DurSumUs = s.m.load(s.off + sReqDurSum)
	r.BytesIn, r.BytesOut = s.m.load(s.off+sBytesIn), s.m.load(s.off+sBytesOut)
	r.Retries = s.m.load(s.off + sRetries)
	r.HeaderSumUs = s.m.load(s.off + sHeaderSum)
	r.ConnectSum, r.Connects = s.m.load(s.off+sConnectSum), s.m.load(s.off+sConnects)
	for i := range r.Own {
		r.Own[i] = s.m.load(s.off + sOwnResp + 8*i)
	}
	r.NoServer = s.m.load(s.off + sNoServer)
	for i := range r.Classes { // last: a request is counted in its bucket before its class is read
		r.Classes[i] = s.m.load(s.off + sRespClass + 8*i)
	}
	return r
}
