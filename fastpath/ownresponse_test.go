package fastpath

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"hcproxy/shm"
	"hcproxy/upstream"
)

// TestOwn503NamesNothingAndLogsItsBytes pins two faults of the 503 hcproxy makes itself when no
// server is available: its body named the upstream ("no available server in upstream app") to
// any client, and the fast engine's access log recorded 0 bytes for it though it sent 61. Both
// engines now send the bare status text and log the body bytes they sent.
func TestOwn503NamesNothingAndLogsItsBytes(t *testing.T) {
	rec := newRecorder(t, echoHandler)
	for _, engine := range []string{"fast", "std"} {
		t.Run(engine, func(t *testing.T) {
			var log syncBuffer
			al := upstream.NewAccessLog("json", &log)
			ss := servers(t, shm.Down, rec.addr())
			var addr string
			if engine == "fast" {
				var o Options
				o.AccessLog = al
				_, addr = startFast(t, o, ss)
			} else {
				addr = startStd(t, upstream.Options{AccessLog: al}, ss)
			}
			resp, err := http.Get("http://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 503 || string(body) != "Service Unavailable\n" {
				t.Fatalf("all down: %s %q, want 503 \"Service Unavailable\\n\"", resp.Status, body)
			}
			for _, internal := range []string{"app", rec.addr(), "upstream"} {
				if strings.Contains(string(body), internal) {
					t.Errorf("the 503 body names %q: %q", internal, body)
				}
			}
			want := `"status":503,"bytes":` + strconv.Itoa(len(body)) + `,`
			eventually(t, "the 503 in the access log with its bytes", 5*time.Second, func() bool {
				return strings.Contains(log.String(), want)
			})
		})
	}
}
