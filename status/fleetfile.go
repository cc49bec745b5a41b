package status

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// The fleet status file: with a [fleet], the master writes what hcctl fleet shows (members,
// who checks what, the votes) beside the table, PATH.fleet, replaced atomically after each
// change (at most twice a second) and every 5s, and removed when the master stops. The table
// has no room for host names; the file does, and hcctl reads it without asking the master.

// FleetStatusPath is the fleet status file of the table at table.
func FleetStatusPath(table string) string { return table + ".fleet" }

// FleetStatus is the fleet status file.
type FleetStatus struct {
	Host          string        `json:"host"`            // this host's name in the fleet
	MasterPid     int           `json:"master_pid"`      // the master that wrote it
	UpdatedUnixMs int64         `json:"updated_unix_ms"` // when
	Mode          string        `json:"mode"`            // fleet (joined), fallback (checking everything here)
	Checkers      int           `json:"checkers"`        // hosts that check each server
	LeaseTTLMs    int64         `json:"lease_ttl_ms"`
	Endpoints     []string      `json:"endpoints"` // etcd's
	Members       []string      `json:"members"`   // live members, sorted; empty in fallback
	Stats         Fleet         `json:"stats"`     // as in the status document
	Servers       []FleetServer `json:"servers"`   // by key
}

// FleetServer is one checked server in the fleet status file.
type FleetServer struct {
	Key         string   `json:"key"` // the fleet's key: address#check hash
	Address     string   `json:"address"`
	Upstream    string   `json:"upstream"`
	Slot        int      `json:"slot"`
	CheckedHere bool     `json:"checked_here"` // this host probes it (it holds a claim, or in fallback)
	Local       string   `json:"local"`        // the table's health when written: up, down, checking
	Fleet       string   `json:"fleet"`        // the fleet's vote: up, down, unknown; "" in fallback
	Checkers    []string `json:"checkers"`     // hosts holding a claim on it
	Up          []string `json:"up"`           // checkers whose verdict is up
	Down        []string `json:"down"`         // checkers whose verdict is down
	// Disagree: this host checks the server and its own verdict is not the fleet's (it routes
	// on its own; the others on the vote). Set by the reader (hcctl fleet) from the table.
	Disagree bool `json:"disagree,omitempty"`
}

// maxFleetFile bounds what ReadFleetStatus reads: 10,000 servers with long names fit.
const maxFleetFile = 64 << 20

// ErrNoFleetStatus is returned when there is no fleet status file.
var ErrNoFleetStatus = errors.New("no fleet status file")

// ReadFleetStatus reads the fleet status file at path, without following a symlink, bounded in
// size, and refuses what does not parse.
func ReadFleetStatus(path string) (FleetStatus, error) {
	var st FleetStatus
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return st, fmt.Errorf("%w at %s: the master has no [fleet], or is not running", ErrNoFleetStatus, path)
	}
	if err != nil {
		return st, fmt.Errorf("open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return st, fmt.Errorf("%s: not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFleetFile+1))
	if err != nil {
		return st, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > maxFleetFile {
		return st, fmt.Errorf("%s: larger than %d bytes, not a fleet status file", path, maxFleetFile)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: not a fleet status file: %w", path, err)
	}
	return st, nil
}
