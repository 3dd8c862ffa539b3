//go:build darwin || freebsd || netbsd

package localrepo

import "syscall"

// ctime is a stat structure's change time (Ctimespec here).
func ctime(st *syscall.Stat_t) syscall.Timespec { return st.Ctimespec }
