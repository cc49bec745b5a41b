package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"hcproxy/status"
)

// statusJSON fetches the status page's JSON document.
func (p *proxy) statusJSON() (status.Document, error) {
	var d status.Document
	resp, err := http.Get("http://" + p.status + "/status?format=json")
	if err != nil {
		return d, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return d, fmt.Errorf("status page: %s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&d)
	return d, err
}

// A server that comes back up into a 4s slow start is shown on the JSON status page with an
// effective weight below its configured one while it ramps, never shrinking, and with its full
// weight once the ramp is over; the server beside it shows its own weight throughout. This is
// what an operator needs to see that an "up" server of weight 10 takes a fraction of its share.
func TestSlowStartEffectiveWeightOnStatusPage(t *testing.T) {
	bs := startBackends(t, 2)
	ramp, plain := bs[0], bs[1]
	p := startProxyRaw(t, 2, fmt.Sprintf(`workers = 2
pid_file = "hcproxy.pid"
table = "hcproxy.table"
[status]
listen = "{{status}}"
[[server]]
listen = "{{listen}}"
upstream = "app"
[upstream.app]
servers = [{ address = %q, weight = 10, slow_start = "4s" }, %q]
[upstream.app.check]
uri = "/health"
interval = "200ms"
timeout = "150ms"
rise = 2
fall = 2
expect_body = "ok"
`, ramp.Addr, plain.Addr))

	var last status.Document
	page := func(cond func(r, o status.Backend) bool) func() bool {
		return func() bool {
			d, err := p.statusJSON()
			if err != nil {
				return false
			}
			last = d
			r, ok1 := backendState(d, ramp.Addr)
			o, ok2 := backendState(d, plain.Addr)
			return ok1 && ok2 && cond(r, o)
		}
	}
	show := func() string {
		r, _ := backendState(last, ramp.Addr)
		return fmt.Sprintf("%+v", r)
	}

	// Up from the start (initial = "up"): it never came up, so it does not ramp.
	waitFor(t, "both servers checked up on the status page", page(func(r, o status.Backend) bool {
		return r.State == "up" && r.Checks > 0 && o.State == "up" && o.Checks > 0
	}))
	r, _ := backendState(last, ramp.Addr)
	o, _ := backendState(last, plain.Addr)
	if r.Weight != 10 || r.EffectiveWeight != 10 || r.SlowStartMs != 4000 || r.SlowStartRemainingMs != 0 {
		t.Fatalf("a server up from the start: %+v", r)
	}
	if o.Weight != 1 || o.EffectiveWeight != 1 || o.SlowStartMs != 0 {
		t.Fatalf("the server without slow start: %+v", o)
	}

	ramp.SetFailing(true)
	waitFor(t, "the slow-start server down", page(func(r, _ status.Backend) bool { return r.State == "down" }))
	ramp.SetFailing(false)

	waitFor(t, "the slow-start server up again and ramping", page(func(r, _ status.Backend) bool {
		return r.State == "up" && r.EffectiveWeight < float64(r.Weight)
	}))
	r, _ = backendState(last, ramp.Addr)
	if r.EffectiveWeight <= 0 || r.SlowStartRemainingMs <= 0 || r.SlowStartRemainingMs > 4000 {
		t.Fatalf("ramping: %s", show())
	}
	seen := []float64{r.EffectiveWeight}
	waitFor(t, "the ramp over, at full weight", page(func(r, o status.Backend) bool {
		if r.State != "up" {
			t.Fatalf("the slow-start server left up while ramping: %+v", r)
		}
		if o.EffectiveWeight != 1 {
			t.Fatalf("the server beside it changed weight: %+v", o)
		}
		seen = append(seen, r.EffectiveWeight)
		return r.EffectiveWeight == 10 && r.SlowStartRemainingMs == 0
	}))
	t.Logf("effective weights seen during the ramp: %v", seen)
	for i := 1; i < len(seen); i++ {
		if seen[i] < seen[i-1] {
			t.Fatalf("effective weight went down during the ramp: %v", seen)
		}
	}

	// hcctl dump --json is the same document.
	p.eventually("hcctl shows the full weight", 10*time.Second, func(d status.Document) bool {
		b, ok := backendState(d, ramp.Addr)
		return ok && b.EffectiveWeight == 10 && b.SlowStartMs == 4000 && b.SlowStartRemainingMs == 0
	})
}
