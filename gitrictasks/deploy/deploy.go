package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/hostscript"
	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
)

// Commit names a commit.
type Commit struct {
	Hash    string // full hex hash; empty for none
	Subject string
}

// Short is the abbreviated hash, or "-" for none.
func (c Commit) Short() string { return shortHex(c.Hash) }

func (c Commit) String() string { return c.Short() + " " + c.Subject }

// HostResult is what happened on one host.
type HostResult struct {
	Host     string
	From     string // the host's commit before (full hash; empty: none)
	To       string // the commit it was to be on
	Skipped  bool   // already on To
	Outcome  Outcome
	Seed     time.Duration
	Objects  int
	Bytes    int64
	Stop     time.Duration
	Reset    time.Duration
	Build    time.Duration // a build inside the cutover (ModeInPlace)
	Start    time.Duration
	Downtime time.Duration // from the stop command's start to the start command's end
	// Finishing is set when gitric stopped waiting (interrupted) while the
	// host was in the middle of a step: the host finishes it by itself and
	// releases its lock; its audit log says how it ended.
	Finishing bool
	Err       error
}

// Result is the outcome of a deploy, rollback or swap.
type Result struct {
	Commit Commit // for a rollback, zero: each host has its own target
	Hosts  []HostResult
}

// Run deploys opts.Rev to the hosts of opts.Stage (and opts.Role).
//
// Before it connects anywhere it checks the options, the revision and the
// working copy. Phase one then connects to every host, takes the stage's
// lock there and seeds it, opts.Parallel hosts at a time, changing no
// working copy and no service. Only when every host is seeded (and none
// would lose an edit or an untracked file) does phase two cut them over
// (stop, switch, start, check), opts.Batch hosts at a time. A failed batch
// ends the rollout: its failed hosts go back to their previous commit
// (unless opts.NoRollback) and later hosts are not touched. Every host's
// audit log, written by the host at each switch, records what happened.
func Run(ctx context.Context, opts DeployOptions) (*Result, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	f, err := newFleet(ctx, settings(opts))
	if err != nil {
		return nil, err
	}
	d, err := newDeploy(f)
	if err != nil {
		return nil, err
	}
	paths, err := d.repo.Changes(localrepo.StatusOptions{IgnoreUntracked: d.opts.IgnoreUntracked})
	if err != nil {
		return nil, err
	}
	paths = d.inSubdir(paths)
	if len(paths) > 0 {
		if !d.opts.AllowDirty {
			return nil, &DirtyError{Root: d.repo.Root(), Paths: paths, Hint: d.opts.Hints.AllowDirty}
		}
		d.con.Printf("allowDirty: %d uncommitted change(s) left out; deploying the committed %s", len(paths), d.commit.Short())
	}
	if d.repo.Partial() {
		return nil, fmt.Errorf("%w: %s is a partial clone (git clone --filter): objects the hosts need are not in it. "+
			"Deploy from a full clone (in CI: actions/checkout with fetch-depth: 0 and no filter), or fetch them: git fetch --refetch", ErrIncompleteClone, d.repo.Root())
	}
	if d.secrets, err = readSecrets(d.opts.Stage.Secrets); err != nil {
		return nil, err
	}
	if err := d.checkShared(); err != nil {
		return nil, err
	}
	if d.opts.Stage.Submodules {
		if err := d.findSubmodules(); err != nil {
			return nil, err
		}
	}
	if err := d.derive(ctx); err != nil {
		return nil, err
	}
	d.con.Printf("deploying %s to %s: %d host(s), %s", d.commit, d.opts.Stage.Name, len(d.hosts), d.opts.Stage.Path)
	d.packs = &packs{share: len(d.hosts) > 1, parts: func(haves []plumbing.Hash) []localrepo.PackPart {
		parts := []localrepo.PackPart{{Repo: d.repo, Want: d.target, Haves: haves}}
		for i, sub := range d.subs {
			parts = append(parts, localrepo.PackPart{Repo: d.subRepos[i], Want: sub.Commit, Haves: haves})
		}
		return parts
	}}
	defer d.packs.remove()
	return d.run(ctx)
}

// deployOp is a deploy: phase one seeds every host with the commit (and
// prepares its release), phase two switches each host to it.
type deployOp struct {
	*rollout
	// target is what the hosts check out: the commit, or gitric's deploy
	// commit made of it (artifacts, a subdirectory); targetTree its tree.
	target, targetTree plumbing.Hash
	shallow            []plumbing.Hash // the local clone's shallow boundary
	subs               []localrepo.Submodule
	subRepos           []*localrepo.Repo // the local repositories of subs
	packs              *packs
}

// newDeploy opens the local repository and resolves the revision: what
// a deploy, and the plan of one, start from.
func newDeploy(f *fleet) (*deployOp, error) {
	d := &deployOp{rollout: &rollout{fleet: f, verb: "seeding"}}
	d.op = d
	repo, err := localrepo.Open(f.opts.Dir)
	if err != nil {
		return nil, err
	}
	d.repo = repo
	if d.commit, err = repo.Resolve(f.opts.Rev); err != nil {
		return nil, err
	}
	if d.shallow, err = repo.Shallow(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *deployOp) action() Action { return ActionDeploy }

func (d *deployOp) script(h *hostDeploy, v *hostscript.Vars) {
	v.New = d.target.String()
	v.Audit = auditHead{Who: d.opts.Who, Action: ActionDeploy, To: d.commit.Hash.String(), Message: d.opts.Message}.prefix()
	h.to, h.toSrc = d.target, d.commit.Hash
}

// ErrIncompleteClone means the local clone lacks history or objects that
// a deploy needs (a shallow or partial clone).
var ErrIncompleteClone = errors.New("the local clone is incomplete")

// findSubmodules lists the commit's submodules, recursively, and checks
// that the local clone has every one of their commits.
func (d *deployOp) findSubmodules() error {
	subs, err := d.repo.Submodules(d.commit.Hash)
	if err != nil {
		return err
	}
	for _, s := range subs {
		if strings.ContainsAny(s.Path, "\n\t") || strings.HasPrefix(s.Path, " ") {
			return fmt.Errorf("submodule %q: paths with tabs, newlines or leading spaces are not supported", s.Path)
		}
		repo, err := d.repo.OpenSubmodule(s)
		if err != nil {
			return err
		}
		d.subs = append(d.subs, s)
		d.subRepos = append(d.subRepos, repo)
	}
	return nil
}

// ready seeds a host: it pushes the commit (nothing if the host has it),
// refusing a host that would lose history, an edit or an untracked file,
// then has a release-mode host prepare the new release.
func (d *deployOp) ready(ctx context.Context, h *hostDeploy) error {
	if err := d.refuseEdits(ctx, h); err != nil {
		return err
	}
	name, sess, st := h.addr.Name(), h.sess, h.state
	end := func() error { return d.endSeed(ctx, h) } // no push
	already := st.head == d.target || (d.opts.Stage.Subdir != "" && d.opts.Stage.Artifacts == nil && !st.tree.IsZero() && st.tree == d.targetTree)
	if already && st.cutShort != "" {
		// On the commit, maybe, but not known to run it: cut over again.
		h.log.Printf("the last cutover here, to %s, was cut short (killed): it is done again", shortHex(st.cutShort))
		already = false
	}
	if already {
		h.res.Skipped = true
		h.log.Printf("already on %s; nothing to do", d.commit)
		if err := end(); err != nil {
			return &HostError{Host: name, Step: "seed", Err: err}
		}
		return nil
	}
	if !st.head.IsZero() && !d.opts.ForcePush {
		ok, err := d.repo.IsAncestor(h.fromSrc, d.commit.Hash)
		if err != nil || (!ok && len(d.shallow) > 0) {
			_ = end()
			h.res.Outcome = OutcomeRefused
			d.audit(h, OutcomeRefused, "history not provable from a shallow clone")
			return &HostError{Host: name, Step: "seed", Err: d.shallowError(st.head, err)}
		}
		if !ok {
			h.res.Outcome = OutcomeRefused
			// End receive-pack before writing the audit line.
			if end() == nil {
				d.audit(h, OutcomeRefused, "non-fast-forward")
			}
			return &NonFastForwardError{Host: name, Commit: d.commit.Hash.String(), Current: d.describe(h.fromSrc), Hint: d.opts.Hints.ForcePush}
		}
	}
	if len(d.shallow) > 0 && st.head.IsZero() {
		_ = end()
		h.res.Outcome = OutcomeRefused
		return &HostError{Host: name, Step: "seed", Err: d.shallowError(st.head, nil)}
	}
	var progress io.Writer
	if d.opts.Verbose {
		progress = h.log
	}
	start := time.Now()
	targets := []refTarget{{seedRef, d.target}}
	if d.target != d.commit.Hash {
		// gitric's deploy commits are not each other's ancestors: a ref
		// for each keeps it from git gc on the host, for rollbacks.
		targets = append(targets, refTarget{"refs/gitric/keep/" + d.target.String(), d.target})
	}
	for _, sub := range d.subs {
		// A ref for each submodule commit ever deployed keeps its objects
		// from git gc on the host, for rollbacks too.
		targets = append(targets, refTarget{"refs/gitric/submodule/" + sub.Commit.String(), sub.Commit})
	}
	stats, err := sess.push(ctx, targets, st.head, func(w io.Writer, haves []plumbing.Hash, estimate func(int64)) (int, int, error) {
		ps, err := d.packs.write(ctx, w, haves, estimate)
		return ps.Commits, ps.Objects, err
	}, progress)
	h.inPush = false
	if err != nil {
		return &HostError{Host: name, Step: "seed", Err: err}
	}
	d.logTookOver(h)
	h.res.Seed, h.res.Objects, h.res.Bytes = time.Since(start), stats.objects, stats.bytes
	if stats.objects == 0 {
		h.log.Printf("seeded: the host has every object already (it is on %s)", short(h.fromSrc))
	} else {
		on := "was empty"
		if !st.head.IsZero() {
			on = "is on " + short(h.fromSrc)
		}
		h.log.Printf("seeded %d commit(s), %d object(s), %s in %s (the host %s)", stats.commits, stats.objects, byteSize(stats.bytes), round(h.res.Seed), on)
	}
	if err := d.refuseMissing(h, stats.missing); err != nil {
		return err
	}
	if err := d.refuseUntracked(h, stats.untracked); err != nil {
		return err
	}
	return d.prepareRelease(h, false)
}

// allReady runs the stage's run-once command on its host, when any host
// is to be cut over: after every host is seeded and built, before any
// cutover.
func (d *deployOp) allReady(ctx context.Context) error {
	if d.opts.Stage.Once == "" || ctx.Err() != nil {
		return nil
	}
	due := false
	for _, h := range d.hosts {
		due = due || !h.res.Skipped
	}
	if !due {
		return nil
	}
	h := d.onceHost()
	h.log.Printf("running the run-once command (%s)", d.opts.Stage.Once)
	status, err := h.session().runOnce(d.target, d.commit.Hash, d.opts.OnceTimeout)
	switch {
	case err != nil:
	case status == "t":
		err = fmt.Errorf("%w: the run-once command did not finish within %s and was killed", ErrCommandTimeout, d.opts.OnceTimeout)
	case status != "0":
		err = fmt.Errorf("the run-once command failed (exit status %s); see its last lines above", status)
	}
	if err != nil {
		h.res.Outcome = OutcomeFailed
		h.res.Err = &HostError{Host: h.addr.Name(), Step: "once", Err: err}
		return h.res.Err
	}
	return nil
}

func (d *deployOp) cutover(h *hostDeploy) error { return d.switchTo(h) }

// checkShared refuses, in place, shared paths that the commit tracks: the
// working copy is the repository's, so they could not be linked.
func (d *deployOp) checkShared() error {
	if d.opts.Stage.mode() != ModeInPlace || len(d.opts.Stage.Shared) == 0 {
		return nil
	}
	for _, p := range d.opts.Stage.Shared {
		if d.repo.Tracks(d.commit.Hash, strings.TrimSuffix(p, "/")) {
			return fmt.Errorf("%w: stage %q: the shared path %s is tracked in %s; in place, shared paths must be untracked (ignore it in .gitignore), or use Mode release", ErrInvalidOptions, d.opts.Stage.Name, p, d.commit.Short())
		}
	}
	return nil
}

// shallowError explains a deploy a shallow clone cannot prove safe.
func (d *deployOp) shallowError(head plumbing.Hash, cause error) error {
	what := "the host is empty, and a shallow clone cannot give it a whole history"
	if !head.IsZero() {
		what = fmt.Sprintf("the host is on %s, which is not inside the local (shallow) history, so gitric cannot tell whether the deploy would lose history", short(head))
	}
	if cause != nil && !errors.Is(cause, localrepo.ErrShallow) {
		what += " (" + cause.Error() + ")"
	}
	return fmt.Errorf("%w: %s is a shallow clone: %s. Fetch the whole history first: git fetch --unshallow (in CI: actions/checkout with fetch-depth: 0)", ErrIncompleteClone, d.repo.Root(), what)
}
