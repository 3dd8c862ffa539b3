//go:build unix

package deploy_test

import (
	"os"
	"syscall"
)

type syscallStat struct{ uid uint32 }

func statOwner(path string, st *syscallStat) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st.uid = fi.Sys().(*syscall.Stat_t).Uid
	return nil
}
