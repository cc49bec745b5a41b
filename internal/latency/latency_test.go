package latency

import (
	"net"
	"net/http"
	"testing"
	"time"
)

func server(t *testing.T, delay func() time.Duration) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay())
		w.Write([]byte("ok"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// A closed-loop run counts every answered request on its connection.
func TestClosedLoopCountsEveryRequest(t *testing.T) {
	addr := server(t, func() time.Duration { return 0 })
	r, err := Run(Options{Addr: addr, Conns: 4, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.Total() < 4 {
		t.Fatalf("errors %d, requests %d", r.Errors, r.Total())
	}
	if s := r.Spread(); s.MinCount == 0 {
		t.Errorf("a connection made no request: %+v", s)
	}
}

// At a fixed rate a stall is charged to every request it delayed: with a server that stalls
// one request for 200 ms, the requests due during the stall on that connection wait too.
func TestFixedRateCountsFromTheDueTime(t *testing.T) {
	var n int
	addr := server(t, func() time.Duration {
		n++
		if n == 5 {
			return 200 * time.Millisecond
		}
		return 0
	})
	r, err := Run(Options{Addr: addr, Conns: 1, Rate: 100, Duration: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	slow := 0
	for _, d := range r.Conns[0] {
		if d >= 100*time.Millisecond {
			slow++
		}
	}
	// Due every 10 ms: the stalled request and the ~10 due behind it in its first 100 ms.
	if slow < 5 {
		t.Errorf("%d requests at 100 ms or more, want the stall charged to those behind it too (%v)", slow, r)
	}
}
