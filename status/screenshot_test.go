package status

import (
	"fmt"
	"image"
	"image/png"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"hcproxy/probe"
	"hcproxy/shm"
)

// TestStatusScreenshots renders the status page in headless Chromium at 1,400 px and at 390 px
// (a phone), for the 3 servers of the fixture and for 1,000 servers in 4 upstreams (one of
// them with servers down, one all up and so collapsed), from a table built in-process, and
// checks each screenshot is a picture of that size that is not blank. HCPROXY_SCREENSHOTS=DIR
// keeps them in DIR (docs/ holds the ones a person looked at: status-WIDTH-SERVERS.png);
// otherwise they go to a temporary directory. Skipped without chromium.
func TestStatusScreenshots(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (Debian: apt-get install chromium): no screenshots")
	}
	out := os.Getenv("HCPROXY_SCREENSHOTS")
	if out == "" {
		out = t.TempDir()
	}
	small := newFixture(t)
	big := bigFixture(t, 1000)
	for _, c := range []struct {
		tab     *shm.Table
		servers int
	}{{small.tab, 3}, {big, 1000}} {
		h := Handler(c.tab, Options{}).(*handler)
		clock := time.Now()
		h.now = func() time.Time { return clock }
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		get(t, srv.URL+"/status") // an earlier view: the page's rates are over the 30s since
		clock = clock.Add(30 * time.Second)
		countRequests(c.tab)
		get(t, srv.URL+"/status") // the views Chromium makes compare with the first one
		for _, size := range [][2]int{{1400, 1000}, {390, 844}} {
			file := filepath.Join(out, fmt.Sprintf("status-%d-%d.png", size[0], c.servers))
			shoot(t, chromium, srv.URL+"/status", file, size[0], size[1])
		}
	}
}

// shoot takes one screenshot of url into file and checks it.
func shoot(t *testing.T, chromium, url, file string, w, h int) {
	t.Helper()
	cmd := exec.Command("timeout", "60", chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars", "--user-data-dir="+t.TempDir(),
		"--screenshot="+file, fmt.Sprintf("--window-size=%d,%d", w, h), url)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, out)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatalf("chromium wrote no %s: %v", file, err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if b := img.Bounds(); b.Dx() != w || b.Dy() != h {
		t.Errorf("%s is %dx%d, want %dx%d", file, b.Dx(), b.Dy(), w, h)
	}
	if n := colours(img); n < 5 {
		t.Errorf("%s has %d colours: blank?", file, n)
	}
}

// colours counts the distinct colours of img, up to 100.
func colours(img image.Image) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y && len(seen) < 100; y += 3 {
		for x := b.Min.X; x < b.Max.X && len(seen) < 100; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
		}
	}
	return len(seen)
}

// bigFixture is a live table with n servers in 4 upstreams: web (a tenth down, a few drained),
// api (all up), batch (all up, one in maintenance) and cache (half of it down), each server
// with a history of checks.
func bigFixture(t *testing.T, n int) *shm.Table {
	t.Helper()
	tab, err := shm.OpenMaster(filepath.Join(t.TempDir(), "table"), n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tab.Close() })
	tab.SetMaster(os.Getpid())
	tab.SetGeneration(1)
	var toks []shm.Token
	for i := range 2 {
		wi, _ := tab.ReserveWorker(1)
		toks = append(toks, tab.Register(wi, 5000+i))
		tab.SetWorkerState(wi, shm.WorkerReady)
		tab.Heartbeat(wi, n/2)
	}
	ups := []string{"web", "api", "batch", "cache"}
	for i := range n {
		up := ups[i%4]
		idx, err := tab.Alloc(uint64(i%4+1), fmt.Sprintf("10.%d.%d.%d:8080", i%4, i/256, i%256), up, time.Second, 1+i%3, shm.Checking)
		if err != nil {
			t.Fatal(err)
		}
		s := tab.Slot(idx)
		tok := toks[i%2]
		fence, _ := s.Claim(0, tok, shm.Now()+int64(time.Hour))
		down := (up == "web" && i%10 == 0) || (up == "cache" && i%8 < 4)
		for j := range 64 {
			r := shm.Result{OK: true, Status: 200, RTT: time.Duration(300+i%700) * time.Microsecond}
			if (down && j > 50) || (i%7 == 0 && j%17 == 3) {
				r = shm.Result{Reason: uint8(probe.Timeout), RTT: time.Second, Detail: "dial tcp 10.0.0.1:8080: i/o timeout after 1s"}
			}
			s.Record(tok, fence, r, 2, 3)
		}
		switch {
		case up == "web" && i%50 == 1:
			s.SetAdmin(shm.Drain)
		case up == "batch" && i == 2:
			s.SetAdmin(shm.Maint)
		}
	}
	countRequests(tab)
	return tab
}

// countRequests adds a round of requests to every slot: mostly 2xx and fast, some 5xx and slow.
func countRequests(tab *shm.Table) {
	for i := range tab.Capacity() {
		s := tab.Slot(i)
		if !s.Used() || !s.State().Available() {
			continue
		}
		for j := range 40 {
			r := shm.Request{Status: 200, Duration: time.Duration(2+j%20) * time.Millisecond}
			if j%13 == 0 && i%3 == 0 {
				r.Status = 502
			}
			if j == 39 && i%5 == 0 {
				r.Duration = 1800 * time.Millisecond
			}
			s.CountRequest(&r)
			s.AddRequest()
		}
	}
}
