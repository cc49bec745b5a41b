package master

// systemd readiness notification (sd_notify(3)), for Type=notify units.
//
// Only the master notifies: with systemd's default NotifyAccess=main a message from any other pid
// is dropped with a warning, and only the master knows when a generation is ready. Workers get an
// environment without NOTIFY_SOCKET (see withoutNotifySocket), so a library in them cannot
// notify either. The master never re-execs itself, so its pid (MAINPID) is stable.
//
// The protocol: READY=1 once the first generation's workers are all ready; RELOADING=1 with
// MONOTONIC_USEC at the start of a reload (required by Type=notify-reload, harmless for
// Type=notify), then READY=1 again whether the reload worked or not (after a failed reload the
// old generation still serves, so the service is ready); STOPPING=1 at the start of a shutdown.

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"hcproxy/config"
)

// envNotifySocket is where systemd tells a Type=notify service to send its state.
const envNotifySocket = "NOTIFY_SOCKET"

var (
	notifyLog     atomic.Pointer[slog.Logger] // the master's log, for notify errors
	notifyErrOnce sync.Once
)

// notify sends state to $NOTIFY_SOCKET ("@name" is an abstract socket) as one datagram; without
// NOTIFY_SOCKET it does nothing. An error is logged (the first one only) and otherwise ignored:
// a proxy that serves but cannot tell systemd is better than one that stops for it.
func notify(state string) {
	path := os.Getenv(envNotifySocket)
	if path == "" {
		return
	}
	if err := sendNotify(path, state); err != nil {
		notifyErrOnce.Do(func() {
			log := notifyLog.Load()
			if log == nil {
				log = slog.Default()
			}
			log.Warn("sd_notify failed, systemd is not told about readiness and reloads", "socket", path, "err", err)
		})
	}
}

// sendNotify writes one datagram to the unix socket at path. Go's net package maps a leading '@'
// to the abstract namespace, as sd_notify does.
func sendNotify(path, state string) error {
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, err = conn.Write([]byte(state))
	return err
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd expects in MONOTONIC_USEC.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// notifyReady tells systemd that the first generation g is serving.
func (m *Master) notifyReady(g *generation) {
	notifyLog.Store(m.log)
	notify(fmt.Sprintf("READY=1\nSTATUS=serving, generation %d, %d workers\nMAINPID=%d", g.gen, g.cfg.Workers, os.Getpid()))
}

// notifyReloading tells systemd that a reload started.
func (m *Master) notifyReloading() {
	notifyLog.Store(m.log)
	notify(fmt.Sprintf("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=%d", monotonicUsec()))
}

// notifyReloaded tells systemd that the reload started while generation before served is over:
// a new current generation means it worked; otherwise it failed and before still serves. It is
// meant to be deferred at the start of reload.
func (m *Master) notifyReloaded(before uint64) {
	notifyLog.Store(m.log)
	if m.cur != nil && m.cur.gen != before {
		notify(fmt.Sprintf("READY=1\nSTATUS=reloaded generation %d", m.cur.gen))
		return
	}
	notify(fmt.Sprintf("READY=1\nSTATUS=reload failed: %s; generation %d still serves", m.reloadFailure(), before))
}

// reloadFailure names why a reload failed, for the STATUS line: the config error when the file
// is (still) invalid, else a pointer to the log, which has the whole story.
func (m *Master) reloadFailure() string {
	if _, err := config.Load(m.path); err != nil {
		return oneLine(err.Error())
	}
	return "new configuration not applied, see the log"
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// notifyStopping tells systemd that the master is shutting down.
func (m *Master) notifyStopping() {
	notifyLog.Store(m.log)
	notify("STOPPING=1\nSTATUS=stopping")
}

// withoutNotifySocket returns env without NOTIFY_SOCKET, for the workers: only the master may
// notify.
func withoutNotifySocket(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, envNotifySocket+"=") {
			out = append(out, kv)
		}
	}
	return out
}
