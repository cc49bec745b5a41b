package fastpath

import (
	"io"
	"net/http"
	"testing"
	"time"

	"hcproxy/shm"
	"hcproxy/upstream"
)

// Both engines count a request that no server could take once, in the upstream's home slot
// (its first server's here), and as no server's response.
func TestNoServerCountedPerUpstream(t *testing.T) {
	for _, engine := range []string{"fast", "std"} {
		t.Run(engine, func(t *testing.T) {
			ss := servers(t, shm.Down, closedAddr(t), closedAddr(t))
			var addr string
			if engine == "fast" {
				_, addr = startFast(t, Options{}, ss)
			} else {
				addr = startStd(t, upstream.Options{}, ss)
			}
			const n = 7
			for i := 0; i < n; i++ {
				resp, err := http.Get("http://" + addr + "/")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 503 {
					t.Fatalf("request %d: %s, want 503", i, resp.Status)
				}
			}
			eventually(t, "7 no-server requests", 5*time.Second, func() bool { return ss[0].Slot.RequestStats().NoServer == n })
			for i, s := range ss {
				r := s.Slot.RequestStats()
				if r.Responses() != 0 {
					t.Errorf("server %d: %d responses counted, want 0", i, r.Responses())
				}
				if i > 0 && r.NoServer != 0 {
					t.Errorf("server %d's slot counted %d no-server requests, want 0", i, r.NoServer)
				}
			}
		})
	}
}
