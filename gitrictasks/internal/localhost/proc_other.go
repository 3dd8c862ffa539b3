//go:build !unix

package localhost

import (
	"errors"
	"os"
	"syscall"
)

const supported = false

var (
	sigTerm os.Signal = os.Interrupt
	sigKill os.Signal = os.Kill
)

func procAttr() *syscall.SysProcAttr { return nil }

func killGroup(int, os.Signal) error { return errors.ErrUnsupported }

func signalByName(string) (os.Signal, bool) { return nil, false }

func exitInfo(ps *os.ProcessState) (status int, signal string, core, signaled bool) {
	return ps.ExitCode(), "", false, false
}
