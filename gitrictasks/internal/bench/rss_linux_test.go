package bench

import (
	"os"
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
