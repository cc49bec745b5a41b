// Package master supervises the worker processes: it owns the pid file lock, the health table's
// slot allocation, the listening sockets and the generations of workers.
//
// The model:
//
//   - One master per pid file (flock). It opens the listening sockets once and keeps them for its
//     whole life, so a socket that stays configured across reloads is never closed and no
//     connection in its queue is lost; every worker of every generation accepts from the same
//     socket.
//   - A generation is the set of workers started for one config. A reload validates the new
//     config (a bad one is logged and changes nothing), maps every server to its slot (unchanged
//     address and check: the same slot, its state and schedule continue), starts the new
//     generation, waits until every new worker is ready, publishes the generation in the table
//     and only then tells the old workers to drain. If a new worker fails to get ready, the new
//     generation is killed and the old one keeps serving.
//   - Every event (a signal, a worker's readiness or exit, a timer) is handled by one goroutine,
//     the run loop; a second HUP during a reload waits for it.
//   - A worker that exits unexpectedly is reaped, its table entry freed at once (so its checks
//     are takeable), the other workers are nudged to take them, and it is respawned with backoff.
//   - Workers hold the read end of a lifeline pipe whose write end only the master has: when the
//     master dies, however it dies, they drain and exit.
//   - The master reaches processes, the clock and its signals only through one seam (sys.go):
//     start a process, wait for it, signal it, read the clock. The unit tests put fake workers
//     and a fake clock behind it to drive reloads, respawns and the lifeline without binaries.
package master
