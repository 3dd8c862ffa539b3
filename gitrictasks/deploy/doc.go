// Package deploy is gitric's engine: it deploys a git commit to servers by
// pushing it over SSH into each server's repository, then checking it out
// there. It needs no mage; the gitrictasks package is a thin layer of mage
// targets over it.
//
// # Operations
//
// Each operation takes its own options type, with Validate, and reports a
// result. Options (the stage, how to reach its hosts, where the output
// goes) are in every one of them; RolloutOptions (message, batches,
// timeouts, hooks) in those that change hosts:
//
//   - Run(DeployOptions) deploys DeployOptions.Rev (HEAD by default) to
//     every host of Options.Stage: a *Result, and an error naming every
//     host that failed.
//   - MakePlan(DeployOptions) says what Run would do and what would
//     refuse it, read-only.
//   - Rollback(RollbackOptions) puts every host back on its previous
//     deploy, or on the one of RollbackOptions.Rev (a commit, a tag, a
//     release directory).
//   - Swap(SwapOptions) exchanges live and next on a blue/green stage.
//   - Status(StatusOptions) reports what every host runs, its lock, its
//     edits and drift from StatusOptions.Rev.
//   - Releases(Options) lists every host's deploy history.
//   - Unlock(Options) removes a lock that a deploy left behind.
//
// # How a deploy goes
//
// Before it contacts any host, Run checks the options, resolves the commit
// and checks the local working copy (DeployOptions.AllowDirty, IgnoreUntracked),
// the clone (a shallow or partial clone is refused, with the fix), the
// secrets and the host list (a machine listed twice is refused). It builds
// Stage.Artifacts locally, if any.
//
// Phase one runs on every host at once (Options.Parallel at a time): one
// SSH connection, one session. The host script (see below) takes the
// stage's lock, reports the host's commit and its edits, and receives the
// pack of the objects the host lacks into refs/gitric/seed: the working
// copy and the service do not change. Then it reports what the switch would
// lose (tracked edits, untracked files the new commit overwrites; refused
// unless DiscardEdits), and in ModeRelease (and ModeBlueGreen with a
// Stage.Build) checks the new tree out beside the one in use (a new
// release; a new copy of next) and runs Stage.Build in it. If any host
// fails here, no host changes, and the new trees are removed.
// Stage.Once then runs on one host, and the Before hook is called.
//
// Phase two cuts the hosts over, RolloutOptions.Batch at a time: stop,
// switch (git reset --hard, a rename of a symlink, or of next's new copy
// into place), start, health check
// (Stage.Check on the host, Stage.HTTPCheck requested by gitric through the
// connection). A host whose start or check fails goes back to its previous
// commit; a failed batch ends the rollout. Every command is bounded
// (RolloutOptions.StopTimeout, StartTimeout, CheckTimeout, BuildTimeout): past its
// bound it is killed, with what it started.
//
// # The host
//
// A host needs sshd, a POSIX sh and git. gitric's one host script starts
// from a fixed command line and reaches /bin/sh on the session's standard
// input, values included, so the login shell never parses it (any shell
// works) and nothing of the deploy appears on a command line. The script
// marks the repositories it creates, and refuses others (DeployOptions.TakeOver).
// It writes each host's audit log itself, at the moment of each switch:
// Path/.git/gitric/audit.log in ModeInPlace, Path/repo/gitric/audit.log in
// the other modes, one JSON AuditEntry per line. Its lock is a symlink next
// to the audit log naming its holder; a holder that died is taken over.
//
// A relative Stage.Path is relative to the home directory of the user that
// runs the commands: the login user, or with Stage.Sudo the sudo user.
//
// # Errors
//
// Errors wrap sentinels for errors.Is: ErrDirty, ErrNonFastForward,
// ErrServerEdits, ErrUntracked, ErrLocked, ErrIncompleteClone,
// ErrDuplicateHost, ErrRolledBack, ErrCommandTimeout, ErrMixed, ErrCutShort,
// ErrUnreachable, ErrHostKeyUnknown and the others, and typed errors for
// errors.As (*DirtyError, *NonFastForwardError, *ServerEditsError,
// *UntrackedError, *LockedError, *HostError, *ScriptError, *TimeoutError),
// each with a message that says what happened, where, and how to go on.
package deploy
