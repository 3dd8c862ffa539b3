package bench

import (
	"os"
	"runtime"
	"runtime/debug"
	"syscall"
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
// would report at least this test process's own peak.
func resetPeakRSS() {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}
