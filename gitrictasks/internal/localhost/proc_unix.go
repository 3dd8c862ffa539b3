//go:build unix

package localhost

import (
	"fmt"
	"os"
	"syscall"
)

const supported = true

var (
	sigTerm os.Signal = syscall.SIGTERM
	sigKill os.Signal = syscall.SIGKILL
)

// procAttr puts the command into a new process group whose id is its pid.
func procAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// killGroup sends sig to every process in process group pgid.
func killGroup(pgid int, sig os.Signal) error {
	s, ok := sig.(syscall.Signal)
	if !ok {
		return fmt.Errorf("unsupported signal %v", sig)
	}
	if err := syscall.Kill(-pgid, s); err != nil {
		return fmt.Errorf("kill process group %d: %w", pgid, err)
	}
	return nil
}

// rfcSignals are the signal names of RFC 4254 section 6.10.
var rfcSignals = map[syscall.Signal]string{
	syscall.SIGABRT: "ABRT",
	syscall.SIGALRM: "ALRM",
	syscall.SIGFPE:  "FPE",
	syscall.SIGHUP:  "HUP",
	syscall.SIGILL:  "ILL",
	syscall.SIGINT:  "INT",
	syscall.SIGKILL: "KILL",
	syscall.SIGPIPE: "PIPE",
	syscall.SIGQUIT: "QUIT",
	syscall.SIGSEGV: "SEGV",
	syscall.SIGTERM: "TERM",
	syscall.SIGUSR1: "USR1",
	syscall.SIGUSR2: "USR2",
}

// signalByName maps an RFC 4254 signal name ("TERM") to the signal.
func signalByName(name string) (os.Signal, bool) {
	for sig, n := range rfcSignals {
		if n == name {
			return sig, true
		}
	}
	return nil, false
}

// exitInfo describes how a command ended: its exit status, or, if signaled,
// the RFC 4254 name of the signal (OpenSSH's "SIG@openssh.com" for others).
func exitInfo(ps *os.ProcessState) (status int, signal string, core, signaled bool) {
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() {
		return ps.ExitCode(), "", false, false
	}
	name, ok := rfcSignals[ws.Signal()]
	if !ok {
		name = "SIG@openssh.com"
	}
	return -1, name, ws.CoreDump(), true
}
