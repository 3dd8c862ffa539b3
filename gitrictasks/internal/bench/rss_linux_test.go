package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// peakRSSKiB is the peak resident set size of an exited process in KiB, as
// wait4 reports it: the largest of the process and the descendants it
// waited for. ok is false when it is unknown.
func peakRSSKiB(ps *os.ProcessState) (kib int64, ok bool) {
	ru, ok := ps.SysUsage().(*syscall.Rusage)
	if !ok || ru == nil {
		return 0, false
	}
	return ru.Maxrss, true // KiB on Linux
}

// resetPeakRSS lowers this process's peak RSS to its current RSS, after
// giving the heap back to the system: a child that os/exec starts shares
// this process's memory until it execs, and Linux counts the peak of that
// memory in the child's ru_maxrss, so that without a reset every child
// would report at least this test process's own peak. Even then it reports
// at least this process's current RSS (about 18 MiB while TestCompareCode
// runs): measureRSS avoids that.
func resetPeakRSS() {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// launcherSource is a program that runs a command (its second argument on)
// and writes the command's ru_maxrss to the file its first argument names.
// A process that os/exec starts shares its parent's memory until it execs
// (vfork), and Linux counts that memory in the child's ru_maxrss: started
// from the bench process, every command would report at least the bench
// process's RSS. Started from this program, whose own RSS is about 2 MiB,
// the figure is the command's own. The command dies with the launcher.
const launcherSource = `package main

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

func main() {
	cmd := exec.Command(os.Args[2], os.Args[3:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err := cmd.Run()
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			os.WriteFile(os.Args[1], []byte(strconv.FormatInt(ru.Maxrss, 10)), 0o644)
		}
	}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		os.Exit(max(exit.ExitCode(), 1))
	case err != nil:
		os.Stderr.WriteString("rss launcher: " + err.Error() + "\n")
		os.Exit(127)
	}
}
`

// launcher is the compiled launcherSource, built once per test process.
var launcher struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// measureRSS makes cmd, not started yet, run through the launcher, and
// returns what tells, once cmd has run, the peak RSS in KiB of the
// command and the descendants it waited for (ok false when unknown).
func measureRSS(t *testing.T, cmd *exec.Cmd) func() (kib int64, ok bool) {
	t.Helper()
	launcher.once.Do(func() {
		launcher.dir, launcher.err = os.MkdirTemp("", "gitric-bench-rss-")
		if launcher.err != nil {
			return
		}
		src := filepath.Join(launcher.dir, "src")
		if launcher.err = os.MkdirAll(src, 0o755); launcher.err != nil {
			return
		}
		os.WriteFile(filepath.Join(src, "go.mod"), []byte("module rsslauncher\n\ngo 1.21\n"), 0o644)
		os.WriteFile(filepath.Join(src, "main.go"), []byte(launcherSource), 0o644)
		launcher.path = filepath.Join(launcher.dir, "rss-launcher")
		build := exec.Command("go", "build", "-trimpath", "-o", launcher.path, ".")
		build.Dir = src
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := build.CombinedOutput(); err != nil {
			launcher.err = fmt.Errorf("go build: %w: %s", err, strings.TrimSpace(string(out)))
		}
	})
	if launcher.err != nil {
		t.Fatalf("rss launcher: %v", launcher.err)
	}
	out := filepath.Join(t.TempDir(), "maxrss")
	cmd.Args = append([]string{launcher.path, out, cmd.Path}, cmd.Args[1:]...)
	cmd.Path = launcher.path
	return func() (int64, bool) {
		data, err := os.ReadFile(out)
		if err != nil {
			return 0, false
		}
		n, err := strconv.ParseInt(string(data), 10, 64)
		return n, err == nil
	}
}

// removeLauncher deletes the launcher's build directory.
func removeLauncher() {
	if launcher.dir != "" {
		os.RemoveAll(launcher.dir)
	}
}
