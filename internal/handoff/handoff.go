// Package handoff is the contract between the master and its workers: the environment and the
// named descriptors a worker inherits, the payload the master writes it (the validated config,
// the generation, the worker's index, the slot of every server), and the control messages on
// the socket between them. Both sides import it; neither imports the other.
package handoff

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"hcproxy/config"
)

// The environment a master gives a worker process.
const (
	EnvRole = "HCPROXY_ROLE" // "worker"
	EnvFds  = "HCPROXY_WORKER_FDS"
)

// Names of the inherited descriptors.
const (
	FdTable    = "table"
	FdControl  = "control"
	FdLifeline = "lifeline"
	FdPayload  = "payload"
	FdStatus   = "status"
	fdListen   = "listen:"
)

// FdListen names the listener for a [[server]] listen address.
func FdListen(addr string) string { return fdListen + addr }

// Payload is what the master tells a worker at start, besides the descriptors.
type Payload struct {
	Config     json.RawMessage `json:"config"`     // config.Config, validated by the master
	Generation uint64          `json:"generation"` // the worker's generation
	Index      int             `json:"index"`      // its entry in the table's worker list
	Slots      []SlotRef       `json:"slots"`      // the slot of every (upstream, server)
}

// ErrPayloadTruncated is wrapped by ReadPayload's error when the payload ends
// inside its JSON: the master wrote less than all of it, or the read was cut
// short.
var ErrPayloadTruncated = errors.New("handoff: payload truncated")

// ReadPayload reads and decodes the payload the master wrote to f (a memfd,
// from its start). It reads at most config.MaxHandoff bytes, which config.Parse
// guarantees is enough for every valid config, and refuses more by name; a
// payload shorter than f's size or ending inside its JSON is
// ErrPayloadTruncated, never a bare JSON error.
func ReadPayload(f *os.File) (Payload, error) {
	var p Payload
	size := int64(-1)
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		size = st.Size()
	}
	if size > config.MaxHandoff {
		return p, fmt.Errorf("payload is %d bytes, more than the limit of %d (config.MaxHandoff)", size, config.MaxHandoff)
	}
	raw, err := io.ReadAll(io.LimitReader(f, config.MaxHandoff+1))
	switch {
	case err != nil:
		return p, fmt.Errorf("read payload: %w", err)
	case len(raw) > config.MaxHandoff:
		return p, fmt.Errorf("payload is more than the limit of %d bytes (config.MaxHandoff)", config.MaxHandoff)
	case size >= 0 && int64(len(raw)) != size:
		return p, fmt.Errorf("%w: read %d of its %d bytes", ErrPayloadTruncated, len(raw), size)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&p); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return Payload{}, fmt.Errorf("%w: its %d bytes end inside the JSON (limit %d)", ErrPayloadTruncated, len(raw), config.MaxHandoff)
		}
		return Payload{}, fmt.Errorf("decode payload: %w", err)
	}
	if rest := bytes.TrimSpace(raw[dec.InputOffset():]); len(rest) > 0 {
		return Payload{}, fmt.Errorf("decode payload: %d bytes of trailing data", len(rest))
	}
	return p, nil
}

// SlotRef maps one server of one upstream to its slot in the table.
type SlotRef struct {
	Upstream string `json:"upstream"`
	Address  string `json:"address"`
	Slot     int    `json:"slot"`
}

// EncodeFds renders names (in ExtraFiles order, descriptor 3 first) for EnvFds.
func EncodeFds(names []string) string {
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = n + "=" + strconv.Itoa(3+i)
	}
	return strings.Join(parts, ",")
}

// Inherited returns the descriptors named in EnvFds, each marked close-on-exec.
func Inherited() (map[string]*os.File, error) {
	spec := os.Getenv(EnvFds)
	if spec == "" {
		return nil, fmt.Errorf("worker: %s is not set (a worker is started by the master, not by hand)", EnvFds)
	}
	files := map[string]*os.File{}
	for _, part := range strings.Split(spec, ",") {
		i := strings.LastIndexByte(part, '=')
		if i < 0 {
			return nil, fmt.Errorf("worker: bad %s entry %q", EnvFds, part)
		}
		fd, err := strconv.Atoi(part[i+1:])
		if err != nil || fd < 3 {
			return nil, fmt.Errorf("worker: bad descriptor in %s entry %q", EnvFds, part)
		}
		files[part[:i]] = os.NewFile(uintptr(fd), part[:i])
		unix.CloseOnExec(fd)
	}
	for _, need := range []string{FdTable, FdControl, FdLifeline, FdPayload} {
		if files[need] == nil {
			return nil, fmt.Errorf("worker: descriptor %q not passed", need)
		}
	}
	return files, nil
}

// Msg is a control message, one per line on the control socket: MsgReady from a worker to the
// master, the others from the master to a worker.
type Msg string

// The control messages.
const (
	MsgReady  Msg = "ready"  // the worker mapped the table, built its config and accepts
	MsgDrain  Msg = "drain"  // stop accepting, hand the checks back, finish in-flight requests, exit
	MsgStop   Msg = "stop"   // fast stop: close everything and exit
	MsgNudge  Msg = "nudge"  // claim free and takeable checks now (a worker died)
	MsgReopen Msg = "reopen" // reopen the log files (rotation)
)

// Send writes m to the control socket w as one line.
func Send(w io.Writer, m Msg) error {
	_, err := io.WriteString(w, string(m)+"\n")
	return err
}
