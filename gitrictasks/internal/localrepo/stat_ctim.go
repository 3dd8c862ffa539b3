//go:build linux || openbsd || dragonfly || solaris || illumos

package localrepo

import "syscall"

// ctime is a stat structure's change time (Ctim here).
func ctime(st *syscall.Stat_t) syscall.Timespec { return st.Ctim }
