//go:build unix

package main

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive flock on path, which it creates if needed,
// and returns what releases it. flock locks belong to the open file, so
// they order both processes and goroutines.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil // closing releases the lock
}
