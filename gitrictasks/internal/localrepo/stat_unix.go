//go:build linux || openbsd || dragonfly || solaris || illumos || darwin || freebsd || netbsd

package localrepo

import (
	"io/fs"
	"syscall"
)

// sysStatOf reads fi's ctime, inode, uid and gid; ok is false when its
// Sys() is not a stat structure.
func sysStatOf(fi fs.FileInfo) (x sysStat, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return x, false
	}
	c := ctime(st)
	return sysStat{uint32(c.Sec), uint32(c.Nsec), uint32(st.Ino), st.Uid, st.Gid}, true
}
