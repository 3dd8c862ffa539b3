package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/console"
	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
	"github.com/gitric/gitric/gitrictasks/internal/remote"
)

// HostResult is what happened on one host.
type HostResult struct {
	Host     string
	From     plumbing.Hash // the host's commit before (zero: none)
	To       plumbing.Hash
	Skipped  bool   // already on To
	Result   string // ResultOK, ResultFailed, ResultRolledBack, ResultRefused, ResultAborted
	Seed     time.Duration
	Objects  int
	Bytes    int64
	Stop     time.Duration
	Reset    time.Duration
	Start    time.Duration
	Downtime time.Duration // from the stop command's start to the start command's end
	Err      error
}

// Result is the outcome of a deploy or rollback.
type Result struct {
	Commit localrepo.Commit // for a rollback, zero: each host has its own target
	Hosts  []HostResult
}

// Run deploys opts.Rev to the hosts of opts.Stage (and opts.Role).
//
// Before it connects anywhere it checks the options, the revision and the
// working copy. Phase one then connects to every host, takes the stage's
// lock there and seeds it, opts.Parallel hosts at a time, changing no
// working copy and no service. Only when every host is seeded does phase
// two cut them over (stop, reset, start, check), opts.Batch hosts at a
// time. A failed batch ends the rollout: its failed hosts go back to their
// previous commit (unless opts.NoRollback) and later hosts are not touched.
// Every host's audit log records what happened there.
func Run(ctx context.Context, opts Options) (*Result, error) {
	d, err := prepare(opts, ActionDeploy)
	if err != nil {
		return nil, err
	}
	repo, err := localrepo.Open(d.opts.Dir)
	if err != nil {
		return nil, err
	}
	d.repo = repo
	commit, err := repo.Resolve(d.opts.Rev)
	if err != nil {
		return nil, err
	}
	d.commit = commit
	paths, err := repo.Changes(localrepo.StatusOptions{IgnoreUntracked: d.opts.IgnoreUntracked})
	if err != nil {
		return nil, err
	}
	if len(paths) > 0 {
		if !d.opts.AllowDirty {
			return nil, &DirtyError{Root: repo.Root(), Paths: paths, Hint: d.opts.Hints.AllowDirty}
		}
		d.con.Printf("allowDirty: %d uncommitted change(s) left out; deploying the committed %s", len(paths), commit.Short())
	}
	if d.opts.Stage.Submodules {
		if err := d.findSubmodules(); err != nil {
			return nil, err
		}
	}
	d.con.Printf("deploying %s to %s: %d host(s), %s", commit, d.opts.Stage.Name, len(d.hosts), d.opts.Stage.Path)
	d.packs = &packs{share: len(d.hosts) > 1, parts: func(haves []plumbing.Hash) []localrepo.PackPart {
		parts := []localrepo.PackPart{{Repo: d.repo, Want: d.commit.Hash, Haves: haves}}
		for i, sub := range d.subs {
			parts = append(parts, localrepo.PackPart{Repo: d.subRepos[i], Want: sub.Commit, Haves: haves})
		}
		return parts
	}}
	defer d.packs.remove()
	return d.run(ctx)
}

// findSubmodules lists the commit's submodules, recursively, and checks
// that the local clone has every one of their commits.
func (d *deployment) findSubmodules() error {
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

// Rollback puts every host of the stage back on the commit deployed before
// its current one, as its audit log records, through the same two phases
// as Run; nothing is pushed, since the host has the objects already.
func Rollback(ctx context.Context, opts Options) (*Result, error) {
	d, err := prepare(opts, ActionRollback)
	if err != nil {
		return nil, err
	}
	if repo, err := localrepo.Open(d.opts.Dir); err == nil {
		d.repo = repo // only to name commits in messages
	}
	d.con.Printf("rolling back %s: %d host(s), %s", d.opts.Stage.Name, len(d.hosts), d.opts.Stage.Path)
	return d.run(ctx)
}

// Swap exchanges the live and next working copies of a blue/green stage
// on every host (two renames of symlinks each), in the batches of
// opts.Batch, under the stage's lock.
func Swap(ctx context.Context, opts Options) (*Result, error) {
	if opts.Stage.mode() != ModeBlueGreen {
		return nil, fmt.Errorf("%w: stage %q: swap is for blue/green stages (Mode %q), not %q", ErrInvalidOptions, opts.Stage.Name, ModeBlueGreen, opts.Stage.mode())
	}
	d, err := prepare(opts, ActionSwap)
	if err != nil {
		return nil, err
	}
	if repo, err := localrepo.Open(d.opts.Dir); err == nil {
		d.repo = repo
	}
	d.con.Printf("swapping live and next on %s: %d host(s), %s", d.opts.Stage.Name, len(d.hosts), d.opts.Stage.Path)
	return d.run(ctx)
}

// prepare checks opts and sets up the hosts and the console.
func prepare(opts Options, action string) (*deployment, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.defaults()
	hosts, _ := opts.Stage.hostsFor(opts.Role) // Validate checked it
	d := &deployment{opts: opts, action: action}
	names := make([]string, len(hosts))
	addrs := make([]remote.Address, len(hosts))
	for i, h := range hosts {
		addrs[i], _ = remote.ParseAddress(h) // Validate checked them
		names[i] = addrs[i].Name()
	}
	d.con = console.New(opts.Out, console.Options{JSON: opts.JSON}, names...)
	for _, a := range addrs {
		d.hosts = append(d.hosts, &hostDeploy{addr: a, log: d.con.Host(a.Name()), res: HostResult{Host: a.Name()}})
	}
	d.started = time.Now()
	return d, nil
}

type deployment struct {
	opts     Options
	action   string
	repo     *localrepo.Repo // nil for a rollback outside a repository
	commit   localrepo.Commit
	subs     []localrepo.Submodule
	subRepos []*localrepo.Repo // the local repositories of subs
	con      *console.Console
	hosts    []*hostDeploy
	started  time.Time
	packs    *packs
}

type hostDeploy struct {
	mu      sync.Mutex // guards sess, which phase one may end on cancellation
	addr    remote.Address
	log     *console.Writer
	dialed  chan struct{} // closed when conn or dialErr is set
	dialErr error
	conn    *remote.Host
	sess    *session
	state   hostState
	res     HostResult
}

func (d *deployment) run(ctx context.Context) (*Result, error) {
	defer d.close()
	err := d.seedAll(ctx)
	if err == nil {
		err = d.cutoverAll(ctx)
	}
	d.summary()
	r := &Result{Commit: d.commit}
	for _, h := range d.hosts {
		r.Hosts = append(r.Hosts, h.res)
	}
	return r, err
}

func (h *hostDeploy) session() *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sess
}

// close ends every host's script (releasing its lock) and connection.
func (d *deployment) close() {
	var wg sync.WaitGroup
	for _, h := range d.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if h.dialed != nil {
				<-h.dialed
			}
			if h.sess != nil {
				_ = h.sess.wait()
			}
			if h.conn != nil {
				h.conn.Close()
			}
		}()
	}
	wg.Wait()
}

// seedAll is phase one. Any failure fails the deploy before any cutover,
// and is recorded in the audit log of every host that got that far.
func (d *deployment) seedAll(ctx context.Context) error {
	verb := "seeding"
	if d.action != ActionDeploy {
		verb = "preparing"
	}
	d.con.Printf("phase 1/2: %s %d host(s), %d at a time", verb, len(d.hosts), d.opts.Parallel)
	// Cancelled in phase one: end every script's input, so that each one
	// stops where it is, changes nothing and releases its lock.
	defer context.AfterFunc(ctx, func() {
		for _, h := range d.hosts {
			if s := h.session(); s != nil {
				_ = s.proc.Stdin.Close()
			}
		}
	})()
	// Connections are set up all at once; the scripts, which take the
	// locks, start on the first host before any other: of two deploys
	// started at once, the one that loses there is refused before it
	// changes anything anywhere, and the winner goes on.
	d.dialAll(ctx)
	first := d.hosts[0]
	if first.res.Err = d.open(ctx, first); first.res.Err != nil {
		d.each(func(h *hostDeploy) {
			if h != first {
				h.res.Result = ResultAborted
			}
		})
		return d.abort([]error{first.res.Err})
	}
	sem := make(chan struct{}, d.opts.Parallel)
	var wg sync.WaitGroup
	for _, h := range d.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				if h != first {
					h.res.Err = d.open(ctx, h)
				}
				if h.res.Err == nil {
					h.res.Err = d.seed(ctx, h)
				}
			case <-ctx.Done():
				h.res.Err = &HostError{Host: h.addr.Name(), Step: "connect", Err: fmt.Errorf("%w before this host was reached", ErrInterrupted)}
			}
		}()
	}
	wg.Wait()
	var errs []error
	for _, h := range d.hosts {
		if h.res.Err != nil {
			errs = append(errs, h.res.Err)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrInterrupted, d.abort(errs))
	}
	return d.abort(errs)
}

// abort ends a deploy in phase one: no host is cut over, and the hosts
// that were ready say so in their audit logs.
func (d *deployment) abort(errs []error) error {
	reason := fmt.Sprintf("%d of %d host(s) failed in phase 1", len(errs), len(d.hosts))
	d.each(func(h *hostDeploy) {
		switch {
		case h.res.Result != "":
		case h.res.Err != nil:
			h.res.Result = ResultFailed
		default:
			h.res.Result = ResultAborted
			h.audit(d, ResultAborted, reason, 0)
		}
	})
	if len(d.hosts) > 1 {
		d.con.Printf("%v: %s; no host was changed", ErrNotDeployed, reason)
	}
	return errors.Join(errs...)
}

// each runs fn for every host at once and waits.
func (d *deployment) each(fn func(h *hostDeploy)) {
	var wg sync.WaitGroup
	for _, h := range d.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(h)
		}()
	}
	wg.Wait()
}

// audit appends an entry to the host's audit log, if its script runs.
func (h *hostDeploy) audit(d *deployment, result, reason string, downtime time.Duration) {
	if h.sess == nil {
		return
	}
	e := AuditEntry{
		Time: time.Now().UTC(), Who: d.opts.Who, Action: d.action,
		To: hashString(h.res.To), From: hashString(h.res.From),
		Result: result, Reason: reason, DowntimeMS: downtime.Milliseconds(),
	}
	if err := h.sess.logAudit(e); err != nil {
		h.log.Printf("could not write the audit log: %v", err)
	}
}

func hashString(h plumbing.Hash) string {
	if h.IsZero() {
		return ""
	}
	return h.String()
}

// dialAll connects to every host in the background, opts.Parallel at a
// time; open waits for its host's connection.
func (d *deployment) dialAll(ctx context.Context) {
	sem := make(chan struct{}, d.opts.Parallel)
	for _, h := range d.hosts {
		h.dialed = make(chan struct{})
		go func() {
			defer close(h.dialed)
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				h.dialErr = &HostError{Host: h.addr.Name(), Step: "connect", Err: fmt.Errorf("%w before this host was reached", ErrInterrupted)}
				return
			}
			sshCfg := d.opts.SSH
			if d.opts.Verbose {
				sshCfg.Logf = func(format string, args ...any) { h.log.Printf(format, args...) }
			}
			conn, err := remote.Dial(ctx, h.addr, sshCfg)
			if err != nil {
				h.dialErr = &HostError{Host: h.addr.Name(), Step: "connect", Err: err}
				return
			}
			h.conn = conn
		}()
	}
}

// open connects to the host and starts its script, which takes the lock
// and reports the host's state.
func (d *deployment) open(ctx context.Context, h *hostDeploy) error {
	name := h.addr.Name()
	<-h.dialed
	if h.dialErr != nil {
		return h.dialErr
	}
	conn := h.conn
	st := d.opts.Stage
	vars := scriptVars{
		Path: st.Path, Stop: st.Stop, Start: st.Start, Check: st.Check,
		Mode: st.mode(), Keep: st.Keep, Colors: st.Colors, Sudo: st.Sudo, Submodules: st.Submodules,
		CheckWait: d.opts.CheckTimeout,
		Lock:      fmt.Sprintf("%s since %s (%s %s)", d.opts.Who, time.Now().UTC().Format(time.RFC3339), d.action, d.commitName()),
		Push:      d.action == ActionDeploy,
		Audit:     d.action == ActionRollback,
	}
	// The script's session outlives a cancelled ctx: a cutover under way
	// must finish. Phase one ends the scripts itself on cancellation.
	sess, state, err := openSession(context.WithoutCancel(ctx), conn, vars, hostScript, h.log)
	h.mu.Lock()
	h.sess, h.state = sess, state
	h.mu.Unlock()
	if err != nil {
		return &HostError{Host: name, Step: "prepare", Err: err}
	}
	h.res.From = state.head
	h.res.To = d.commit.Hash
	if state.locked != "" {
		h.res.Result = ResultRefused
		h.audit(d, ResultRefused, "locked by "+state.locked, 0)
		return &LockedError{Host: name, Owner: state.locked, Hint: d.opts.Hints.Unlock}
	}
	if len(state.changed) > 0 && !d.opts.DiscardEdits && d.action != "swap" {
		h.res.Result = ResultRefused
		h.audit(d, ResultRefused, "working copy edited on the host", 0)
		return &ServerEditsError{Host: name, Paths: state.changed, Hint: d.opts.Hints.DiscardEdits}
	}
	return nil
}

// seed pushes the commit to a host opened by open (for a rollback: picks
// the host's target commit).
func (d *deployment) seed(ctx context.Context, h *hostDeploy) error {
	name, sess, st := h.addr.Name(), h.sess, h.state
	if d.action == ActionSwap {
		return nil
	}
	if d.action == ActionRollback {
		return d.prepareRollback(h, st)
	}
	if st.head == d.commit.Hash {
		h.res.Skipped = true
		h.log.Printf("already on %s; nothing to do", d.commit)
		if _, err := sess.push(ctx, nil, st.head, nil, nil); err != nil {
			return &HostError{Host: name, Step: "seed", Err: err}
		}
		return nil
	}
	if !st.head.IsZero() && !d.opts.ForcePush {
		ok, err := d.repo.IsAncestor(st.head, d.commit.Hash)
		if err != nil {
			return &HostError{Host: name, Step: "seed", Err: err}
		}
		if !ok {
			h.res.Result = ResultRefused
			// End receive-pack before writing the audit line.
			if _, err := sess.push(ctx, nil, st.head, nil, nil); err == nil {
				h.audit(d, ResultRefused, "non-fast-forward", 0)
			}
			return &NonFastForwardError{Host: name, Commit: d.commit.Hash.String(), Current: d.describe(st.head), Hint: d.opts.Hints.ForcePush}
		}
	}
	var progress io.Writer
	if d.opts.Verbose {
		progress = h.log
	}
	start := time.Now()
	targets := []refTarget{{seedRef, d.commit.Hash}}
	for _, sub := range d.subs {
		// A ref for each submodule commit ever deployed keeps its objects
		// from git gc on the host, for rollbacks too.
		targets = append(targets, refTarget{"refs/gitric/submodule/" + sub.Commit.String(), sub.Commit})
	}
	stats, err := sess.push(ctx, targets, st.head, func(w io.Writer, haves []plumbing.Hash) (int, int, error) {
		ps, err := d.packs.write(ctx, w, haves)
		return ps.Commits, ps.Objects, err
	}, progress)
	if err != nil {
		return &HostError{Host: name, Step: "seed", Err: err}
	}
	h.res.Seed, h.res.Objects, h.res.Bytes = time.Since(start), stats.objects, stats.bytes
	if stats.objects == 0 {
		h.log.Printf("seeded: the host has every object already (it is on %s)", short(st.head))
	} else {
		on := "was empty"
		if !st.head.IsZero() {
			on = "is on " + short(st.head)
		}
		h.log.Printf("seeded %d commit(s), %d object(s), %s in %s (the host %s)", stats.commits, stats.objects, byteSize(stats.bytes), round(h.res.Seed), on)
	}
	return nil
}

// prepareRollback picks the host's rollback target from its audit log.
func (d *deployment) prepareRollback(h *hostDeploy, st hostState) error {
	prev := previousCommit(st.audit)
	if prev == "" || !plumbing.IsHash(prev) {
		h.res.Result = ResultRefused
		return &HostError{Host: h.addr.Name(), Step: "prepare", Err: fmt.Errorf("%w: the host's audit log records no earlier successful deploy", ErrNoPrevious)}
	}
	h.res.To = plumbing.NewHash(prev)
	if h.res.To == st.head {
		h.res.Skipped = true
		h.log.Printf("already on %s; nothing to do", d.describe(h.res.To))
		return nil
	}
	h.log.Printf("will roll back from %s to %s", d.describe(st.head), d.describe(h.res.To))
	return nil
}

func (d *deployment) commitName() string {
	if d.commit.Hash.IsZero() {
		return "previous commits"
	}
	return d.commit.Short()
}

// describe names a commit for a message: hash and subject when we know it.
func (d *deployment) describe(h plumbing.Hash) string {
	if h.IsZero() {
		return "nothing"
	}
	if d.repo != nil {
		if c, ok := d.repo.Lookup(h); ok {
			return c.Short() + " (" + c.Subject + ")"
		}
	}
	return h.String()[:7]
}

// cutoverAll is phase two: batches of hosts, one batch after another.
func (d *deployment) cutoverAll(ctx context.Context) error {
	var todo []*hostDeploy
	for _, h := range d.hosts {
		if h.res.Skipped {
			h.res.Result = ResultOK
			continue
		}
		todo = append(todo, h)
	}
	if len(todo) == 0 {
		return nil
	}
	size, _ := batchSize(d.opts.Batch, len(todo))
	batches := (len(todo) + size - 1) / size
	var errs []error
	for b := 0; b < batches; b++ {
		batch := todo[b*size : min(len(todo), (b+1)*size)]
		if ctx.Err() != nil || len(errs) > 0 {
			reason := "an earlier batch failed"
			if ctx.Err() != nil {
				reason = "the deploy was interrupted"
				if len(errs) == 0 {
					errs = append(errs, fmt.Errorf("%w: %d host(s) were not cut over", ErrInterrupted, len(todo)-b*size))
				}
			}
			for _, h := range todo[b*size:] {
				h.res.Result = ResultAborted
				h.audit(d, ResultAborted, reason, 0)
				h.log.Printf("not cut over (%s); still on %s", reason, short(h.res.From))
			}
			break
		}
		names := make([]string, len(batch))
		for i, h := range batch {
			names[i] = h.addr.Name()
		}
		d.con.Printf("phase 2/2: batch %d/%d: %v", b+1, batches, names)
		var wg sync.WaitGroup
		var mu sync.Mutex
		for _, h := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.cutover(h); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
	}
	return errors.Join(errs...)
}

// cutover runs stop, reset, start, check on one host, and rolls it back
// when a step fails. It does not listen to cancellation: a host step under
// way is finished, so that no service is left stopped (the script on the
// host does the same if the connection drops).
func (d *deployment) cutover(h *hostDeploy) error {
	name := h.addr.Name()
	timer := time.AfterFunc(d.opts.CutoverTimeout, func() {
		h.log.Printf("cutover took longer than %s; closing the connection", d.opts.CutoverTimeout)
		h.conn.Close()
	})
	defer timer.Stop()
	if d.action == ActionSwap {
		begin := time.Now()
		if err := h.sess.swap(); err != nil {
			h.res.Result, h.res.Err = ResultFailed, &HostError{Host: name, Step: "swap", Err: err}
			h.audit(d, ResultFailed, err.Error(), 0)
			return h.res.Err
		}
		h.res.Result, h.res.Downtime = ResultOK, time.Since(begin)
		h.audit(d, ResultOK, "", 0)
		return nil
	}
	r, err := h.sess.cutover(h.res.To)
	h.res.Stop, h.res.Reset, h.res.Start, h.res.Downtime = r.stop, r.reset, r.start, r.downtime
	if err != nil {
		h.res.Result, h.res.Err = ResultFailed, &HostError{Host: name, Step: "cutover", Err: err}
		return h.res.Err
	}
	step := r.failure(h.res.To)
	if step == nil {
		h.res.Result = ResultOK
		h.log.Printf("downtime %s (stop %s, reset %s, start %s)", round(r.downtime), round(r.stop), round(r.reset), round(r.start))
		h.audit(d, ResultOK, "", r.downtime)
		return nil
	}
	h.res.Result = ResultFailed
	h.res.Err = &HostError{Host: name, Step: "cutover", Err: step}
	stopFailed := r.stopStatus != "0" && r.stopStatus != "-"
	moved := !stopFailed && r.resetStatus == "0" // the working copy is on To
	if !moved || d.opts.NoRollback || h.res.From.IsZero() {
		h.audit(d, ResultFailed, step.Error(), r.downtime)
		return h.res.Err
	}
	h.log.Printf("%v; rolling back to %s", step, d.describe(h.res.From))
	rb, err := h.sess.cutover(h.res.From)
	if err == nil {
		err = rb.failure(h.res.From)
	}
	if err != nil {
		h.log.Printf("rollback to %s failed too: %v", short(h.res.From), err)
		h.audit(d, ResultFailed, step.Error()+"; rollback failed: "+err.Error(), r.downtime)
		return h.res.Err
	}
	h.res.Result = ResultRolledBack
	h.audit(d, ResultRolledBack, step.Error(), r.downtime)
	h.log.Printf("rolled back to %s", d.describe(h.res.From))
	return h.res.Err
}

// summary prints one line per host.
func (d *deployment) summary() {
	rows := make([]console.Row, 0, len(d.hosts))
	for _, h := range d.hosts {
		result := h.res.Result
		if result == "" {
			result = ResultFailed
		}
		if h.res.Skipped {
			result = "ok (already there)"
		}
		rows = append(rows, console.Row{
			Host: h.res.Host, From: short(h.res.From), To: short(h.res.To),
			Seed: h.res.Seed, Downtime: h.res.Downtime, Result: result,
		})
	}
	d.con.Summary(rows, time.Since(d.started))
}

func short(h plumbing.Hash) string {
	if h.IsZero() {
		return "-"
	}
	return h.String()[:7]
}

func round(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond).String()
	default:
		return d.Round(time.Microsecond).String()
	}
}
