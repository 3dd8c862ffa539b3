package gitrictasks

import (
	"errors"

	"github.com/gitric/gitric/gitrictasks/deploy"
)

// Exit statuses of a call, for CI pipelines to branch on. mage exits with
// them (an error's ExitStatus); anything not listed exits 1.
const (
	// ExitRefused: refused before anything changed on any host (a dirty
	// working copy, a push that would lose history, edits or untracked
	// files on a host that the deploy would lose, a shallow clone, a host
	// listed twice, a repository gitric did not create).
	ExitRefused = 10
	// ExitLocked: another deploy holds a host's lock; nothing changed.
	ExitLocked = 11
	// ExitRolledBack: a host's cutover failed and the host was put back on
	// its previous commit; later hosts were not touched.
	ExitRolledBack = 12
	// ExitUnreachable: a host could not be reached or authenticated;
	// nothing changed.
	ExitUnreachable = 13
)

// exitError gives a call's error the exit status that classifies it.
type exitError struct {
	err    error
	status int
}

func (e *exitError) Error() string   { return e.err.Error() }
func (e *exitError) Unwrap() error   { return e.err }
func (e *exitError) ExitStatus() int { return e.status }

// withExitStatus classifies err. A deploy fails on many hosts at once; the
// status is that of its most serious failure: a failure that left a host
// changed (1) before a rollback, before a connection failure, before a
// lock, before a refusal.
func withExitStatus(err error) error {
	if err == nil {
		return nil
	}
	status := 0
	for _, leaf := range leaves(err) {
		s := classify(leaf)
		if rank(s) > rank(status) {
			status = s
		}
	}
	if status == 0 {
		status = 1
	}
	return &exitError{err: err, status: status}
}

func rank(status int) int {
	switch status {
	case 0:
		return 0
	case ExitRefused:
		return 1
	case ExitLocked:
		return 2
	case ExitUnreachable:
		return 3
	case ExitRolledBack:
		return 4
	default:
		return 5
	}
}

func classify(err error) int {
	var se *deploy.ScriptError
	switch {
	case errors.Is(err, deploy.ErrRolledBack):
		return ExitRolledBack
	case errors.Is(err, deploy.ErrLocked):
		return ExitLocked
	case errors.Is(err, deploy.ErrUnreachable), errors.Is(err, deploy.ErrAuth),
		errors.Is(err, deploy.ErrHostKeyUnknown), errors.Is(err, deploy.ErrHostKeyChanged), errors.Is(err, deploy.ErrHostKeyRevoked):
		return ExitUnreachable
	case errors.Is(err, deploy.ErrDirty), errors.Is(err, deploy.ErrNonFastForward), errors.Is(err, deploy.ErrServerEdits),
		errors.Is(err, deploy.ErrUntracked), errors.Is(err, deploy.ErrIncompleteClone), errors.Is(err, deploy.ErrDuplicateHost),
		errors.Is(err, deploy.ErrAuditMismatch), errors.Is(err, deploy.ErrNoPrevious), errors.Is(err, ErrOrder), errors.Is(err, ErrNotApplicable), errors.Is(err, ErrNoStage):
		return ExitRefused
	case errors.As(err, &se) && (se.Code == "notempty" || se.Code == "foreign"):
		return ExitRefused
	case errors.Is(err, deploy.ErrInterrupted):
		return 1
	}
	return 1
}

// leaves are the errors a joined error is made of (errors.Join nests).
// One host's error is one leaf, whatever it wraps: a host rolled back
// after its start failed is rolled back, not a failure left in place.
func leaves(err error) []error {
	if _, ok := err.(*deploy.HostError); ok {
		return []error{err}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, leaves(e)...)
		}
		return out
	}
	if u := errors.Unwrap(err); u != nil {
		if _, ok := u.(interface{ Unwrap() []error }); ok {
			return leaves(u)
		}
	}
	return []error{err}
}
