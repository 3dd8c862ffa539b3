package deploy

import (
	"errors"
	"os"
	"os/user"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
)

// AuditEntry is one line of a host's audit log: one JSON object per
// deploy, rollback, swap or refused attempt, appended with a single write
// and never rewritten. The host script writes the line of each switch
// itself, at the moment it happens, so the log is right even when gitric
// dies during a cutover. The log is gitric's directory's audit.log: in
// ModeInPlace Path/.git/gitric/audit.log, in the other modes
// Path/repo/gitric/audit.log.
type AuditEntry struct {
	Time   time.Time `json:"time"`
	Who    string    `json:"who"`
	Action Action    `json:"action"`
	From   string    `json:"from,omitempty"`
	To     string    `json:"to,omitempty"`
	// Deployed is the commit checked out when gitric made one of its own
	// from To (artifacts, a subdirectory); To is always the source.
	Deployed   string  `json:"deployed,omitempty"`
	Cutover    string  `json:"cutover,omitempty"` // "overlap"
	Result     Outcome `json:"result"`
	Reason     string  `json:"reason,omitempty"`
	Message    string  `json:"message,omitempty"`
	DowntimeMS int64   `json:"downtime_ms"`
}

// Outcome is how an operation ended on one host.
type Outcome string

// Outcomes, in results and in the audit log.
const (
	OutcomeOK         Outcome = "ok"          // the host is on To
	OutcomeFailed     Outcome = "failed"      // a step failed; see the reason
	OutcomeRolledBack Outcome = "rolled-back" // a step failed; the host is back on From
	OutcomeRefused    Outcome = "refused"     // the deploy refused this host; nothing changed
	OutcomeAborted    Outcome = "aborted"     // another host failed; nothing changed here
	OutcomeTookOver   Outcome = "took-over"   // a dead deploy's lock was taken over
)

// Action is what an operation does.
type Action string

// Actions, in the audit log.
const (
	ActionDeploy   Action = "deploy"
	ActionRollback Action = "rollback"
	ActionSwap     Action = "swap" // blue/green: live and next exchanged
)

// rollbackTarget reads a host's audit log as a stack: each successful
// deploy pushes its commit, each successful rollback pops back to the
// commit it went to (one entry for a plain rollback, more for a rollback
// to a named older deploy; a commit the log no longer holds is pushed). It
// returns the top (what the log says is live) and the commit under it
// (what a rollback goes back to); "" where there is none.
func rollbackTarget(log []AuditEntry) (top, prev string) {
	var stack []string
	for _, e := range log {
		if e.Result != OutcomeOK {
			continue
		}
		switch e.Action {
		case ActionDeploy:
			stack = append(stack, e.checkout())
		case ActionRollback:
			to := e.checkout()
			i := len(stack) - 1
			for i >= 0 && stack[i] != to {
				i--
			}
			switch {
			case to == "" && len(stack) > 0: // an entry that names no commit
				stack = stack[:len(stack)-1]
			case to == "":
			case i >= 0:
				stack = stack[:i+1]
			default:
				stack = append(stack, to)
			}
		}
	}
	if len(stack) > 0 {
		top = stack[len(stack)-1]
	}
	if len(stack) > 1 {
		prev = stack[len(stack)-2]
	}
	return top, prev
}

// checkout is the commit the entry's host checked out.
func (e AuditEntry) checkout() string {
	if e.Deployed != "" {
		return e.Deployed
	}
	return e.To
}

// deployedOf finds the newest successful deploy of source in the log, and
// the commit that deploy checked out.
func deployedOf(log []AuditEntry, source string) (string, bool) {
	for i := len(log) - 1; i >= 0; i-- {
		e := log[i]
		if e.Result == OutcomeOK && e.Action == ActionDeploy && e.To == source {
			return e.checkout(), true
		}
	}
	return "", false
}

// sourceFor is the source commit of a commit a host checked out, as its
// audit log records it (the commit itself when gitric made none of its own).
func sourceFor(log []AuditEntry, checkout plumbing.Hash) plumbing.Hash {
	for i := len(log) - 1; i >= 0; i-- {
		if e := log[i]; e.Deployed == checkout.String() {
			return hashOf(e.To)
		}
	}
	return checkout
}

// ErrAuditMismatch means a host's audit log disagrees with what it runs.
var ErrAuditMismatch = errors.New("the audit log does not match the host")

// lastDeploy is the newest successful entry, if any.
func lastDeploy(log []AuditEntry) (AuditEntry, bool) {
	for i := len(log) - 1; i >= 0; i-- {
		if log[i].Result == OutcomeOK {
			return log[i], true
		}
	}
	return AuditEntry{}, false
}

// Who describes the person deploying, as user@machine.
func Who() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return name + "@" + host
}

func hashOf(s string) plumbing.Hash {
	if plumbing.IsHash(s) {
		return plumbing.NewHash(s)
	}
	return plumbing.ZeroHash
}
