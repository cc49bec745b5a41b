package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"hcproxy/probe"
	"hcproxy/shm"
	"hcproxy/status"
)

// newTable builds a table file in a temp dir with one ready worker (pid 4242) and three servers:
//
//	app  10.0.0.1:80  owned, 3 passes: up
//	app  10.0.0.2:80  owned, pass then 2 failures (bad_status 503): down
//	api  10.0.0.9:81  never checked: checking
func newTable(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hc.table")
	tab, err := shm.OpenMaster(path, 8)
	if err != nil {
		t.Fatal(err)
	}
	defer tab.Close()
	tab.SetMaster(os.Getpid()) // a running process: the table is live
	tab.SetGeneration(1)
	wi, err := tab.ReserveWorker(1)
	if err != nil {
		t.Fatal(err)
	}
	tok := tab.Register(wi, 4242)
	tab.SetWorkerState(wi, shm.WorkerReady)
	tab.Heartbeat(wi, 2)
	slot := func(addr, label string, rs ...shm.Result) {
		i, err := tab.Alloc(1, addr, label, time.Second, 1, shm.Checking)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			return
		}
		s := tab.Slot(i)
		fence, ok := s.Claim(0, tok, shm.Now()+int64(time.Minute))
		if !ok {
			t.Fatal("claim failed")
		}
		for _, r := range rs {
			if _, err := s.Record(tok, fence, r, 2, 2); err != nil {
				t.Fatal(err)
			}
		}
	}
	pass := shm.Result{OK: true, Status: 200, RTT: time.Millisecond}
	fail := shm.Result{Reason: uint8(probe.BadStatus), Status: 503, RTT: time.Millisecond, Detail: "status 503"}
	slot("10.0.0.9:81", "api")
	slot("10.0.0.1:80", "app", pass, pass, pass)
	slot("10.0.0.2:80", "app", pass, fail, fail)
	return path
}

func runHcctl(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestDumpText(t *testing.T) {
	path := newTable(t)
	code, out, errs := runHcctl("--table", path, "dump")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	for _, want := range []string{"UPSTREAM", "LAST-CHECK", "SINCE", "generation 1, master pid " + strconv.Itoa(os.Getpid()),
		"workers (1):", "4242", "bad_status(503)"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 12 {
			rows[f[1]] = f
		}
	}
	for addr, want := range map[string]string{
		"10.0.0.1:80": "app 10.0.0.1:80 up ready 4242 3 3 0 ok(200) 1.00ms",
		"10.0.0.2:80": "app 10.0.0.2:80 down ready 4242 2 3 2 bad_status(503) 1.00ms",
		"10.0.0.9:81": "api 10.0.0.9:81 checking ready - 0 0 0 - - -",
	} {
		if got := strings.Join(rows[addr], " "); !strings.HasPrefix(got, want) {
			t.Errorf("row %s = %q, want prefix %q", addr, got, want)
		}
	}
	// The table flag is accepted after the command too.
	if code, out2, _ := runHcctl("dump", "--table", path); code != 0 || !strings.Contains(out2, "10.0.0.2:80") {
		t.Errorf("dump --table after the command: exit %d", code)
	}
}

func TestDumpJSONAndFilters(t *testing.T) {
	path := newTable(t)
	dump := func(args ...string) status.Document {
		t.Helper()
		code, out, errs := runHcctl(append([]string{"--table", path, "dump", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errs)
		}
		var d status.Document
		if err := json.Unmarshal([]byte(out), &d); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return d
	}
	addrs := func(d status.Document) string {
		var s []string
		for _, b := range d.Backends {
			s = append(s, b.Address)
		}
		return strings.Join(s, ",")
	}
	d := dump()
	if d.Generation != 1 || d.MasterPid != os.Getpid() || d.Capacity != 8 || len(d.Workers) != 1 || d.Workers[0].Pid != 4242 {
		t.Errorf("document header = %+v", d)
	}
	if got := addrs(d); got != "10.0.0.9:81,10.0.0.1:80,10.0.0.2:80" {
		t.Errorf("backends = %s", got)
	}
	if b := d.Backends[2]; b.State != "down" || b.LastResult != "bad_status" || b.History != "+--" || b.OwnerPid != 4242 {
		t.Errorf("down backend = %+v", b)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--upstream", "app"}, "10.0.0.1:80,10.0.0.2:80"},
		{[]string{"--upstream", "nope"}, ""},
		{[]string{"--state", "down"}, "10.0.0.2:80"},
		{[]string{"--state", "checking"}, "10.0.0.9:81"},
		{[]string{"--state", "up", "--upstream", "app"}, "10.0.0.1:80"},
		{[]string{"--state", "up", "--upstream", "api"}, ""},
	} {
		if got := addrs(dump(tc.args...)); got != tc.want {
			t.Errorf("%v: backends = %q, want %q", tc.args, got, tc.want)
		}
	}
	// Filters apply to the text dump as well.
	_, out, _ := runHcctl("--table", path, "dump", "--state", "down")
	if !strings.Contains(out, "10.0.0.2:80") || strings.Contains(out, "10.0.0.1:80") {
		t.Errorf("text dump --state down:\n%s", out)
	}
}

func TestDumpWithConfig(t *testing.T) {
	path := newTable(t)
	cfg := filepath.Join(t.TempDir(), "hcproxy.toml")
	conf := "table = " + `"` + path + `"` + `
[[server]]
listen = "127.0.0.1:8080"
upstream = "app"

[upstream.app]
servers = ["127.0.0.1:9101"]
`
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runHcctl("-c", cfg, "dump")
	if code != 0 || !strings.Contains(out, "10.0.0.2:80") {
		t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, errs, out)
	}
}

// A corrupt or missing table gives one line naming the file and exit 1, never a panic.
func TestDumpBadTable(t *testing.T) {
	dir := t.TempDir()
	random := filepath.Join(dir, "random")
	b := make([]byte, 64<<10)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	text := filepath.Join(dir, "text")
	empty := filepath.Join(dir, "empty")
	tiny := filepath.Join(dir, "tiny")
	for p, data := range map[string][]byte{random: b, text: []byte("this is not a table\n"), empty: nil, tiny: {1, 2, 3}} {
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	truncated := newTable(t)
	if err := os.Truncate(truncated, shm.HeaderSize+100); err != nil {
		t.Fatal(err)
	}
	headerOnly := newTable(t)
	if err := os.Truncate(headerOnly, 100); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct{ path, want string }{
		"random":      {random, "not a health table"},
		"text":        {text, "not a health table (bad magic): 0x"},
		"empty":       {empty, "truncated"},
		"tiny":        {tiny, "truncated"},
		"truncated":   {truncated, "truncated"},
		"header-only": {headerOnly, "truncated"},
		"missing":     {filepath.Join(dir, "missing"), "no such file"},
		"directory":   {dir, ""},
	} {
		for _, args := range [][]string{{"--table", tc.path, "dump"}, {"--table", tc.path, "dump", "--json"}} {
			code, out, errs := runHcctl(args...)
			if code != 1 {
				t.Errorf("%s: exit %d, want 1", name, code)
			}
			if out != "" {
				t.Errorf("%s: stdout %q", name, out)
			}
			if strings.Count(errs, "\n") != 1 || !strings.HasPrefix(errs, "hcctl: ") || !strings.Contains(errs, tc.path) || !strings.Contains(errs, tc.want) {
				t.Errorf("%s: stderr %q, want one line naming %s with %q", name, errs, tc.path, tc.want)
			}
		}
	}
}

func TestUsage(t *testing.T) {
	path := newTable(t)
	for _, tc := range []struct {
		args      []string
		code      int
		out, errs string
	}{
		{[]string{"dump"}, 2, "", "hcctl: give -c FILE or --table PATH\n"},
		{[]string{"-c", "x.toml", "--table", path, "dump"}, 2, "", "not both"},
		{nil, 2, "", "no command"},
		{[]string{"--table", path, "frob"}, 2, "", `unknown command "frob"`},
		{[]string{"--table", path, "dump", "--state", "sideways"}, 2, "", "up, down or checking"},
		{[]string{"--table", path, "dump", "--bogus"}, 2, "", "-bogus"},
		{[]string{"--table", path, "dump", "extra"}, 2, "", `unexpected argument "extra"`},
		{[]string{"--nope"}, 2, "", "-nope"},
		{[]string{"-h"}, 0, "Exit status", ""},
		{[]string{"--help"}, 0, "dump", ""},
		{[]string{"help"}, 0, "Commands:", ""},
		{[]string{"dump", "-h"}, 0, "--upstream NAME", ""},
	} {
		code, out, errs := runHcctl(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) || !strings.Contains(errs, tc.errs) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, out, errs, tc.code, tc.out, tc.errs)
		}
		if tc.code == 0 && errs != "" {
			t.Errorf("%q: stderr %q", tc.args, errs)
		}
	}
}
