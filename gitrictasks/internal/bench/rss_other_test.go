//go:build !linux

package bench

import "os"

// peakRSSKiB is unknown off Linux: other systems report ru_maxrss in other
// units, or not at all.
func peakRSSKiB(*os.ProcessState) (kib int64, ok bool) { return 0, false }

// resetPeakRSS does nothing off Linux.
func resetPeakRSS() {}
