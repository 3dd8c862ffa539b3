package deploy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/gitric/gitric/gitrictasks/internal/hostscript"
	"github.com/gitric/gitric/gitrictasks/internal/remote"
)

var (
	// ErrDirty means the local working copy has uncommitted changes.
	ErrDirty = errors.New("working copy is dirty")
	// ErrNonFastForward means a host is on a commit that the deployed
	// commit does not contain: deploying would leave history behind.
	ErrNonFastForward = errors.New("non-fast-forward push")
	// ErrNotDeployed means the deploy stopped before cutting any host over.
	ErrNotDeployed = errors.New("nothing was deployed")
	// ErrLocked means another deploy holds the stage's lock on a host.
	ErrLocked = errors.New("locked")
	// ErrNoPrevious means a host's audit log names no commit to roll back to.
	ErrNoPrevious = errors.New("no previous deploy to roll back to")
	// ErrInterrupted means the deploy was cancelled (Ctrl-C) and stopped
	// after finishing the host steps under way.
	ErrInterrupted = errors.New("interrupted")
)

// LockedError is a host whose deploy lock another deploy holds.
type LockedError struct {
	Host  string
	Owner string // who, since when, which commit
	Hint  string // how to remove a stale lock
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("%s: %v by %s; nothing was changed. If that deploy is gone for good, remove the stale lock with: %s", e.Host, ErrLocked, e.Owner, e.Hint)
}

func (e *LockedError) Unwrap() error { return ErrLocked }

// DirtyError lists what makes the working copy dirty.
type DirtyError struct {
	Root  string
	Paths []string
	Hint  string
}

func (e *DirtyError) Error() string {
	shown := e.Paths
	more := ""
	if len(shown) > 5 {
		more = fmt.Sprintf(" and %d more", len(shown)-5)
		shown = shown[:5]
	}
	return fmt.Sprintf("Working copy is dirty (%s%s in %s). To deploy the committed revision anyway, leaving these out: %s",
		strings.Join(shown, ", "), more, e.Root, e.Hint)
}

func (e *DirtyError) Unwrap() error { return ErrDirty }

// NonFastForwardError is a refused push that would lose history on a host.
type NonFastForwardError struct {
	Host    string
	Commit  string // what was to be deployed
	Current string // what the host is on
	Hint    string
}

func (e *NonFastForwardError) Error() string {
	return fmt.Sprintf("%s is a non-fast-forward push to %s: the host is on %s, which it does not contain. "+
		"Nothing was pushed and the host was left as it was, so no history is lost. "+
		"If you are doing this intentionally (a rollback, an amended commit), force it: %s",
		e.Commit, e.Host, e.Current, e.Hint)
}

func (e *NonFastForwardError) Unwrap() error { return ErrNonFastForward }

// HostError is a failure on one host, in one step of the deploy.
type HostError struct {
	Host string
	Step string // connect, prepare, seed, stop, reset, start
	Err  error
}

func (e *HostError) Error() string {
	msg := e.Err.Error()
	if strings.HasPrefix(msg, e.Host+":") || strings.HasPrefix(msg, e.Host+" ") {
		return msg
	}
	return fmt.Sprintf("%s: %s: %s", e.Host, e.Step, msg)
}

func (e *HostError) Unwrap() error { return e.Err }

// ErrServerEdits means a host's working copy was edited on the host.
var ErrServerEdits = errors.New("working copy edited on the host")

// ServerEditsError is a host refused because its working copy has local
// modifications that the reset would silently discard.
type ServerEditsError struct {
	Host  string
	Paths []string // git status --porcelain lines, at most 20
	Hint  string
	// CutShort is set when the host's last cutover, to this commit, was
	// killed halfway: then the "edits" are most likely what it left, the
	// working copy between two commits.
	CutShort string
}

func (e *ServerEditsError) Error() string {
	if e.CutShort != "" {
		return fmt.Sprintf("%s: %v: %s. The last cutover on this host, to %s, was cut short (killed): these are most likely the files it left between two commits, and the service may be stopped. "+
			"Check them, then finish it: %s",
			e.Host, ErrServerEdits, strings.Join(e.Paths, ", "), shortHex(e.CutShort), e.Hint)
	}
	return fmt.Sprintf("%s: %v: %s. The deploy would discard these edits, so the host was left as it was. "+
		"Save them into the repository first, or discard them: %s",
		e.Host, ErrServerEdits, strings.Join(e.Paths, ", "), e.Hint)
}

func (e *ServerEditsError) Unwrap() error { return ErrServerEdits }

// ErrUntracked means a host has untracked files that the new commit would
// overwrite or delete.
var ErrUntracked = errors.New("untracked files on the host would be lost")

// UntrackedError is a host refused because the switch would overwrite or
// delete files that are not in its repository (a server-only config, an
// uploads directory). Ignored files are not protected, as in git.
type UntrackedError struct {
	Host  string
	Paths []string // at most 50
	Hint  string
}

func (e *UntrackedError) Error() string {
	return fmt.Sprintf("%s: %v: %s. The switch to the new commit would lose these files (overwritten, deleted, or left behind with the old copy), which are in no commit, so the host was left as it was. "+
		"Move them out of the way (or commit them, or ignore them in .gitignore if they are expendable), or overwrite them: %s",
		e.Host, ErrUntracked, strings.Join(e.Paths, ", "), e.Hint)
}

func (e *UntrackedError) Unwrap() error { return ErrUntracked }

// Errors of the connection to a host, for errors.Is.
var (
	// ErrHostKeyUnknown means known_hosts does not list the host's key.
	ErrHostKeyUnknown = remote.ErrHostKeyUnknown
	// ErrHostKeyChanged means the host's key differs from known_hosts'.
	ErrHostKeyChanged = remote.ErrHostKeyChanged
	// ErrHostKeyRevoked means known_hosts marks the host's key @revoked.
	ErrHostKeyRevoked = remote.ErrHostKeyRevoked
	// ErrAuth means the host accepted none of the keys offered.
	ErrAuth = remote.ErrAuth
	// ErrUnreachable means no SSH connection could be made.
	ErrUnreachable = remote.ErrUnreachable
	// ErrConnectionLost means the connection died during the operation.
	ErrConnectionLost = remote.ErrConnectionLost
)

// ErrScript matches every refusal of the host script (errors.Is); the
// *ScriptError says which (errors.As).
var ErrScript = hostscript.ErrScript

// ScriptError is the host script's own report of why it stopped: its Code
// (nogit, path, notempty, foreign, init, proto) and a message that says
// what, where and how to fix it.
type ScriptError = hostscript.ScriptError

// ErrRolledBack means a host's cutover failed and the host was put back
// on its previous commit (the error says which step failed).
var ErrRolledBack = errors.New("rolled back")

// ErrCutShort means a host's last cutover was killed halfway (nothing to
// trap: SIGKILL, the host's power): its files and its service may be
// between two commits until a deploy finishes the cutover. Status reports
// it as an error, so that a check in CI fails.
var ErrCutShort = errors.New("the last cutover was cut short")

// printableText is what a host printed, fit for an error message: control
// bytes (a terminal's escape sequences) and bytes that are not UTF-8 are
// shown escaped, as Go quotes them; newlines and tabs stay.
func printableText(s string) string {
	var b strings.Builder
	for i, w := 0, 0; i < len(s); i += w {
		r, n := utf8.DecodeRuneInString(s[i:])
		w = n
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n' || r == '\t' || !unicode.IsControl(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
}
