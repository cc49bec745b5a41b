package status

import (
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
)

// The status page is never served from a table whose master is gone: its states are as they
// were when it was last written, and a page would show them as current. It answers 503 with
// the line hcctl prints instead, in every format.
func TestStatusPageRefusesDeadTable(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(Handler(f.tab, Options{}))
	defer srv.Close()
	if resp, _ := get(t, srv.URL+"/status"); resp.StatusCode != 200 {
		t.Fatalf("live table: %s", resp.Status)
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	f.tab.SetMaster(cmd.Process.Pid) // exited and reaped
	for _, q := range []string{"", "?format=json", "?format=csv"} {
		resp, body := get(t, srv.URL+"/status"+q)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "master not running; table last written at 20") {
			t.Errorf("dead table%s: %s %q", q, resp.Status, body)
		}
	}
}
