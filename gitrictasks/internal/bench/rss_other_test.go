//go:build !linux

package bench

import (
	"os"
	"os/exec"
	"testing"
)

// peakRSSKiB is unknown off Linux: other systems report ru_maxrss in other
// units, or not at all.
func peakRSSKiB(*os.ProcessState) (kib int64, ok bool) { return 0, false }

// resetPeakRSS does nothing off Linux.
func resetPeakRSS() {}

// measureRSS leaves cmd as it is off Linux: the peak RSS is unknown.
func measureRSS(*testing.T, *exec.Cmd, bool) func() (int64, int64, bool) {
	return func() (int64, int64, bool) { return 0, 0, false }
}

func removeLauncher() {}
