package upstream

import (
	"testing"
	"time"

	"hcproxy/shm"
)

// labelled returns servers whose slots carry the given upstream labels, in order.
func labelled(t *testing.T, labels ...string) []*Server {
	t.Helper()
	tb, err := shm.OpenMaster(t.TempDir()+"/t", len(labels))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	var ss []*Server
	for i, l := range labels {
		addr := "127.0.0.1:" + string(rune('1'+i))
		idx, err := tb.Alloc(uint64(i), addr, l, time.Second, 1, shm.Down)
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, &Server{Address: addr, Weight: 1, Slot: tb.Slot(idx)})
	}
	return ss
}

// The home slot of an upstream is the first of its servers' slots it has to itself, so that its
// no-server count shows under its own name; with every server shared, its first server's.
func TestHomeSlot(t *testing.T) {
	for _, tc := range []struct {
		name   string
		labels []string
		want   int
	}{
		{"own servers", []string{"app", "app"}, 0},
		{"shared first", []string{"app,api", "app", "app"}, 1},
		{"all shared", []string{"app,api", "api,app"}, 0},
		{"one server", []string{"app"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ss := labelled(t, tc.labels...)
			if got := homeSlot("app", ss); got == nil || got.Index() != ss[tc.want].Slot.Index() {
				t.Errorf("home slot of %v: %v, want server %d's", tc.labels, got, tc.want)
			}
		})
	}
	if homeSlot("app", nil) != nil {
		t.Error("no servers: want no home slot")
	}
}

// Policy.Done counts a 503 with no server in the home slot only, anything else refused before a
// server was picked nowhere, and allocates nothing.
func TestPolicyDoneNoServerAllocatesNothing(t *testing.T) {
	ss := labelled(t, "app,api", "app")
	p := NewPolicy("app", ss, &Options{})
	var tries Tries
	r := shm.Request{Status: 503, Duration: time.Millisecond}
	if allocs := testing.AllocsPerRun(100, func() { p.Done(&tries, nil, &r) }); allocs != 0 {
		t.Errorf("%.2f allocations per no-server request, want 0", allocs)
	}
	p.Done(&tries, nil, &shm.Request{Status: 400})
	if got := ss[1].Slot.RequestStats().NoServer; got != 101 { // AllocsPerRun's warm-up run too
		t.Errorf("home slot counted %d, want 101", got)
	}
	if got := ss[0].Slot.RequestStats(); got.NoServer != 0 || got.Responses() != 0 {
		t.Errorf("shared slot counted %d no-server requests and %d responses, want 0", got.NoServer, got.Responses())
	}
}
