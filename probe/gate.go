package probe

import (
	"context"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Gate holds back the reads of check answers until its owner opens it, so that the answers to
// the requests sent in one wake-up of the owner are read in its next one, together (see
// tcpConn). A probe dialled with a context from WithGate uses it; any other probe never waits.
// The owner must open the gate within a bounded time of every probe's arrival at it (the
// checker: at most a few milliseconds after a probe started or one arrived, see Arrived) and
// once more when it stops.
type Gate struct {
	mu      sync.Mutex
	ch      chan struct{}
	waiting int
	arrived chan struct{} // Arrived
}

type gateKey struct{}

// WithGate returns ctx carrying g for the probes dialled with it.
func WithGate(ctx context.Context, g *Gate) context.Context {
	stampsOnce.Do(keepStamps)
	return context.WithValue(ctx, gateKey{}, g)
}

var stampsOnce sync.Once

// keepStamps keeps the kernel stamping the packets it receives for as long as the process
// lives, with a socket of its own that asks for stamps (SO_TIMESTAMPNS) and is never closed.
// Why: the kernel stamps packets only while some socket asks, and it turns stamping on and off
// in deferred work, so a check connection alone, the only one asking at a few checks a second,
// could get its answer unstamped, and its RTT would then count the wait at the gate. It waits
// (at most 100 ms) until a datagram sent to itself comes back stamped.
func keepStamps() {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1) != nil ||
		unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}) != nil {
		unix.Close(fd)
		return
	}
	self, err := unix.Getsockname(fd)
	if err != nil {
		return // the socket stays open: it asks for stamps all the same
	}
	buf := make([]byte, 1)
	for range 100 {
		if unix.Sendto(fd, buf, 0, self) != nil {
			return
		}
		time.Sleep(time.Millisecond)
		for {
			n, at, e := rawRecvStamped(fd, buf)
			if e != 0 || n == 0 {
				break
			}
			if !at.IsZero() {
				return
			}
		}
	}
}

func gateFrom(ctx context.Context) *Gate {
	g, _ := ctx.Value(gateKey{}).(*Gate)
	return g
}

// Arrived returns a channel that receives when a probe comes to the shut gate with none
// waiting before it: the owner then knows to open the gate soon, even when that probe started
// before the gate's last opening (it was still connecting, or not yet scheduled).
func (g *Gate) Arrived() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.arrived == nil {
		g.arrived = make(chan struct{}, 1)
	}
	return g.arrived
}

// wait blocks until the gate opens or stop is closed.
func (g *Gate) wait(stop <-chan struct{}) {
	g.mu.Lock()
	if g.ch == nil {
		g.ch = make(chan struct{})
	}
	ch := g.ch
	if g.waiting == 0 && g.arrived != nil {
		select {
		case g.arrived <- struct{}{}:
		default:
		}
	}
	g.waiting++
	g.mu.Unlock()
	select {
	case <-ch:
	case <-stop:
	}
}

// Open releases every probe waiting at the gate and returns how many there were.
func (g *Gate) Open() int {
	g.mu.Lock()
	ch, n := g.ch, g.waiting
	g.ch, g.waiting = nil, 0
	g.mu.Unlock()
	if ch != nil {
		close(ch)
	}
	return n
}
