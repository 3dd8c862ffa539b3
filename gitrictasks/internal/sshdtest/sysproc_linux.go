//go:build linux

package sshdtest

import "syscall"

// sysProcAttr makes the kernel send sshd SIGTERM if the test binary dies
// without running its cleanups (e.g. killed by a timeout), so no listening
// sshd outlives the test run.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
