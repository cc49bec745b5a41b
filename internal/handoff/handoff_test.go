package handoff

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"hcproxy/config"
)

// handoff builds the payload the master hands a worker of c (master.spawn):
// c as JSON and one slot per server of each upstream, numbered as in a full
// table of twice max_servers slots.
func handoff(t testing.TB, c *config.Config) (Payload, []byte) {
	t.Helper()
	cfgJSON, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := Payload{Config: cfgJSON, Generation: math.MaxUint64, Index: 63}
	for _, name := range c.UpstreamNames() {
		for _, s := range c.Upstreams[name].Servers {
			p.Slots = append(p.Slots, SlotRef{Upstream: name, Address: s.Address, Slot: 2*c.MaxServers - 1 - len(p.Slots)})
		}
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, b
}

// memfd returns a memfd holding b, read from its start, as the master
// passes the payload.
func memfd(t testing.TB, b []byte) *os.File {
	t.Helper()
	fd, err := unix.MemfdCreate("hcproxy-payload-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fd), "payload")
	t.Cleanup(func() { f.Close() })
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	return f
}

const smallConfig = `[[server]]
listen = "127.0.0.1:8080"
upstream = "app"
[upstream.app]
servers = ["127.0.0.1:9101", "127.0.0.1:9102"]
`

// Workers died with "decode payload: unexpected end of JSON input" when the
// payload was more than they read. A payload that ends early is now named
// for what it is.
func TestTruncatedPayloadSaysTruncatedNotUnexpectedEndOfJSON(t *testing.T) {
	c, err := config.Parse([]byte(smallConfig), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	_, b := handoff(t, c)
	for _, n := range []int{0, 1, len(b) / 2, len(b) - 1} {
		_, err := ReadPayload(memfd(t, b[:n]))
		if !errors.Is(err, ErrPayloadTruncated) || strings.Contains(err.Error(), "unexpected end of JSON input") {
			t.Errorf("payload cut to %d of %d bytes: %v, want ErrPayloadTruncated", n, len(b), err)
		}
	}
	// The whole of it reads back.
	p, err := ReadPayload(memfd(t, b))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Slots) != 2 || p.Index != 63 {
		t.Fatalf("payload %+v", p)
	}
	// Garbage after it, or instead of it, is not a truncation.
	for _, bad := range [][]byte{append(append([]byte(nil), b...), " {}"...), []byte("[1]"), []byte("{\"x\":1}}")} {
		if _, err := ReadPayload(memfd(t, bad)); err == nil || errors.Is(err, ErrPayloadTruncated) {
			t.Errorf("%.40q: %v, want a decode error", bad, err)
		}
	}
}

// A payload larger than config.MaxHandoff is refused by its size, without
// reading it.
func TestPayloadOverTheLimitRefused(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "payload"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(config.MaxHandoff + 1); err != nil {
		t.Fatal(err)
	}
	_, err = ReadPayload(f)
	if err == nil || err.Error() != "payload is 67108865 bytes, more than the limit of 67108864 (config.MaxHandoff)" {
		t.Errorf("sparse file: %v", err)
	}
}

// The largest table a config may ask for, max_servers = 100,000, passes -t;
// its payload fits config.MaxHandoff within the bound config.Parse computes
// and reaches the worker whole. (The config's JSON has every field of every
// server whether the TOML sets it or not, so listing the servers as plain
// addresses makes the same payload as inline tables would.)
func TestLargestConfigPayloadRoundTrips(t *testing.T) {
	var b strings.Builder
	b.WriteString("max_servers = 100000\n" + smallConfig + "[upstream.big]\nservers = [\n")
	for i := 0; i < 99998; i++ {
		b.WriteString(`  "10.` + strconv.Itoa(i>>16) + "." + strconv.Itoa(i>>8&255) + "." + strconv.Itoa(i&255) + `:8080",` + "\n")
	}
	b.WriteString("]\n")
	c, err := config.Parse([]byte(b.String()), "/etc/hcproxy/t.toml")
	if err != nil {
		t.Fatalf("%.500v", err)
	}
	want, raw := handoff(t, c)
	bound := int64(len(want.Config)) + config.HandoffBaseBytes
	for _, s := range want.Slots {
		bound += config.HandoffEntryBytes + jsonLen(t, s.Upstream) + jsonLen(t, s.Address)
	}
	t.Logf("config %d bytes of TOML; payload %d bytes (config %d, slot map of %d servers %d), bound %d, limit %d",
		b.Len(), len(raw), len(want.Config), len(want.Slots), len(raw)-len(want.Config), bound, config.MaxHandoff)
	if int64(len(raw)) > bound || bound > config.MaxHandoff {
		t.Fatalf("payload %d bytes, bound %d, limit %d", len(raw), bound, config.MaxHandoff)
	}
	got, err := ReadPayload(memfd(t, raw))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Slots, want.Slots) || got.Generation != want.Generation || got.Index != want.Index {
		t.Fatal("payload differs after the hand-off")
	}
	d, err := config.Unmarshal(got.Config)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, d) {
		t.Fatal("config differs after the hand-off")
	}
}

// Each slot map entry fits the room config.Parse's bound gives it, at its
// longest: a 64-byte upstream name, a 253-byte host name, the largest slot.
func TestSlotRefFitsTheHandoffBound(t *testing.T) {
	name := strings.Repeat("u", 64)
	addr := strings.Repeat("h", 253) + ":65535"
	p := Payload{Config: json.RawMessage("{}"), Generation: math.MaxUint64, Index: math.MaxInt}
	empty, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(empty)-2 > config.HandoffBaseBytes {
		t.Fatalf("payload without config or slots: %d bytes", len(empty))
	}
	p.Slots = []SlotRef{{Upstream: name, Address: addr, Slot: math.MaxInt}, {Upstream: name, Address: addr, Slot: math.MaxInt}}
	two, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if per := int64(len(two)-len(empty)) / 2; per > config.HandoffEntryBytes+jsonLen(t, name)+jsonLen(t, addr) {
		t.Fatalf("a slot map entry takes %d bytes", per)
	}
}

func jsonLen(t testing.TB, s string) int64 {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(b))
}
