package main

import (
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"hcproxy/shm"
)

func TestWorkers(t *testing.T) {
	path := newTable(t)
	tab, err := shm.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	wi, err := tab.ReserveWorker(2)
	if err != nil {
		t.Fatal(err)
	}
	tab.Register(wi, 4343)
	for range 7 {
		tab.CountRequest(wi)
	}
	tab.Heartbeat(wi, 1)
	tab.SetWorkerState(wi, shm.WorkerDraining)
	tab.Close()

	code, out, errs := runHcctl("--table", path, "workers")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	if !strings.Contains(out, "generation 1, master pid "+strconv.Itoa(os.Getpid())+", workers: 2") {
		t.Errorf("header missing:\n%s", out)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) >= 9 {
			rows[f[1]] = strings.Join(f[:8], " ")
		}
	}
	if rows["PID"] != "INDEX PID SERIAL GEN STATE OWNED REQUESTS HEARTBEAT" {
		t.Errorf("columns = %q", rows["PID"])
	}
	for pid, want := range map[string]string{"4242": "ready 2 0 0s", "4343": "draining 1 7 0s"} {
		if !strings.HasSuffix(rows[pid], want) {
			t.Errorf("row of %s = %q, want suffix %q", pid, rows[pid], want)
		}
	}

	code, out, errs = runHcctl("--table", path, "workers", "--json")
	if code != 0 || errs != "" {
		t.Fatalf("--json: exit %d, stderr %q", code, errs)
	}
	var doc workersDoc
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if doc.Generation != 1 || doc.MasterPid != os.Getpid() || len(doc.Workers) != 2 {
		t.Fatalf("document = %+v", doc)
	}
	w := doc.Workers[1]
	if w.Pid != 4343 || w.Serial == 0 || w.Serial == doc.Workers[0].Serial || w.Generation != 2 || w.State != "draining" ||
		w.ChecksOwned != 1 || w.Requests != 7 || w.StartedUnixMs == 0 || time.Since(time.UnixMilli(w.HeartbeatUnixMs)) > time.Minute {
		t.Errorf("worker = %+v", w)
	}
	for _, key := range []string{`"pid"`, `"serial"`, `"generation"`, `"state"`, `"checks_owned"`, `"requests"`, `"heartbeat_unix_ms"`, `"started_unix_ms"`} {
		if !strings.Contains(out, key) {
			t.Errorf("JSON lacks %s", key)
		}
	}
}

func TestSet(t *testing.T) {
	path := newTable(t)
	// A server shared by two upstreams has one slot labelled with both names.
	tab, err := shm.Open(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Alloc(2, "10.0.0.5:80", "app,web", time.Second, 1, shm.Up); err != nil {
		t.Fatal(err)
	}
	tab.Close()

	admin := func(addr string) shm.Admin {
		t.Helper()
		tab, err := shm.Open(path, true)
		if err != nil {
			t.Fatal(err)
		}
		defer tab.Close()
		for _, in := range tab.Snapshot().Slots {
			if in.Address == addr {
				return in.State.Admin()
			}
		}
		t.Fatalf("no slot %s", addr)
		return 0
	}
	events := func() []shm.Event {
		tab, err := shm.Open(path, true)
		if err != nil {
			t.Fatal(err)
		}
		defer tab.Close()
		evs, _, _ := tab.ReadEvents(0, 100)
		return evs
	}

	code, out, errs := runHcctl("--table", path, "set", "app", "10.0.0.1:80", "drain")
	if code != 0 || errs != "" || out != "app 10.0.0.1:80: ready -> drain\n" {
		t.Fatalf("set drain: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if a := admin("10.0.0.1:80"); a != shm.Drain {
		t.Errorf("admin = %v, want drain", a)
	}
	if a := admin("10.0.0.2:80"); a != shm.Ready {
		t.Errorf("other server's admin = %v, want ready", a)
	}
	evs := events()
	if len(evs) != 1 {
		t.Fatalf("%d events, want 1: %+v", len(evs), evs)
	}
	if e := evs[0]; e.Kind != shm.EventAdmin || e.Address != "10.0.0.1:80" || e.Label != "app" ||
		shm.Admin(e.Old) != shm.Ready || shm.Admin(e.New) != shm.Drain || e.Pid != os.Getpid() || e.Slot != 1 {
		t.Errorf("event = %+v", e)
	}
	// dump shows it.
	if _, out, _ := runHcctl("--table", path, "dump", "--upstream", "app"); !strings.Contains(out, "drain") {
		t.Errorf("dump after set:\n%s", out)
	}

	// Flags may follow the arguments; the second upstream of a shared server finds it; setting
	// the state it already has prints it but appends no event.
	for _, tc := range []struct {
		args []string
		out  string
	}{
		{[]string{"set", "app", "10.0.0.1:80", "maint", "--table", path}, "app 10.0.0.1:80: drain -> maint\n"},
		{[]string{"--table", path, "set", "web", "10.0.0.5:80", "maint"}, "web 10.0.0.5:80: ready -> maint\n"},
		{[]string{"--table", path, "set", "app", "10.0.0.5:80", "ready"}, "app 10.0.0.5:80: maint -> ready\n"},
		{[]string{"--table", path, "set", "app", "10.0.0.5:80", "ready"}, "app 10.0.0.5:80: ready -> ready\n"},
		{[]string{"--table", path, "set", "--", "app", "10.0.0.1:80", "ready"}, "app 10.0.0.1:80: maint -> ready\n"},
	} {
		code, out, errs := runHcctl(tc.args...)
		if code != 0 || out != tc.out || errs != "" {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %q", tc.args, code, out, errs, tc.out)
		}
	}
	if n := len(events()); n != 5 {
		t.Errorf("%d events, want 5 (one per change)", n)
	}

	for _, tc := range []struct {
		args []string
		code int
		errs string
	}{
		{[]string{"set", "app", "10.0.0.7:80", "drain"}, 1, "hcctl: no server 10.0.0.7:80 in upstream app\n"},
		{[]string{"set", "api", "10.0.0.1:80", "drain"}, 1, "hcctl: no server 10.0.0.1:80 in upstream api\n"},
		{[]string{"set", "ap", "10.0.0.5:80", "drain"}, 1, "hcctl: no server 10.0.0.5:80 in upstream ap\n"},
		{[]string{"set", "app", "10.0.0.1:80", "down"}, 2, `set: unknown state "down" (want drain, maint or ready)`},
		{[]string{"set", "app", "10.0.0.1:80"}, 2, "set: missing STATE"},
		{[]string{"set", "app", "10.0.0.1:80", "drain", "now"}, 2, `set: unexpected argument "now"`},
	} {
		code, out, errs := runHcctl(append([]string{"--table", path}, tc.args...)...)
		if code != tc.code || out != "" || !strings.Contains(errs, tc.errs) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q", tc.args, code, out, errs, tc.code, tc.errs)
		}
	}
	if a := admin("10.0.0.1:80"); a != shm.Ready {
		t.Errorf("admin after failed sets = %v, want ready", a)
	}
	if code, out, _ := runHcctl("set", "-h"); code != 0 || !strings.Contains(out, "drain|maint|ready") {
		t.Errorf("set -h: exit %d:\n%s", code, out)
	}
}

// set needs to write the table: a read-only file gives one line and exit 1.
func TestSetReadOnlyTable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes read-only files")
	}
	path := newTable(t)
	if err := os.Chmod(path, 0o444); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runHcctl("--table", path, "set", "app", "10.0.0.1:80", "drain")
	if code != 1 || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, "permission denied") {
		t.Errorf("exit %d, stderr %q", code, errs)
	}
}
