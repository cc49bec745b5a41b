package harness

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// workerEnv is in every worker's environment: the master sets it (worker.EnvRole) to start
// its binary as a worker.
const workerEnv = "HCPROXY_ROLE=worker"

// ProcStat returns the fields of /proc/PID/stat after the command name (field 3, the state, is
// index 0).
func ProcStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, errors.New("bad stat")
	}
	return strings.Fields(string(b[i+1:])), nil
}

// Running reports whether pid exists and is not a zombie.
func Running(pid int) bool {
	f, err := ProcStat(pid)
	return err == nil && len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

// Children lists the live (not zombie) children of pid, from every /proc/*/stat's ppid.
func Children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := ProcStat(c)
		if err != nil || len(f) < 2 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if pp, _ := strconv.Atoi(f[1]); pp == pid {
			out = append(out, c)
		}
	}
	sort.Ints(out)
	return out
}

// IsWorker reports whether pid is an hcproxy worker process (by the role in its environment),
// so a pid that was reused by another process is never stopped.
func IsWorker(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return false
	}
	for _, kv := range bytes.Split(b, []byte{0}) {
		if string(kv) == workerEnv {
			return true
		}
	}
	return false
}
