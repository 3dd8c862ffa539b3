package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/hostscript"
)

// Rollback puts every host of the stage back on the commit deployed before
// its current one, as its audit log records, through the same two phases
// as Run; nothing is pushed, since the host has the objects already. A
// host whose audit log disagrees with what it runs is refused.
func Rollback(ctx context.Context, opts RollbackOptions) (*Result, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	f, err := newFleet(ctx, settings{Options: opts.Options, RolloutOptions: opts.RolloutOptions, Rev: opts.Rev, DiscardEdits: opts.DiscardEdits})
	if err != nil {
		return nil, err
	}
	f.openRepo()
	d := &rollbackOp{rollout: &rollout{fleet: f, verb: "preparing"}}
	d.op = d
	if d.secrets, err = readSecrets(d.opts.Stage.Secrets); err != nil {
		return nil, err
	}
	d.con.Printf("rolling back %s: %d host(s), %s", d.opts.Stage.Name, len(d.hosts), d.opts.Stage.Path)
	return d.run(ctx)
}

// rollbackOp is a rollback: phase one picks each host's target from its
// audit log (and finds its kept release), phase two switches to it.
type rollbackOp struct{ *rollout }

func (d *rollbackOp) action() Action { return ActionRollback }

// script has the host report its audit log, where the targets are.
func (d *rollbackOp) script(_ *hostDeploy, v *hostscript.Vars) { v.AuditLog = true }

// ready picks the host's target, and refuses a host whose edits or
// untracked files the switch would lose, or that lacks a shared file.
func (d *rollbackOp) ready(ctx context.Context, h *hostDeploy) error {
	if err := d.refuseEdits(ctx, h); err != nil {
		return err
	}
	if err := d.pick(h, h.state); err != nil || h.res.Skipped {
		return err
	}
	untracked, missing, err := h.session().verify(h.to)
	if err != nil {
		return &HostError{Host: h.addr.Name(), Step: "prepare", Err: err}
	}
	if err := d.refuseMissing(h, missing); err != nil {
		return err
	}
	if err := d.refuseUntracked(h, untracked); err != nil {
		return err
	}
	return d.prepareRelease(h, true)
}

func (d *rollbackOp) allReady(context.Context) error { return nil }

func (d *rollbackOp) cutover(h *hostDeploy) error { return d.switchTo(h) }

// pick picks the host's rollback target: with Options.Rev, the
// deploy of that commit (or release) that the host's audit log records;
// without, the one before the live one. The audit log must agree with
// what the host runs.
func (d *rollbackOp) pick(h *hostDeploy, st hostState) error {
	top, prev := rollbackTarget(st.audit)
	name := h.addr.Name()
	if top != "" && top != st.head.String() {
		h.res.Outcome = OutcomeRefused
		return &HostError{Host: name, Step: "prepare", Err: fmt.Errorf("%w: the audit log says %s is live, but the host is on %s (changed outside gitric?); "+
			"deploy the commit you want instead: %s", ErrAuditMismatch, shortHex(top), short(st.head), d.opts.Hints.ForcePush)}
	}
	if d.opts.Rev != "" {
		return d.rollbackTo(h, st)
	}
	if prev == "" || !plumbing.IsHash(prev) {
		h.res.Outcome = OutcomeRefused
		return &HostError{Host: name, Step: "prepare", Err: fmt.Errorf("%w: the host's audit log records no earlier successful deploy", ErrNoPrevious)}
	}
	d.aim(h, st, prev)
	return nil
}

// aim makes checkout (a commit the host's audit log records as deployed)
// the host's target.
func (d *rollbackOp) aim(h *hostDeploy, st hostState, checkout string) {
	h.to = plumbing.NewHash(checkout)
	h.toSrc = sourceFor(st.audit, h.to)
	if h.to == st.head && st.cutShort == "" {
		h.res.Skipped = true
		h.log.Printf("already on %s; nothing to do", d.describe(h.toSrc))
		return
	}
	h.log.Printf("will roll back from %s to %s", d.describe(h.fromSrc), d.describe(h.toSrc))
}

// ErrNeverDeployed means a rollback target is not a deploy the host had.
var ErrNeverDeployed = errors.New("never deployed on this host")

// rollbackTo picks the deploy of Options.Rev (a commit, or a release
// directory's name) from the host's audit log and releases.
func (d *rollbackOp) rollbackTo(h *hostDeploy, st hostState) error {
	name, rev := h.addr.Name(), d.opts.Rev
	var source string
	for _, r := range st.releases {
		if r.name == rev || strings.TrimPrefix(r.name, "releases/") == rev {
			source = r.head.String()
		}
	}
	if source == "" && d.repo != nil {
		if c, err := d.repo.Resolve(rev); err == nil {
			source = c.Hash.String()
		}
	}
	if source == "" && plumbing.IsHash(rev) {
		source = rev
	}
	checkout, ok := deployedOf(st.audit, source)
	if !ok {
		// A release named by its directory may be a deploy commit.
		for _, e := range st.audit {
			if e.checkout() == source && e.Result == OutcomeOK {
				checkout, ok = source, true
			}
		}
	}
	if source == "" || !ok {
		h.res.Outcome = OutcomeRefused
		return &HostError{Host: name, Step: "prepare", Err: fmt.Errorf("%w: %s: the host's audit log records no successful deploy of it; see: %s", ErrNeverDeployed, rev, d.opts.Hints.Releases)}
	}
	d.aim(h, st, checkout)
	return nil
}
