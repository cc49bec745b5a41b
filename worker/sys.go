package worker

import (
	"os"

	"hcproxy/internal/handoff"
)

// ProcName is a worker's name in /proc/PID/comm (what pgrep, top and ss -p show): the kernel
// keeps 15 bytes, and this is exactly 15. Its command line (ps) is set by the master.
const ProcName = "hcproxy: worker"

// A worker runs /proc/self/exe, so the kernel names it "exe": rename it as early as possible.
func init() {
	if os.Getenv(handoff.EnvRole) == "worker" {
		setProcName(ProcName)
	}
}

// setProcName sets the process's name (the main thread's comm) by writing /proc/self/comm,
// which the kernel applies to the thread group's leader from any thread with the same
// set_task_comm as prctl(PR_SET_NAME), without a raw pointer (unsafe stays in shm/). The
// kernel cuts name to 15 bytes.
func setProcName(name string) error {
	return os.WriteFile("/proc/self/comm", []byte(name), 0)
}
