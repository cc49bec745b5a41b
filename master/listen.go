package master

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// listen opens a TCP listening socket for addr as a blocking descriptor wrapped in an os.File.
//
// It is made by hand rather than with net.Listen because the socket's O_NONBLOCK flag belongs to
// the open file description that the master and every worker share: os/exec hands descriptors to
// children through (*os.File).Fd, which switches a pollable file to blocking mode, and that would
// switch every worker's listener with it. A file that Go never registered with its poller is left
// alone. Each worker's net.FileListener sets non-blocking mode once; the master never touches it.
func listen(addr string) (*os.File, error) { return listenSocket(addr, false) }

// listenSocket is listen, with SO_REUSEPORT set when reuseport is true (steering.go).
func listenSocket(addr string, reuseport bool) (*os.File, error) {
	ta, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, err
	}
	family := unix.AF_INET
	var sa unix.Sockaddr
	if ip4 := ta.IP.To4(); ip4 != nil || ta.IP == nil {
		s := &unix.SockaddrInet4{Port: ta.Port}
		if ip4 != nil {
			copy(s.Addr[:], ip4)
		}
		sa = s
	} else {
		family = unix.AF_INET6
		s := &unix.SockaddrInet6{Port: ta.Port}
		copy(s.Addr[:], ta.IP.To16())
		sa = s
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if reuseport {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("SO_REUSEPORT: %w", err)
		}
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind %s: %w", addr, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	return os.NewFile(uintptr(fd), "listen:"+addr), nil
}

// pipe returns a blocking pipe, both ends close-on-exec (see listen for why blocking).
func pipe() (r, w *os.File, err error) {
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(p[0]), "lifeline-r"), os.NewFile(uintptr(p[1]), "lifeline-w"), nil
}

// socketpair returns a connected pair of unix stream sockets: the master's end and the worker's.
func socketpair() (mine, theirs *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	return os.NewFile(uintptr(fds[0]), "control"), os.NewFile(uintptr(fds[1]), "control"), nil
}

// memfile returns a sealed-size anonymous file holding b, positioned at its start.
func memfile(name string, b []byte) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(0, 0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
