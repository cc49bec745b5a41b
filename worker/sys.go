package worker

import "golang.org/x/sys/unix"

func setCloexec(fd int) { unix.CloseOnExec(fd) }
