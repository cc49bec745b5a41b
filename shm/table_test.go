package shm

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// heapTable is a table on the Go heap, so the race detector sees its accesses.
func heapTable(t testing.TB, capacity int) *Table {
	t.Helper()
	m := heapMem(Size(capacity))
	formatHeader(m, capacity)
	slots, err := validateHeader(m, int64(len(m)))
	if err != nil {
		t.Fatal(err)
	}
	return &Table{m: m, slots: slots}
}

func TestLayoutPinned(t *testing.T) {
	if slotEnd > SlotSize {
		t.Fatalf("slot fields end at %d, past SlotSize %d", slotEnd, SlotSize)
	}
	if workerOff(WorkerCap) > HeaderSize {
		t.Fatalf("worker table ends at %d, past HeaderSize %d", workerOff(WorkerCap), HeaderSize)
	}
	if SlotSize%64 != 0 || HeaderSize%64 != 0 {
		t.Fatal("slots must stay cache-line aligned")
	}
	// Pinned offsets: changing any of these changes the file format and needs a Version bump.
	pins := map[string][2]int{
		"sState": {sState, 32}, "sOwner": {sOwner, 16}, "sAddr": {sAddr, 160}, "sDetail": {sDetail, 288},
		"hGeneration": {hGeneration, 80}, "slotsOff": {slotsOff, 32768 + 4096*128}, "hWorkers": {hWorkers, 256},
		// Appended in the slot's unused tail without a bump: older tables read 0 there, "none".
		"sSlowStart": {sSlowStart, 816},
		// Version 2: one more cache line per slot, its first word the no-server count.
		"SlotSize": {SlotSize, 1088}, "sNoServer": {sNoServer, 1024}, "Version": {Version, 2},
		// Appended after the boot id without a bump: older tables read 0 there, "unknown".
		"hMasterStart": {hMasterStart, 144},
		// The fleet's figures, appended after the per-worker runtime figures: 0 is "no [fleet]".
		"hFleet": {hFleet, 31616},
	}
	for name, p := range pins {
		if p[0] != p[1] {
			t.Errorf("%s = %d, pinned at %d (bump Version and the pin together)", name, p[0], p[1])
		}
	}
}

func TestGoldenHeader(t *testing.T) {
	tb := heapTable(t, 16)
	got := hex.EncodeToString(tb.m[:hGeneration])
	golden := filepath.Join("testdata", "header16.golden")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		os.WriteFile(golden, []byte(got+"\n"), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != strings.TrimSpace(string(want)) {
		t.Fatalf("fresh header changed:\n got %s\nwant %s\n(a format change needs a Version bump; UPDATE_GOLDEN=1 rewrites)", got, want)
	}
}

func TestAllocFindFree(t *testing.T) {
	tb := heapTable(t, 4)
	i, err := tb.Alloc(7, "127.0.0.1:9101", "app,api", time.Second, 1, Checking)
	if err != nil {
		t.Fatal(err)
	}
	s := tb.Slot(i)
	if s.Address() != "127.0.0.1:9101" || s.Label() != "app,api" || s.Key() != 7 || s.Interval() != time.Second {
		t.Fatalf("slot fields: %+v", s.Info())
	}
	if s.State().Health() != Checking || s.Available() {
		t.Fatalf("initial state %v available=%v", s.State().Health(), s.Available())
	}
	if j, ok := tb.Find(7, "127.0.0.1:9101"); !ok || j != i {
		t.Fatalf("Find = %d %v", j, ok)
	}
	if _, ok := tb.Find(8, "127.0.0.1:9101"); ok {
		t.Fatal("Find matched another check key")
	}
	for k := 0; k < 3; k++ {
		if _, err := tb.Alloc(uint64(100+k), "127.0.0.1:1", "x", time.Second, 1, Up); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tb.Alloc(200, "127.0.0.1:2", "x", time.Second, 1, Up); !errors.Is(err, ErrFull) {
		t.Fatalf("alloc in a full table: %v", err)
	}
	fence := s.State().Fence()
	tb.Free(i)
	if s.Used() || s.State().Fence() == fence {
		t.Fatal("Free must clear Used and bump the fence")
	}
	if _, err := tb.Alloc(300, "127.0.0.1:3", "x", time.Second, 1, Up); err != nil {
		t.Fatalf("alloc after free: %v", err)
	}
}

func TestHysteresis(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Up)
	s := tb.Slot(i)
	tok := tb.NewToken(100)
	fence, ok := s.Claim(0, tok, Now()+int64(time.Second))
	if !ok {
		t.Fatal("claim of a free slot failed")
	}
	rec := func(pass bool) Transition {
		t.Helper()
		tr, err := s.Record(tok, fence, Result{OK: pass, Reason: 7, Status: 503, Detail: "status 503"}, 2, 3)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	steps := []struct {
		pass   bool
		health Health
	}{{false, Up}, {false, Up}, {false, Down}, {false, Down}, {true, Down}, {false, Down}, {true, Down}, {true, Up}, {true, Up}}
	for n, st := range steps {
		tr := rec(st.pass)
		if tr.To != st.health {
			t.Fatalf("step %d (pass=%v): health %v, want %v", n, st.pass, tr.To, st.health)
		}
	}
	in := s.Info()
	if in.Checks != 9 || in.Failures != 5 || in.Transitions != 2 {
		t.Fatalf("counters: checks %d failures %d transitions %d", in.Checks, in.Failures, in.Transitions)
	}
	// History: newest in bit 0. Results oldest..newest: F F F F T F T T T.
	if want := uint64(0b000010111); in.History&0x1ff != want {
		t.Fatalf("history %09b, want %09b", in.History&0x1ff, want)
	}
	if in.Detail != "status 503" || in.State.Streak() != 3 {
		t.Fatalf("detail %q streak %d", in.Detail, in.State.Streak())
	}
}

func TestCheckingGoesUpOnFirstPassDownOnFirstFail(t *testing.T) {
	tb := heapTable(t, 2)
	for _, c := range []struct {
		pass bool
		want Health
	}{{true, Up}, {false, Down}} {
		i, _ := tb.Alloc(uint64(len(tb.Snapshot().Slots)+1), "a:1", "u", time.Second, 1, Checking)
		s := tb.Slot(i)
		tok := tb.NewToken(1)
		f, _ := s.Claim(0, tok, 0)
		tr, err := s.Record(tok, f, Result{OK: c.pass}, 5, 5)
		if err != nil || tr.To != c.want {
			t.Fatalf("pass=%v: %v %v", c.pass, tr.To, err)
		}
	}
}

// A worker that was stopped after a takeover and resumes must not overwrite its successor.
func TestStaleOwnerIsFenced(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Up)
	s := tb.Slot(i)
	a, b := tb.NewToken(10), tb.NewToken(11)
	fa, _ := s.Claim(0, a, 0)
	fb, ok := s.Claim(a, b, 0)
	if !ok || fb == fa {
		t.Fatalf("takeover: ok=%v fences %d %d", ok, fa, fb)
	}
	if _, err := s.Record(a, fa, Result{OK: false}, 1, 1); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("old owner write: %v", err)
	}
	// Even if the old owner raced past the owner test, its fence is stale.
	s.m.store(s.off+sOwner, uint64(a))
	if _, err := s.Record(a, fa, Result{OK: false}, 1, 1); !errors.Is(err, ErrFenced) {
		t.Fatalf("stale fence write: %v", err)
	}
	if s.State().Health() != Up {
		t.Fatal("a fenced write changed the health")
	}
}

func TestConcurrentClaimsHaveOneWinner(t *testing.T) {
	tb := heapTable(t, 64)
	for k := 0; k < 64; k++ {
		tb.Alloc(uint64(k), "a:1", "u", time.Second, 1, Up)
	}
	var wg sync.WaitGroup
	wins := make([]int, 8)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			tok := tb.NewToken(1000 + w)
			for k := 0; k < 64; k++ {
				if _, ok := tb.Slot(k).Claim(0, tok, 0); ok {
					wins[w]++
				}
			}
		}(w)
	}
	wg.Wait()
	total := 0
	for _, n := range wins {
		total += n
	}
	if total != 64 {
		t.Fatalf("%d claims won for 64 slots", total)
	}
}

// Readers under the seqlock never see a record mixed from two writes.
func TestSeqlockConsistentReads(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Up)
	s := tb.Slot(i)
	tok := tb.NewToken(1)
	f, _ := s.Claim(0, tok, 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 1; n <= 3000; n++ {
			// RTT (µs) and status encode the same n, so a torn read shows as a mismatch.
			s.Record(tok, f, Result{OK: false, Status: n % 500, RTT: time.Duration(n%500) * time.Microsecond, Detail: strings.Repeat("x", n%90)}, 1, 1)
		}
	}()
	for {
		select {
		case <-done:
			return
		default:
		}
		in := s.Info()
		if int(in.LastRTT/time.Microsecond) != in.LastStatus {
			t.Fatalf("torn read: rtt %v status %d", in.LastRTT, in.LastStatus)
		}
	}
}

func TestSeqlockRepairedByClaim(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Up)
	s := tb.Slot(i)
	a := tb.NewToken(1)
	s.Claim(0, a, 0)
	q, _ := s.beginWrite() // the writer "dies" here
	b := tb.NewToken(2)
	fb, _ := s.Claim(a, b, 0)
	s.endWrite(q) // ... or was only stopped, and finishes after the repair: no effect
	if _, err := s.Record(b, fb, Result{OK: true, RTT: 5 * time.Millisecond}, 1, 1); err != nil {
		t.Fatal(err)
	}
	if in := s.Info(); in.LastRTT != 5*time.Millisecond {
		t.Fatalf("diagnostic record not written after repair: %+v", in)
	}
}

func TestStringsClampTamperedLength(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Up)
	s := tb.Slot(i)
	s.m.store(s.off+sAddr, 0xff) // length byte 255 in a 64-byte field
	if got := s.Address(); len(got) != addrLen-1 {
		t.Fatalf("tampered length read %d bytes", len(got))
	}
}

func TestWorkers(t *testing.T) {
	tb := heapTable(t, 1)
	i, err := tb.ReserveWorker(3)
	if err != nil {
		t.Fatal(err)
	}
	tok := tb.Register(i, 4242)
	if tok.Pid() != 4242 || tok.Serial() == 0 {
		t.Fatalf("token %x", tok)
	}
	if tok2 := tb.Register(i, 4242); tok2 == tok {
		t.Fatal("a reused pid got the same token")
	}
	tb.SetWorkerState(i, WorkerReady)
	ws := tb.Workers()
	if len(ws) != 1 || ws[0].Generation != 3 || ws[0].State != WorkerReady {
		t.Fatalf("workers %+v", ws)
	}
	tb.FreeWorker(i)
	if len(tb.Workers()) != 0 {
		t.Fatal("freed worker still listed")
	}
	for k := 0; k < WorkerCap; k++ {
		if _, err := tb.ReserveWorker(1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tb.ReserveWorker(1); !errors.Is(err, ErrFull) {
		t.Fatalf("reserve in a full worker table: %v", err)
	}
}

func TestReleaseAll(t *testing.T) {
	tb := heapTable(t, 4)
	a, b := tb.NewToken(1), tb.NewToken(2)
	for k := 0; k < 4; k++ {
		i, _ := tb.Alloc(uint64(k), "a:1", "u", time.Second, 1, Up)
		owner := a
		if k == 3 {
			owner = b
		}
		tb.Slot(i).Claim(0, owner, 0)
	}
	if n := tb.ReleaseAll(a); n != 3 {
		t.Fatalf("released %d, want 3", n)
	}
	if tb.Slot(3).Owner() != b || tb.Slot(0).Owner() != 0 {
		t.Fatal("ReleaseAll touched another owner's slot or missed one")
	}
}

func TestRecordCountsHistogramAndReasons(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 3, Up)
	s := tb.Slot(i)
	tok := tb.NewToken(1)
	f, _ := s.Claim(0, tok, 0)
	for _, r := range []Result{
		{OK: true, RTT: 300 * time.Microsecond},
		{OK: true, RTT: 3 * time.Millisecond},
		{OK: false, Reason: 4, RTT: 10 * time.Second},
		{OK: false, Reason: 4, RTT: time.Second},
		{OK: false, Reason: 200, RTT: time.Millisecond},
	} {
		s.Record(tok, f, r, 1, 1)
	}
	in := s.Info()
	if in.Weight != 3 {
		t.Errorf("weight %d", in.Weight)
	}
	if in.RTTBuckets[0] != 1 || in.RTTBuckets[1] != 1 || in.RTTBuckets[3] != 1 || in.RTTBuckets[10] != 1 || in.RTTBuckets[len(RTTBounds)] != 1 {
		t.Errorf("buckets %v", in.RTTBuckets)
	}
	if in.FailReasons[4] != 2 || in.FailReasons[MaxReasons-1] != 1 {
		t.Errorf("reasons %v", in.FailReasons)
	}
	if want := uint64(300 + 3000 + 10_000_000 + 1_000_000 + 1000); in.RTTSumUs != want {
		t.Errorf("rtt sum %d, want %d", in.RTTSumUs, want)
	}
}

// TestSeqlockReaderWaitsForADescheduledWriter pins the torn read seen once under -race ("torn
// read: rtt 198µs status 197"): the reader gave up after 10,000 tries, a few milliseconds, while
// a live writer was descheduled inside the lock, and returned half of the writer's record.
func TestSeqlockReaderWaitsForADescheduledWriter(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Up)
	s := tb.Slot(i)
	q, ok := s.beginWrite()
	if !ok {
		t.Fatal("beginWrite")
	}
	s.m.store(s.off+sLastRTT, 7) // half a record, then the writer is descheduled for 30ms
	go func() {
		time.Sleep(30 * time.Millisecond)
		s.m.store(s.off+sLastResult, uint64(7)<<8)
		s.endWrite(q)
	}()
	in := s.Info()
	if int(in.LastRTT/time.Microsecond) != in.LastStatus {
		t.Fatalf("torn read: rtt %v status %d", in.LastRTT, in.LastStatus)
	}
}

// A writer that died inside the seqlock cannot hang a reader: the record is taken as it is after
// seqWait.
func TestSeqlockDeadWriterDoesNotHangReaders(t *testing.T) {
	tb := heapTable(t, 1)
	i, _ := tb.Alloc(1, "a:1", "u", time.Second, 1, Up)
	s := tb.Slot(i)
	s.beginWrite() // and never ends
	start := time.Now()
	s.Info()
	if took := time.Since(start); took > seqWait+time.Second {
		t.Fatalf("Info took %v with a dead writer", took)
	}
}
