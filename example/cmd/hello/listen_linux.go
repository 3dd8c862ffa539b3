package main

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"unsafe"
)

// soAttachReuseportCBPF is SO_ATTACH_REUSEPORT_CBPF (Linux 4.5+), which the
// syscall package does not name (nor SO_REUSEPORT: see reuseport_*.go).
const soAttachReuseportCBPF = 51

// newestSocket is a classic BPF program for a SO_REUSEPORT group: "return
// 1", the index of the second socket. With two sockets (the old version's,
// then the new one's) every new connection goes to the new one; with one,
// the index is out of range and the kernel picks by hash, i.e. that one.
var newestSocket = []syscall.SockFilter{{Code: 0x06 /* BPF_RET|BPF_K */, K: 1}}

// listen listens on addr with SO_REUSEPORT, so that another process may
// listen on the same port at the same time.
//
// With steer, the group of sockets on the port gets newestSocket. Linux
// takes the program only from a socket that is not bound yet, which then
// founds a group of its own: that works for the first process on the port
// (bind succeeds), not for the next ones (EADDRINUSE), which join the
// existing group plainly and so share its program. The group, and its
// program, live as long as one socket listens: through every overlapping
// deploy. (On a listening socket Linux refuses the option.)
func listen(ctx context.Context, addr string, steer bool) (net.Listener, error) {
	if steer {
		ln, err := listenWith(ctx, addr, true)
		if !errors.Is(err, syscall.EADDRINUSE) {
			return ln, err
		}
		// Another process listens on the port: join its group.
	}
	return listenWith(ctx, addr, false)
}

func listenWith(ctx context.Context, addr string, steer bool) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = os.NewSyscallError("setsockopt SO_REUSEPORT", syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, soReuseport, 1))
			if serr == nil && steer {
				serr = os.NewSyscallError("setsockopt SO_ATTACH_REUSEPORT_CBPF", attachSteering(fd))
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(ctx, "tcp", addr)
}

// attachSteering attaches newestSocket to the socket fd.
func attachSteering(fd uintptr) error {
	prog := syscall.SockFprog{Len: uint16(len(newestSocket)), Filter: &newestSocket[0]}
	_, _, errno := syscall.Syscall6(syscall.SYS_SETSOCKOPT, fd, syscall.SOL_SOCKET, soAttachReuseportCBPF,
		uintptr(unsafe.Pointer(&prog)), unsafe.Sizeof(prog), 0)
	if errno != 0 {
		return errno
	}
	return nil
}
