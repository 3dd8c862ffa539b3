package deploy

import (
	"os"
	"os/user"
	"time"
)

// AuditEntry is one line of a host's audit log (.git/gitric/audit.log in
// the target repository): one JSON object per deploy, rollback or refused
// attempt, appended with a single write and never rewritten.
type AuditEntry struct {
	Time       time.Time `json:"time"`
	Who        string    `json:"who"`
	Action     string    `json:"action"` // deploy, rollback or swap
	From       string    `json:"from,omitempty"`
	To         string    `json:"to,omitempty"`
	Result     string    `json:"result"` // see the Result constants
	Reason     string    `json:"reason,omitempty"`
	DowntimeMS int64     `json:"downtime_ms"`
}

// Results recorded in the audit log.
const (
	ResultOK         = "ok"          // the host is on To
	ResultFailed     = "failed"      // a step failed; the host may be on To
	ResultRolledBack = "rolled-back" // a step failed; the host is back on From
	ResultRefused    = "refused"     // the deploy refused this host; nothing changed
	ResultAborted    = "aborted"     // another host failed; nothing changed here
)

// Actions recorded in the audit log.
const (
	ActionDeploy   = "deploy"
	ActionRollback = "rollback"
	ActionSwap     = "swap" // blue/green: live and next exchanged
)

// previousCommit reads a host's audit log as a stack: each successful
// deploy pushes its commit, each successful rollback pops one. The commit
// under the top is the one a rollback goes back to; "" when there is none.
func previousCommit(log []AuditEntry) string {
	var stack []string
	for _, e := range log {
		if e.Result != ResultOK {
			continue
		}
		switch e.Action {
		case ActionDeploy:
			stack = append(stack, e.To)
		case ActionRollback:
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		}
	}
	if len(stack) < 2 {
		return ""
	}
	return stack[len(stack)-2]
}

// lastDeploy is the newest successful entry, if any.
func lastDeploy(log []AuditEntry) (AuditEntry, bool) {
	for i := len(log) - 1; i >= 0; i-- {
		if log[i].Result == ResultOK {
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
