package gitrictasks

import (
	"errors"
	"fmt"
	"testing"

	"github.com/magefile/mage/mg"

	"github.com/gitric/gitric/gitrictasks/deploy"
)

func TestExitStatus(t *testing.T) {
	host := func(err error) error { return &deploy.HostError{Host: "web1", Step: "seed", Err: err} }
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"dirty", &deploy.DirtyError{Paths: []string{"x"}}, ExitRefused},
		{"non-fast-forward", host(&deploy.NonFastForwardError{}), ExitRefused},
		{"edits", &deploy.ServerEditsError{}, ExitRefused},
		{"untracked", &deploy.UntrackedError{}, ExitRefused},
		{"shallow", host(fmt.Errorf("%w: shallow", deploy.ErrIncompleteClone)), ExitRefused},
		{"foreign repository", host(&deploy.ScriptError{Code: "foreign"}), ExitRefused},
		{"misplaced target", fmt.Errorf("%w: allowDirty after deploy", ErrOrder), ExitRefused},
		{"locked", &deploy.LockedError{}, ExitLocked},
		{"unreachable", host(fmt.Errorf("%w: refused", deploy.ErrUnreachable)), ExitUnreachable},
		{"unknown host key", host(deploy.ErrHostKeyUnknown), ExitUnreachable},
		{"rolled back", host(fmt.Errorf("start failed; %w", deploy.ErrRolledBack)), ExitRolledBack},
		{"rolled back, as the cutover says it", host(fmt.Errorf("%w; %w to v1", errors.New("the start command failed"), deploy.ErrRolledBack)), ExitRolledBack},
		{"other", errors.New("disk on fire"), 1},
		{"status: a cutover cut short", &deploy.HostError{Host: "web1", Step: "status", Err: fmt.Errorf("%w (to v1)", deploy.ErrCutShort)}, 1},
		{"status: cut short beats unreachable", errors.Join(host(deploy.ErrUnreachable), host(deploy.ErrCutShort)), 1},
		{"locked and refused: locked", errors.Join(&deploy.LockedError{}, &deploy.ServerEditsError{}), ExitLocked},
		{"rolled back beats unreachable", errors.Join(host(deploy.ErrUnreachable), host(deploy.ErrRolledBack)), ExitRolledBack},
		{"a failure that stayed beats a rollback", errors.Join(host(deploy.ErrRolledBack), host(deploy.ErrMixed)), 1},
		{"interrupted, nested", fmt.Errorf("%w: %w", deploy.ErrInterrupted, errors.Join(host(deploy.ErrLocked))), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := withExitStatus(tt.err)
			if got := mg.ExitStatus(err); got != tt.want {
				t.Errorf("exit status %d, want %d (%v)", got, tt.want, tt.err)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("the status hides the error")
			}
		})
	}
	if withExitStatus(nil) != nil {
		t.Error("nil error got a status")
	}
}
