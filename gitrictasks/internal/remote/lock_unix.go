//go:build unix

package remote

import (
	"fmt"
	"os"
	"syscall"
)

// lockFile takes an exclusive advisory lock on f (flock), which other
// gitric processes recording host keys honour.
func lockFile(f *os.File) (unlock func(), err error) {
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return func() { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }, nil
}

// checkConfigPerm refuses an ssh_config file that someone other than its
// owner (root or the current user) could write, as ssh does ("Bad owner
// or permissions").
func checkConfigPerm(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	uid := uint32(os.Getuid())
	if (st.Uid != 0 && st.Uid != uid) || fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("bad owner or permissions on %s: it must belong to you and not be writable by others (chmod 600 %s), as ssh requires", path, path)
	}
	return nil
}
