//go:build !(linux || freebsd || openbsd || dragonfly || solaris || illumos || darwin || netbsd)

package localrepo

import "io/fs"

// sysStatOf has no ctime, inode, uid or gid to read here (Windows, Plan 9):
// the dirty check compares size, mtime and mode alone.
func sysStatOf(fs.FileInfo) (sysStat, bool) { return sysStat{}, false }
