package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/console"
	"github.com/gitric/gitric/gitrictasks/internal/hostscript"
	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
)

// operation is one kind of rollout (deploy, rollback, swap): what its
// host scripts are told, how each host gets ready in phase one, and what
// its cutover is. The rollout runs it through the two phases.
type operation interface {
	action() Action
	// script adds the operation's values to a host's script.
	script(h *hostDeploy, v *hostscript.Vars)
	// ready is phase one on a host whose script holds the lock: seed it,
	// or pick its target. It changes no working copy and no service.
	ready(ctx context.Context, h *hostDeploy) error
	// allReady runs once, when every host is ready, before any cutover.
	allReady(ctx context.Context) error
	// cutover is phase two on one host.
	cutover(h *hostDeploy) error
}

// rollout takes a fleet through an operation's two phases: every host
// made ready (connected, locked, seeded or prepared), all or none; then
// the cutovers, batch after batch, failed hosts rolled back.
type rollout struct {
	*fleet
	op       operation
	verb     string           // phase one's, for people: seeding, preparing
	commit   localrepo.Commit // a deploy's source commit; zero otherwise
	secrets  map[string]string
	cutovers sync.WaitGroup // the cutover goroutines
	// abortReason says why phase one ended when no host failed (a hook).
	abortReason string
}

func (r *rollout) run(ctx context.Context) (*Result, error) {
	err := r.phaseOne(ctx)
	if err == nil {
		err = r.before(ctx)
	}
	if err == nil {
		err = r.cutoverAll(ctx)
	}
	r.close(ctx.Err() != nil)
	r.cutovers.Wait() // a closed session ends a cutover under way at once
	r.summary()
	res := r.result()
	if r.opts.Hooks.After != nil {
		r.opts.Hooks.After(context.WithoutCancel(ctx), res, err)
	}
	return res, err
}

func (r *rollout) result() *Result {
	res := &Result{Commit: publicCommit(r.commit)}
	for _, h := range r.hosts {
		res.Hosts = append(res.Hosts, h.result())
	}
	return res
}

func (h *hostDeploy) result() HostResult {
	res := h.res
	res.From, res.To = hashString(h.fromSrc), hashString(h.toSrc)
	return res
}

// ErrHook means a hook refused the deploy.
var ErrHook = errors.New("refused by a hook")

// before calls the Before hook with what each host will do; its error
// aborts the rollout before any cutover.
func (r *rollout) before(ctx context.Context) error {
	if r.opts.Hooks.Before == nil {
		return nil
	}
	p := &Plan{Commit: publicCommit(r.commit)}
	for _, h := range r.hosts {
		p.Hosts = append(p.Hosts, HostPlan{Host: h.addr.Name(), From: hashString(h.fromSrc), To: hashString(h.toSrc), Already: h.res.Skipped, Steps: steps(r.opts, h.from.IsZero())})
	}
	if err := r.opts.Hooks.Before(ctx, p); err != nil {
		r.abortReason = "the Before hook refused the " + string(r.op.action())
		return r.abort(ctx, []error{fmt.Errorf("%w: %w", ErrHook, err)})
	}
	return nil
}

func publicCommit(c localrepo.Commit) Commit {
	if c.Hash.IsZero() {
		return Commit{}
	}
	return Commit{Hash: c.Hash.String(), Subject: c.Subject}
}

// phaseOne connects to every host, takes its lock and has the operation
// make it ready. Any failure fails the rollout before any cutover, and is
// recorded in the audit log of every host that got that far.
func (r *rollout) phaseOne(ctx context.Context) error {
	r.con.Printf("phase 1/2: %s %d host(s), %d at a time", r.verb, len(r.hosts), r.opts.Parallel)
	// Cancelled in phase one: end every script's input, so that each one
	// stops where it is, changes nothing and releases its lock. A step
	// that goes on regardless (a release's build) is waited for closeGrace,
	// then left to its host, which finishes it and releases its lock.
	phaseDone := make(chan struct{})
	defer close(phaseDone)
	defer context.AfterFunc(ctx, func() {
		for _, h := range r.hosts {
			if s := h.session(); s != nil {
				_ = s.proc.stdin.Close()
			}
		}
		select {
		case <-phaseDone:
		case <-time.After(closeGrace):
			for _, h := range r.hosts {
				if s := h.session(); s != nil {
					s.abandon()
				}
			}
		}
	})()
	// Connections are set up all at once; the scripts, which take the
	// locks, start on the first host before any other: of two deploys
	// started at once, the one that loses there is refused before it
	// changes anything anywhere, and the winner goes on.
	r.dialAll(ctx)
	first := r.hosts[0]
	if first.res.Err = r.open(ctx, first); first.res.Err != nil {
		r.each(func(h *hostDeploy) {
			if h != first {
				h.res.Outcome = OutcomeAborted
			}
		})
		return r.abort(ctx, []error{first.res.Err})
	}
	sem := make(chan struct{}, r.opts.Parallel)
	var wg sync.WaitGroup
	for _, h := range r.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				if h != first {
					h.res.Err = r.open(ctx, h)
				}
				if h.res.Err == nil {
					h.res.Err = r.op.ready(ctx, h)
				}
			case <-ctx.Done():
				h.res.Err = &HostError{Host: h.addr.Name(), Step: "connect", Err: fmt.Errorf("%w before this host was reached", ErrInterrupted)}
			}
		}()
	}
	wg.Wait()
	var errs []error
	for _, h := range r.hosts {
		if h.res.Err != nil {
			errs = append(errs, h.res.Err)
		}
	}
	if len(errs) == 0 {
		if err := r.op.allReady(ctx); err != nil {
			return r.abort(ctx, []error{err})
		}
		return nil
	}
	return r.abort(ctx, errs)
}

// abort ends a rollout in phase one: no host is cut over, and the hosts
// that were ready say so in their audit logs.
func (r *rollout) abort(ctx context.Context, errs []error) error {
	reason := fmt.Sprintf("%d of %d host(s) failed in phase 1", len(errs), len(r.hosts))
	if r.abortReason != "" {
		reason = r.abortReason
	}
	if ctx.Err() != nil {
		reason = "the " + string(r.op.action()) + " was interrupted"
	}
	r.each(func(h *hostDeploy) {
		if h.release != "" && h.session() != nil {
			// Its release goes unused: remove it.
			if err := h.session().discard(); err != nil {
				h.log.Printf("could not remove the unused release %s: %v", h.release, err)
			}
			h.release = ""
		}
		switch {
		case h.res.Outcome != "":
		case h.res.Err != nil:
			h.res.Outcome = OutcomeFailed
		default:
			h.res.Outcome = OutcomeAborted
			if ctx.Err() == nil {
				r.audit(h, OutcomeAborted, reason)
			}
		}
	})
	if len(r.hosts) > 1 {
		r.con.Printf("%v: %s; no host was changed", ErrNotDeployed, reason)
	}
	err := errors.Join(errs...)
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrInterrupted, err)
	}
	return err
}

// audit appends an entry to the host's audit log, if its script runs.
func (r *rollout) audit(h *hostDeploy, outcome Outcome, reason string) {
	s := h.session()
	if s == nil {
		return
	}
	e := AuditEntry{
		Time: time.Now().UTC(), Who: r.opts.Who, Action: r.op.action(), Message: r.opts.Message,
		To: hashString(h.toSrc), From: hashString(h.fromSrc), Result: outcome, Reason: reason,
	}
	if h.to != h.toSrc {
		e.Deployed = hashString(h.to)
	}
	if err := s.logAudit(e); err != nil {
		h.log.Printf("could not write the audit log: %v", err)
	}
}

// auditHead starts the audit line of a cutover to checkout, which is the
// source commit source (or gitric's deploy commit of it).
func (r *rollout) auditHead(h *hostDeploy, checkout, source plumbing.Hash) auditHead {
	a := auditHead{Who: r.opts.Who, Action: r.op.action(), From: hashString(h.fromSrc), To: hashString(source), Message: r.opts.Message}
	if checkout != source {
		a.Deployed = hashString(checkout)
	}
	return a
}

// open starts the host's script, which takes the lock and reports the
// host's state, and refuses a host another deploy holds.
func (r *rollout) open(ctx context.Context, h *hostDeploy) error {
	name := h.addr.Name()
	<-h.dialed
	if h.dialErr != nil {
		return h.dialErr
	}
	action := r.op.action()
	vars := r.vars(hostscript.Action(action))
	vars.Lock = fmt.Sprintf("%s since %s (%s %s)", r.opts.Who, time.Now().UTC().Format(time.RFC3339), action, r.commitName())
	if r.opts.Message != "" {
		vars.Lock += ": " + r.opts.Message
	}
	vars.LockWait = r.opts.LockWait
	vars.Env = r.hostEnv(h.spec)
	r.op.script(h, &vars)
	h.inPush = vars.Action == hostscript.Deploy
	// The script's session outlives a cancelled ctx: a cutover under way
	// must finish. Phase one ends the scripts itself on cancellation.
	sess, state, err := openSession(context.WithoutCancel(ctx), h.conn, vars, h.log, r.secrets)
	h.mu.Lock()
	h.sess, h.state = sess, state
	h.mu.Unlock()
	if se := (*ScriptError)(nil); errors.As(err, &se) && se.Code == "foreign" {
		err = fmt.Errorf("%w. To deploy into it anyway: %s", err, r.opts.Hints.TakeOver)
	}
	if err != nil {
		return &HostError{Host: name, Step: "prepare", Err: err}
	}
	h.from, h.fromSrc = state.head, state.sourceOf()
	if state.tookOver != "" {
		h.log.Printf("took over the lock of a deploy that is gone: %s", lockHolder(state.tookOver))
		h.tookOver = "stale lock of " + lockHolder(state.tookOver)
		r.logTookOver(h)
	}
	if state.locked != "" {
		h.inPush = false // a refused script takes commands at once
		h.res.Outcome = OutcomeRefused
		r.audit(h, OutcomeRefused, "locked by "+lockHolder(state.locked))
		return &LockedError{Host: name, Owner: lockHolder(state.locked), Hint: r.opts.Hints.Unlock}
	}
	return nil
}

// refuseEdits refuses a host whose working copy was edited there, unless
// the user said to discard host edits.
func (r *rollout) refuseEdits(ctx context.Context, h *hostDeploy) error {
	if len(h.state.changed) == 0 || r.opts.DiscardEdits {
		return nil
	}
	h.res.Outcome = OutcomeRefused
	// A deploy's script is in git receive-pack: end it first.
	if r.endSeed(ctx, h) == nil {
		r.audit(h, OutcomeRefused, "working copy edited on the host")
	}
	return &ServerEditsError{Host: h.addr.Name(), Paths: h.state.changed, Hint: r.opts.Hints.DiscardEdits, CutShort: h.state.cutShort}
}

// endSeed ends a deploy's git receive-pack on the host with no update,
// after which the script takes commands (the audit log's among them). It
// does nothing for a host that is not in one.
func (r *rollout) endSeed(ctx context.Context, h *hostDeploy) error {
	if !h.inPush {
		return nil
	}
	_, err := h.session().push(ctx, nil, h.state.head, nil, nil)
	h.inPush = false
	if err == nil {
		r.logTookOver(h)
	}
	return err
}

// logTookOver writes the audit line of a lock taken over, if any, once the
// script takes commands (in a deploy, once its seed is over: until then
// its input is git receive-pack's).
func (r *rollout) logTookOver(h *hostDeploy) {
	if h.tookOver != "" && !h.inPush {
		r.audit(h, OutcomeTookOver, h.tookOver)
		h.tookOver = ""
	}
}

func (r *rollout) commitName() string {
	if r.commit.Hash.IsZero() {
		return "previous commits"
	}
	return r.commit.Short()
}

// prepareRelease has a release-mode host check its new release out and
// build it (reuse: find the kept release of a rollback's target), in
// phase one, while the old version serves; a blue/green host with a Build
// likewise makes and builds next's new copy beside next (a rollback's
// too: the old commit is built again).
func (r *rollout) prepareRelease(h *hostDeploy, reuse bool) error {
	mode := r.opts.Stage.mode()
	if h.res.Skipped || (mode != ModeRelease && (mode != ModeBlueGreen || r.opts.Stage.Build == "")) {
		return nil
	}
	what := "release"
	if mode == ModeBlueGreen {
		what, reuse = "copy of next", false
	}
	start := time.Now()
	rel, built, err := h.session().prepare(h.to, h.toSrc, reuse, r.opts.BuildTimeout)
	switch {
	case errors.Is(err, errPrepare) && built == "t":
		err = fmt.Errorf("%w: the build did not finish within %s and was killed; the %s was removed and the service was not stopped", ErrCommandTimeout, r.opts.BuildTimeout, what)
	case errors.Is(err, errPrepare) && built != "-" && built != "0":
		err = fmt.Errorf("the build failed (exit status %s); see its last lines above; the %s was removed and the service was not stopped", built, what)
	case errors.Is(err, errPrepare) && reuse:
		err = fmt.Errorf("%w: the release of %s is not on the host any more (pruned: Keep is %d)", ErrNoPrevious, short(h.toSrc), r.opts.Stage.Keep)
	case errors.Is(err, errPrepare):
		err = fmt.Errorf("could not check %s out into a new %s (see the host's message above: a full disk?); the service was not stopped", short(h.toSrc), what)
	}
	if err != nil {
		return &HostError{Host: h.addr.Name(), Step: "build", Err: err}
	}
	h.release = rel
	switch {
	case built == "0" && mode == ModeBlueGreen:
		h.log.Printf("built %s in %s; the cutover renames it to next's %s", rel, round(time.Since(start)), strings.TrimSuffix(rel, ".gitric-new"))
	case built == "0":
		h.log.Printf("built %s in %s", rel, round(time.Since(start)))
	}
	return nil
}

// ErrSharedMissing means a host lacks a shared file the stage names.
var ErrSharedMissing = errors.New("shared file missing on the host")

// refuseMissing refuses a host that lacks one of the stage's shared files.
func (r *rollout) refuseMissing(h *hostDeploy, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	h.res.Outcome = OutcomeRefused
	p := strings.TrimPrefix(r.opts.Stage.Path, "~/")
	return &HostError{Host: h.addr.Name(), Step: "prepare", Err: fmt.Errorf("%w: %s; create it on the host first, e.g.: ssh %s 'mkdir -p %s/shared && cat > %s/shared/%s' < %s",
		ErrSharedMissing, strings.Join(paths, ", "), h.spec, p, p, paths[0], paths[0])}
}

// refuseUntracked refuses a host whose untracked files the switch would
// overwrite or delete, unless the user said to discard host edits.
func (r *rollout) refuseUntracked(h *hostDeploy, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	if r.opts.DiscardEdits {
		h.log.Printf("discardEdits: %d untracked file(s) on the host will be overwritten: %s", len(paths), strings.Join(paths, ", "))
		return nil
	}
	h.res.Outcome = OutcomeRefused
	r.audit(h, OutcomeRefused, "untracked files on the host would be lost")
	return &UntrackedError{Host: h.addr.Name(), Paths: paths, Hint: r.opts.Hints.DiscardEdits}
}

// cutoverAll is phase two: batches of hosts, one batch after another. An
// interrupt stops it from starting a batch, and from waiting for the one
// under way (see close).
func (r *rollout) cutoverAll(ctx context.Context) error {
	var todo []*hostDeploy
	for _, h := range r.hosts {
		if h.res.Skipped {
			h.res.Outcome = OutcomeOK
			continue
		}
		todo = append(todo, h)
	}
	if len(todo) == 0 {
		return nil
	}
	size, _ := batchSize(r.opts.Batch, len(todo))
	batches := (len(todo) + size - 1) / size
	interrupted := "the " + string(r.op.action()) + " was interrupted"
	var errs []error
	for b := 0; b < batches; b++ {
		batch := todo[b*size : min(len(todo), (b+1)*size)]
		if ctx.Err() != nil || len(errs) > 0 {
			reason := "an earlier batch failed"
			if ctx.Err() != nil {
				reason = interrupted
				errs = append(errs, fmt.Errorf("%w: %d host(s) were not cut over", ErrInterrupted, len(todo)-b*size))
			}
			for _, h := range todo[b*size:] {
				h.res.Outcome = OutcomeAborted
				if ctx.Err() == nil {
					r.audit(h, OutcomeAborted, reason)
				}
				h.log.Printf("not cut over (%s); still on %s", reason, short(h.fromSrc))
			}
			break
		}
		names := make([]string, len(batch))
		for i, h := range batch {
			names[i] = h.addr.Name()
		}
		r.con.Printf("phase 2/2: batch %d/%d: %v", b+1, batches, names)
		done := make(chan *hostDeploy, len(batch))
		for _, h := range batch {
			r.cutovers.Add(1)
			go func() {
				defer r.cutovers.Done()
				h.cutErr = r.op.cutover(h)
				if hook := r.opts.Hooks.AfterHost; hook != nil {
					if err := hook(context.WithoutCancel(ctx), h.result()); err != nil {
						h.log.Printf("the AfterHost hook failed: %v", err)
					}
				}
				done <- h
			}()
		}
		pending := len(batch)
		var grace <-chan time.Time
		for pending > 0 {
			select {
			case h := <-done:
				pending--
				h.cutDone = true
				if h.cutErr != nil {
					errs = append(errs, h.cutErr)
				}
			case <-ctx.Done():
				if grace == nil {
					grace = time.After(closeGrace)
				}
			case <-grace:
				// Stop waiting: the hosts finish their step by themselves.
				var busy []string
				for _, h := range batch {
					if !h.cutDone {
						h.res.Finishing = true
						busy = append(busy, h.addr.Name())
					}
				}
				r.con.Printf("interrupted: %s still finishing the step under way; each finishes it, records it in its audit log and releases its lock by itself (see: %s)", strings.Join(busy, ", "), r.opts.Hints.Status)
				for _, h := range todo[min(len(todo), (b+1)*size):] {
					h.res.Outcome = OutcomeAborted
					h.log.Printf("not cut over (%s); still on %s", interrupted, short(h.fromSrc))
				}
				return errors.Join(append(errs, fmt.Errorf("%w while %d host(s) were cutting over", ErrInterrupted, len(busy)))...)
			}
		}
		if ctx.Err() != nil && b == batches-1 {
			errs = append(errs, fmt.Errorf("%w (the last batch had finished)", ErrInterrupted))
		}
	}
	return errors.Join(errs...)
}

// switchTo is the cutover of a deploy and of a rollback: stop, switch to
// h.to, start, check on one host, and back to h.from when a step fails
// after the switch. The host writes the audit line of each cutover itself.
func (r *rollout) switchTo(h *hostDeploy) error {
	name := h.addr.Name()
	sess := h.session()
	t := timeouts{stop: r.opts.StopTimeout, start: r.opts.StartTimeout, check: r.opts.CheckTimeout, build: r.opts.BuildTimeout}
	head := r.auditHead(h, h.to, h.toSrc)
	if r.opts.Stage.Overlap && r.opts.Stage.mode() == ModeRelease {
		head.Cutover = "overlap"
	}
	res, err := sess.cutover(h.to, OutcomeOK, head, t, r.opts.CutoverTimeout, r.httpCheck(h, h.toSrc))
	h.res.Stop, h.res.Reset, h.res.Build, h.res.Start, h.res.Downtime = res.stop, res.reset, res.build, res.start, res.downtime
	if err != nil {
		h.res.Outcome, h.res.Err = OutcomeFailed, &HostError{Host: name, Step: "cutover", Err: err}
		return h.res.Err
	}
	step := res.failure(h.toSrc, t)
	if step == nil {
		h.res.Outcome = OutcomeOK
		switch {
		case res.overlap:
			h.log.Printf("overlap: no downtime (start %s, then the switch and the old one's stop %s)", round(res.start), round(res.stop))
		case res.buildStatus == "0":
			h.log.Printf("downtime %s (stop %s, switch %s, build %s, start %s)", round(res.downtime), round(res.stop), round(res.reset), round(res.build), round(res.start))
		default:
			h.log.Printf("downtime %s (stop %s, switch %s, start %s)", round(res.downtime), round(res.stop), round(res.reset), round(res.start))
		}
		return nil
	}
	h.res.Outcome = OutcomeFailed
	h.res.Err = &HostError{Host: name, Step: "cutover", Err: step}
	if res.resetStatus == "f" {
		h.res.Outcome = OutcomeRolledBack // the host put itself back
		h.res.Err = &HostError{Host: name, Step: "cutover", Err: fmt.Errorf("%w (%w)", step, ErrRolledBack)}
	}
	if !res.moved() || r.opts.NoRollback || h.from.IsZero() {
		return h.res.Err
	}
	h.log.Printf("%v; rolling back to %s", step, r.describe(h.fromSrc))
	rb, err := sess.cutover(h.from, OutcomeRolledBack, r.auditHead(h, h.from, h.fromSrc), t, r.opts.CutoverTimeout, r.httpCheck(h, h.fromSrc))
	if err == nil {
		err = rb.failure(h.fromSrc, t)
	}
	if err != nil {
		h.log.Printf("rollback to %s failed too: %v", short(h.fromSrc), err)
		return h.res.Err
	}
	h.res.Outcome = OutcomeRolledBack
	h.res.Err = &HostError{Host: name, Step: "cutover", Err: fmt.Errorf("%w; %w to %s", step, ErrRolledBack, r.describe(h.fromSrc))}
	h.log.Printf("rolled back to %s", r.describe(h.fromSrc))
	return h.res.Err
}

// summary prints one line per host.
func (r *rollout) summary() {
	rows := make([]console.Row, 0, len(r.hosts))
	for _, h := range r.hosts {
		result := string(h.res.Outcome)
		switch {
		case h.res.Finishing:
			result = "finishing on the host"
		case h.res.Skipped:
			result = "ok (already there)"
		case result == "":
			result = string(OutcomeFailed)
		}
		rows = append(rows, console.Row{
			Host: h.res.Host, From: short(h.fromSrc), To: short(h.toSrc),
			Seed: h.res.Seed, Downtime: h.res.Downtime, Result: result,
		})
	}
	r.con.Summary(rows, time.Since(r.started))
}
