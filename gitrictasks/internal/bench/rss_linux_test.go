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

// launcherSource is a program that runs a command and writes to a file
// the command's ru_maxrss and, with -tree, the peak of its process tree:
// "launcher OUT [-tree] COMMAND ARGS...".
//
// ru_maxrss is exact, but for a process tree it is the largest single
// process (wait4 folds the descendants' peaks with max, not a sum). With
// -tree the launcher also samples the tree every millisecond while the
// command runs: the sum of the resident sets (statm) of the command and
// all of its descendants alive at that moment, as ps would add them up.
// Sampling misses what lives less than a sample apart, so the figure is at
// most the tree's true peak. OUT then holds "MAXRSS TREE" in KiB.
//
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
	"strings"
	"syscall"
	"time"
)

// resident is the resident set of process pid in KiB, 0 when it is gone.
func resident(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.ParseInt(f[1], 10, 64)
	return n * int64(os.Getpagesize()) / 1024
}

// tree is the summed resident set of pid and its descendants, in KiB.
func tree(pid string) int64 {
	sum := resident(pid)
	kids, _ := os.ReadFile("/proc/" + pid + "/task/" + pid + "/children")
	for _, k := range strings.Fields(string(kids)) {
		sum += tree(k)
	}
	return sum
}

func main() {
	out, args := os.Args[1], os.Args[2:]
	poll := len(args) > 0 && args[0] == "-tree"
	if poll {
		args = args[1:]
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var peak int64
	err := cmd.Start()
	if err == nil {
		done, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			pid := strconv.Itoa(cmd.Process.Pid)
			for poll {
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
				peak = max(peak, tree(pid))
			}
		}()
		err = cmd.Wait()
		close(done)
		<-stopped
	}
	if cmd.ProcessState != nil {
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			os.WriteFile(out, []byte(strconv.FormatInt(ru.Maxrss, 10)+" "+strconv.FormatInt(peak, 10)), 0o644)
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
// returns what tells, once cmd has run, its peak RSS in KiB: the largest
// of the command and the descendants it waited for (ru_maxrss), and with
// tree the sampled peak of the whole process tree, or 0 (ok false when
// unknown).
func measureRSS(t *testing.T, cmd *exec.Cmd, tree bool) func() (kib, treeKiB int64, ok bool) {
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
	args := []string{launcher.path, out}
	if tree {
		args = append(args, "-tree")
	}
	cmd.Args = append(append(args, cmd.Path), cmd.Args[1:]...)
	cmd.Path = launcher.path
	return func() (int64, int64, bool) {
		data, err := os.ReadFile(out)
		if err != nil {
			return 0, 0, false
		}
		a, b, _ := strings.Cut(string(data), " ")
		n, err := strconv.ParseInt(a, 10, 64)
		m, err2 := strconv.ParseInt(b, 10, 64)
		return n, m, err == nil && err2 == nil
	}
}

// removeLauncher deletes the launcher's build directory.
func removeLauncher() {
	if launcher.dir != "" {
		os.RemoveAll(launcher.dir)
	}
}
