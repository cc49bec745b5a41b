package worker

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
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

// inherited returns the descriptors named in EnvFds, each marked close-on-exec.
func inherited() (map[string]*os.File, error) {
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
		setCloexec(fd)
	}
	for _, need := range []string{FdTable, FdControl, FdLifeline, FdPayload} {
		if files[need] == nil {
			return nil, fmt.Errorf("worker: descriptor %q not passed", need)
		}
	}
	return files, nil
}
