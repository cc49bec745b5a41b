// Package worker is one worker process: it proxies client traffic on the listeners it inherited
// from the master, serves the status page, and runs the active checks of the servers it owns.
//
// The model:
//
//   - A worker is started by the master with its descriptors named in HCPROXY_WORKER_FDS: the
//     health table, a control socket, a lifeline pipe, a payload (the validated config and the
//     slot of every server) and the listeners. It never reads the config file.
//   - The checker (checker.go) is the one place where checks are scheduled. On every tick it
//     walks the worker's slots: it probes the ones it owns when they are due, claims the ones it
//     may take (free, dead or draining owner, older generation, lapsed lease) if it is their
//     preferred worker by rendezvous hash over the live workers of the current generation (or if
//     the check is overdue), and hands back the ones whose preferred worker is another live one
//     right after probing them. A new owner continues the slot's schedule from its next due time,
//     so a handover neither skips a check nor adds one.
//   - Results go through rise/fall hysteresis in the table (shm.Slot.Record), fenced by the
//     claim, and a transition is logged once, by the owner that made it.
//   - Drain (on "drain" from the master, SIGQUIT, or EOF on the lifeline): stop the checker and
//     release every slot at once, stop accepting, answer each request already on its way with
//     Connection: close, close connections idle past a short grace, and exit when none are left
//     or shutdown_timeout has passed.
package worker
