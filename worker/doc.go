// Package worker is one worker process: it proxies client traffic on the listeners it inherited
// from the master, serves the status page, and runs the active checks of the servers it owns.
//
// The model:
//
//   - A worker is started by the master with its descriptors named in HCPROXY_WORKER_FDS: the
//     health table, a control socket, a lifeline pipe, a payload (the validated config and the
//     slot of every server) and the listeners. It never reads the config file.
//   - The checker (checker.go) is the one place where checks are scheduled. The checks it owns
//     wait in a min-heap by due time (timers.go) and its run loop sleeps until the earliest; a
//     bounded pool of long-lived goroutines runs the probes (pool.go). A sharded claim sweep
//     (sweep.go; fast after a start, a nudge, a new generation or a change in the live workers,
//     slow and bounded otherwise) claims the slots it may take (free, owner gone, lapsed lease)
//     if it is their preferred worker by rendezvous hash over the live workers of the current
//     generation (or if the check is overdue). It hands back the ones whose preferred worker is
//     another live one right after probing them. A kept-alive check's connection belongs to its
//     owner: a handover closes it.
//   - One wake-up of the run loop does all that is ready: it ends the probes past their
//     deadline, opens the gate (probe.Gate) so the http probes started at least a millisecond
//     before read their answers, finishes every result already back, and starts every check due
//     within 4 ms. With thousands of checks a second that is one wake-up every few milliseconds,
//     not one per check.
//   - Results go through rise/fall hysteresis in the table (shm.Slot.Record), fenced by the
//     claim, and a transition is logged once, by the owner that made it.
//   - Drain (on "drain" from the master, SIGQUIT, or EOF on the lifeline): stop accepting,
//     hand the checks over (below), answer each request already on its way with
//     Connection: close, close connections idle past a short grace, and exit when none are left
//     (and the checks are handed over) or shutdown_timeout has passed.
//
// The handover rule (handover.go, schedule.go): a check that is due is made once, by one worker,
// and its result is recorded.
//
//   - The slot's due time is that of the next check not yet recorded. Starting a probe does not
//     move it; recording the result moves it one interval on from the due time (not from when
//     the probe ended), so lateness never adds up. A probe cut short (its owner stopped, killed
//     or fenced out) leaves it where it was: the next owner makes that check at once.
//   - A live owner is never taken over, it hands its slots back: after a check, to the slot's
//     preferred worker; when a newer generation is published; when it drains. A slot is released
//     only when no probe of it is in flight; a probe in flight at a reload or drain finishes
//     within its timeout and is recorded under the owner's fence, then the slot is released.
//     The new owner continues from the due time in the slot.
//   - An owner that is gone (reaped by the master after kill -9) or hung (its lease, interval +
//     timeout + 2s, lapsed) is taken over; a probe it had in flight was not recorded, so the new
//     owner makes that check at once. The only probes a backend sees twice for one interval are
//     such a lost probe that had already reached it and its redo.
//   - A check that starts more than a quarter interval late (after a takeover by lease, or the
//     redo of a killed owner's probe) starts a new phase one interval after it, so no check
//     follows it closely; a probe never runs past the next due time, so timeout == interval
//     keeps the period.
//   - A worker whose master died keeps its checks until a restarted master's generation takes
//     them over (up to 2s), so a master restart leaves no gap either. A fast stop (SIGTERM)
//     cancels probes in flight; their due times stay for the next owner.
package worker
