package master

// Listener steering with eBPF (steering = "bpf", or "auto" where the kernel permits it).
//
// For each [[server]] listen address the master keeps a group of SO_REUSEPORT sockets, one per
// worker index (the worker's entry in the table's worker list, < shm.WorkerCap). Each worker gets
// only its own socket, under the usual descriptor name worker.FdListen(addr), so the worker code
// does not know which mode runs. An SK_REUSEPORT program, assembled here with cilium/ebpf's asm
// package (no clang), is attached to the group and picks the socket for each new connection:
//
//	key = live[hash % n]; bpf_sk_select_reuseport(ctx, sockets, &key, 0); return SK_PASS
//
// where live is the list of the indices of the live (ready, not draining) workers that the
// master publishes in a BPF array map, and sockets is a REUSEPORT_SOCKARRAY holding the group's
// sockets by worker index. With no live worker, or if the helper fails, the program returns
// SK_PASS without a selection and the kernel picks a socket by its own hash: a miss is never a
// drop.
//
// The master removes a worker from the live list as soon as it is told to drain or is reaped,
// so no new connection lands in a queue that nobody will accept from, and adds it when it reports
// ready. A socket whose worker is gone stays open in the master, and the next worker at that
// index inherits it with whatever is queued on it. Where the program could be attached as
// SELECT_OR_MIGRATE (Linux 5.14+), the master instead closes such a socket as soon as another
// socket of the group is live: the kernel then runs the program to migrate the connections
// queued on it (and half-open ones) to a live worker's socket, so they wait neither for a
// respawn nor for the next reload. The group's port stays bound throughout: a socket is closed
// only while another of the group is live.
//
// The live list is double-buffered (entries 0 and 1 of the live map; entry 2 names the one in
// use), so the program never reads a list the master is rewriting.

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"hcproxy/config"
	"hcproxy/shm"
)

// EnvDisableBPF is a test seam: when it is "1", loading the BPF objects fails as if the kernel
// had refused them with EPERM (not root, no CAP_BPF), so the fallback of steering = "auto" can be
// tested on a machine that permits BPF.
const EnvDisableBPF = "HCPROXY_DISABLE_BPF"

// slotCap is the number of entries of a group's socket array: one per possible worker index.
// The program bounds its index with slotCap-1, so it must be a power of two.
const slotCap = shm.WorkerCap

// liveWords is the size in uint32 of one live list: its length, then up to slotCap indices.
const liveWords = 1 + slotCap

// spare is the key of the socket a group opens before any worker needs it (it holds the address
// and the program); the first worker to start takes it.
const spare = -1

// skPass is the SK_PASS verdict of an SK_REUSEPORT program.
const skPass = 1

// steering is the master's listener steering: in "shared" mode nothing (every worker inherits
// the one socket in Master.listeners), in "bpf" mode one group per [[server]] address.
type steering struct {
	mode    string // "bpf" or "shared"
	migrate bool   // the program is attached as SELECT_OR_MIGRATE
	groups  map[string]*group
	live    map[int]bool // indices of the workers that get new connections
	owner   map[int]bool // indices whose sockets a started, non-draining worker holds
	log     *slog.Logger
}

// group is the reuseport group of one listen address.
type group struct {
	addr    string
	port    int // the port the group's sockets are bound to
	migrate bool
	sockets *ebpf.Map // REUSEPORT_SOCKARRAY: worker index -> socket
	live    *ebpf.Map // [3][liveWords]uint32: two live lists and the selector
	prog    *ebpf.Program
	cur     uint32           // the live list in use (0 or 1)
	files   map[int]*os.File // the master's copy of each socket, by worker index (or spare)
}

// newSteering chooses the steering mode for cfg: "shared" as asked, "bpf" if the BPF objects
// load, and for "auto" the fallback to "shared", with one warning, when they do not. It logs the
// mode chosen.
func newSteering(cfg *config.Config, log *slog.Logger) (*steering, error) {
	s := &steering{mode: "shared", groups: map[string]*group{}, live: map[int]bool{}, owner: map[int]bool{}, log: log}
	if cfg.Steering != "shared" {
		migrate, err := probeBPF()
		switch {
		case err == nil:
			s.mode, s.migrate = "bpf", migrate
		case cfg.Steering == "bpf":
			return nil, fmt.Errorf(`steering = "bpf": eBPF listener steering not available (check CAP_BPF and the kernel, 4.19+): %w`, err)
		default:
			log.Warn("eBPF listener steering not available, using one shared socket", "err", err)
		}
	}
	log.Info("listener steering", "steering", s.mode, "migrate", s.migrate)
	return s, nil
}

func (s *steering) bpf() bool { return s != nil && s.mode == "bpf" }

// probeBPF loads a group's BPF objects once and frees them; it reports whether the program can
// be attached as SELECT_OR_MIGRATE.
func probeBPF() (migrate bool, err error) {
	g, err := newGroupObjects("probe")
	if err != nil {
		return false, err
	}
	g.closeObjects()
	return g.migrate, nil
}

// newGroupObjects makes the maps and the program of a group, without sockets.
func newGroupObjects(addr string) (*group, error) {
	if os.Getenv(EnvDisableBPF) == "1" {
		return nil, fmt.Errorf("%w (%s=1)", unix.EPERM, EnvDisableBPF)
	}
	_ = rlimit.RemoveMemlock() // needed before Linux 5.11 only; without privileges the loads below say why
	g := &group{addr: addr, files: map[int]*os.File{}}
	var err error
	g.sockets, err = ebpf.NewMap(&ebpf.MapSpec{Name: "hcp_socks", Type: ebpf.ReusePortSockArray, KeySize: 4, ValueSize: 8, MaxEntries: slotCap})
	if err != nil {
		return nil, fmt.Errorf("reuseport socket array: %w", err)
	}
	g.live, err = ebpf.NewMap(&ebpf.MapSpec{Name: "hcp_live", Type: ebpf.Array, KeySize: 4, ValueSize: 4 * liveWords, MaxEntries: 3})
	if err != nil {
		g.closeObjects()
		return nil, fmt.Errorf("live map: %w", err)
	}
	spec := &ebpf.ProgramSpec{
		Name:         "hcp_steer",
		Type:         ebpf.SkReuseport,
		AttachType:   ebpf.AttachSkReuseportSelectOrMigrate,
		License:      "Dual BSD/GPL",
		Instructions: program(g.sockets.FD(), g.live.FD()),
	}
	g.prog, err = ebpf.NewProgram(spec)
	if err == nil {
		g.migrate = true
	} else if !errors.Is(err, unix.EPERM) {
		spec.AttachType = ebpf.AttachSkReuseportSelect // before Linux 5.14
		g.prog, err = ebpf.NewProgram(spec)
	}
	if err != nil {
		g.closeObjects()
		return nil, fmt.Errorf("SK_REUSEPORT program: %w", err)
	}
	return g, nil
}

// program is the SK_REUSEPORT program: pick live[hash % n] in the socket array, else let the
// kernel pick.
func program(socketsFD, liveFD int) asm.Instructions {
	const (
		ctx  = asm.R6 // struct sk_reuseport_md *
		hash = asm.R7
		// offsets in struct sk_reuseport_md
		mdHash = 32
	)
	return asm.Instructions{
		asm.Mov.Reg(ctx, asm.R1),
		asm.LoadMem(hash, ctx, mdHash, asm.Word),
		// sel = live[2][0]: which of the two lists is in use
		asm.StoreImm(asm.RFP, -4, 2, asm.Word),
		asm.LoadMapPtr(asm.R1, liveFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R2, asm.R0, 0, asm.Word),
		asm.And.Imm(asm.R2, 1),
		// list = live[sel]; n = list[0]
		asm.StoreMem(asm.RFP, -4, asm.R2, asm.Word),
		asm.LoadMapPtr(asm.R1, liveFD),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "pass"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Word),
		asm.JEq.Imm(asm.R1, 0, "pass"),
		asm.JGT.Imm(asm.R1, slotCap, "pass"),
		// key = list[1 + hash%n] (the mask only tells the verifier what n <= slotCap implies)
		asm.Mod.Reg32(hash, asm.R1),
		asm.And.Imm(hash, slotCap-1),
		asm.LSh.Imm(hash, 2),
		asm.Add.Reg(asm.R0, hash),
		asm.LoadMem(asm.R2, asm.R0, 4, asm.Word),
		asm.StoreMem(asm.RFP, -8, asm.R2, asm.Word),
		// bpf_sk_select_reuseport(ctx, sockets, &key, 0); its result does not matter
		asm.Mov.Reg(asm.R1, ctx),
		asm.LoadMapPtr(asm.R2, socketsFD),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -8),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkSelectReuseport.Call(),
		asm.Mov.Imm(asm.R0, skPass).WithSymbol("pass"),
		asm.Return(),
	}
}

// newGroup makes the BPF objects of addr's group and its first socket, with the program attached.
func newGroup(addr string) (*group, error) {
	g, err := newGroupObjects(addr)
	if err != nil {
		return nil, err
	}
	f, err := listenSocket(addr, true)
	if err != nil {
		g.closeObjects()
		return nil, err
	}
	if sa, err := unix.Getsockname(int(f.Fd())); err == nil {
		g.port = sockaddrPort(sa) // the other sockets bind the same port, also when addr asked for port 0
	}
	// The group exists once the socket listens; attaching earlier would give it a private group.
	if err := unix.SetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_EBPF, g.prog.FD()); err != nil {
		f.Close()
		g.closeObjects()
		return nil, fmt.Errorf("attach SK_REUSEPORT program to %s: %w", addr, err)
	}
	g.files[spare] = f
	if err := g.publish(nil); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

// socket returns the socket of worker index idx, making it (or handing over the spare) if it
// has none, and registers it in the socket array.
func (g *group) socket(idx int) (*os.File, error) {
	if idx < 0 || idx >= slotCap {
		return nil, fmt.Errorf("worker index %d out of range", idx)
	}
	if f := g.files[idx]; f != nil {
		return f, nil
	}
	f := g.files[spare]
	if f != nil {
		delete(g.files, spare)
	} else {
		var err error
		if f, err = listenSocket(g.bindAddr(), true); err != nil {
			return nil, err
		}
	}
	if err := g.sockets.Update(uint32(idx), uint64(f.Fd()), ebpf.UpdateAny); err != nil {
		f.Close()
		return nil, fmt.Errorf("register socket of worker %d for %s: %w", idx, g.addr, err)
	}
	g.files[idx] = f
	return f, nil
}

// publish makes the indices of live that have a socket the group's live list.
func (g *group) publish(live map[int]bool) error {
	var list [liveWords]uint32
	var idx []int
	for i := range live {
		if live[i] && g.files[i] != nil {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	list[0] = uint32(len(idx))
	for j, i := range idx {
		list[1+j] = uint32(i)
	}
	next := g.cur ^ 1
	if err := g.live.Update(next, list, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("publish live workers for %s: %w", g.addr, err)
	}
	var sel [liveWords]uint32
	sel[0] = next
	if err := g.live.Update(uint32(2), sel, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("publish live workers for %s: %w", g.addr, err)
	}
	g.cur = next
	return nil
}

// liveCount is the length of the published live list.
func (g *group) liveCount(live map[int]bool) int {
	n := 0
	for i := range live {
		if live[i] && g.files[i] != nil {
			n++
		}
	}
	return n
}

func (g *group) closeObjects() {
	if g.prog != nil {
		g.prog.Close()
	}
	if g.live != nil {
		g.live.Close()
	}
	if g.sockets != nil {
		g.sockets.Close()
	}
}

// close closes every socket of the group and its BPF objects.
func (g *group) close() {
	for i, f := range g.files {
		f.Close()
		delete(g.files, i)
	}
	g.closeObjects()
}

// open makes sure addr has a group (bpf mode only).
func (s *steering) open(addr string) error {
	if s.groups[addr] != nil {
		return nil
	}
	g, err := newGroup(addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	s.groups[addr] = g
	return nil
}

// closeExcept closes the groups of the addresses that keep does not configure (all when keep is
// nil).
func (s *steering) closeExcept(keep *config.Config) {
	if !s.bpf() {
		return
	}
	want := map[string]bool{}
	if keep != nil {
		for _, sv := range keep.Servers {
			want[sv.Listen] = true
		}
	}
	for a, g := range s.groups {
		if !want[a] {
			g.close()
			delete(s.groups, a)
		}
	}
}

// socket returns worker idx's socket for addr and marks idx as held by a running worker.
func (s *steering) socket(addr string, idx int) (*os.File, error) {
	g := s.groups[addr]
	if g == nil {
		return nil, fmt.Errorf("no listener group for %s", addr)
	}
	f, err := g.socket(idx)
	if err == nil {
		s.owner[idx] = true
	}
	return f, err
}

// ready adds worker idx to the live lists.
func (s *steering) ready(idx int) {
	if !s.bpf() {
		return
	}
	s.live[idx] = true
	s.update()
}

// drop takes worker idx out of the live lists at once: it is draining, stopping or gone.
func (s *steering) drop(idx int) {
	if !s.bpf() {
		return
	}
	delete(s.live, idx)
	delete(s.owner, idx)
	s.update()
}

// update publishes the live lists, then closes the sockets that no running worker holds where
// the kernel migrates their queues to a live socket of the same group.
func (s *steering) update() {
	for _, g := range s.groups {
		if err := g.publish(s.live); err != nil {
			s.log.Error("listener steering", "err", err)
		}
	}
	if !s.migrate {
		return
	}
	for _, g := range s.groups {
		if g.liveCount(s.live) == 0 {
			continue
		}
		for i, f := range g.files {
			if i != spare && !s.owner[i] && !s.live[i] {
				f.Close() // the last copy once the worker closed its own: its queue migrates
				delete(g.files, i)
			}
		}
	}
}

// listenerFor is the socket a worker at index idx gets for the [[server]] address addr.
func (m *Master) listenerFor(addr string, idx int) (*os.File, error) {
	if m.steer.bpf() {
		return m.steer.socket(addr, idx)
	}
	if f := m.listeners[addr]; f != nil {
		return f, nil
	}
	return nil, fmt.Errorf("no listener for %s", addr)
}

// bindAddr is the address the group's further sockets bind: addr with the group's port.
func (g *group) bindAddr() string {
	host, _, err := net.SplitHostPort(g.addr)
	if err != nil || g.port == 0 {
		return g.addr
	}
	return net.JoinHostPort(host, strconv.Itoa(g.port))
}

func sockaddrPort(sa unix.Sockaddr) int {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return sa.Port
	case *unix.SockaddrInet6:
		return sa.Port
	}
	return 0
}
