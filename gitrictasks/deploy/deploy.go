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
	"github.com/gitric/gitric/gitrictasks/internal/hostscript"
	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
	"github.com/gitric/gitric/gitrictasks/internal/remote"
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
func Run(ctx context.Context, opts Options) (*Result, error) {
	d, err := prepare(ctx, opts, ActionDeploy)
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
	paths = d.inSubdir(paths)
	if len(paths) > 0 {
		if !d.opts.AllowDirty {
			return nil, &DirtyError{Root: repo.Root(), Paths: paths, Hint: d.opts.Hints.AllowDirty}
		}
		d.con.Printf("allowDirty: %d uncommitted change(s) left out; deploying the committed %s", len(paths), commit.Short())
	}
	if repo.Partial() {
		return nil, fmt.Errorf("%w: %s is a partial clone (git clone --filter): objects the hosts need are not in it. "+
			"Deploy from a full clone (in CI: actions/checkout with fetch-depth: 0 and no filter), or fetch them: git fetch --refetch", ErrIncompleteClone, repo.Root())
	}
	if d.shallow, err = repo.Shallow(); err != nil {
		return nil, err
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
	d.con.Printf("deploying %s to %s: %d host(s), %s", commit, d.opts.Stage.Name, len(d.hosts), d.opts.Stage.Path)
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

// ErrIncompleteClone means the local clone lacks history or objects that
// a deploy needs (a shallow or partial clone).
var ErrIncompleteClone = errors.New("the local clone is incomplete")

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
// as Run; nothing is pushed, since the host has the objects already. A
// host whose audit log disagrees with what it runs is refused.
func Rollback(ctx context.Context, opts Options) (*Result, error) {
	d, err := prepare(ctx, opts, ActionRollback)
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
	d, err := prepare(ctx, opts, ActionSwap)
	if err != nil {
		return nil, err
	}
	if repo, err := localrepo.Open(d.opts.Dir); err == nil {
		d.repo = repo
	}
	d.con.Printf("swapping live and next on %s: %d host(s), %s", d.opts.Stage.Name, len(d.hosts), d.opts.Stage.Path)
	return d.run(ctx)
}

// prepare checks opts, refuses a host listed twice, and sets up the hosts
// and the console.
func prepare(ctx context.Context, opts Options, action Action) (*deployment, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.defaults()
	hosts, _ := opts.Stage.hostsFor(opts.Role) // Validate checked it
	d := &deployment{opts: opts, action: action, dial: opts.dial}
	if d.dial == nil {
		ssh := opts.SSH.config()
		d.dial = func(ctx context.Context, a remote.Address, logf func(string, ...any)) (link, error) {
			cfg := ssh
			cfg.Logf = logf
			h, err := remote.Dial(ctx, a, cfg)
			if err != nil {
				return nil, err
			}
			return sshLink{h}, nil
		}
	}
	names := make([]string, len(hosts))
	addrs := make([]remote.Address, len(hosts))
	for i, h := range hosts {
		addrs[i], _ = remote.ParseAddress(h) // Validate checked them
		names[i] = addrs[i].Name()
	}
	if opts.dial == nil {
		if err := sameMachine(ctx, addrs, opts.SSH.config()); err != nil {
			return nil, err
		}
	}
	d.con = console.New(opts.Out, console.Options{JSON: opts.JSON}, names...)
	for i, a := range addrs {
		d.hosts = append(d.hosts, &hostDeploy{addr: a, spec: hosts[i], log: d.con.Host(a.Name()), res: HostResult{Host: a.Name()}})
	}
	d.started = time.Now()
	return d, nil
}

// ErrDuplicateHost means a stage reaches one machine through two entries.
var ErrDuplicateHost = errors.New("the same host is listed twice")

// sameMachine refuses a host list that reaches one machine twice (the same
// name twice, two aliases of one HostName and port, two users of one
// host): two scripts would fight over one lock and one working copy.
func sameMachine(ctx context.Context, addrs []remote.Address, cfg remote.Config) error {
	seen := map[string]string{}
	for _, a := range addrs {
		key := strings.ToLower(a.Name())
		if t, err := remote.Resolve(ctx, a, cfg); err == nil {
			key = t.Identity().Machine
		}
		if prev, ok := seen[key]; ok {
			return fmt.Errorf("%w: %s and %s both reach %s; list each machine once (one deploy path per machine)", ErrDuplicateHost, prev, a.Name(), key)
		}
		seen[key] = a.Name()
	}
	return nil
}

type deployment struct {
	opts   Options
	action Action
	dial   dialFunc
	repo   *localrepo.Repo  // nil for a rollback outside a repository
	commit localrepo.Commit // the source commit: what every message names
	// target is what the hosts check out: the commit, or gitric's deploy
	// commit made of it (artifacts, a subdirectory); targetTree its tree.
	target, targetTree plumbing.Hash
	shallow            []plumbing.Hash // the local clone's shallow boundary
	subs               []localrepo.Submodule
	subRepos           []*localrepo.Repo // the local repositories of subs
	con                *console.Console
	hosts              []*hostDeploy
	started            time.Time
	packs              *packs
	secrets            map[string]string // the stage's secrets, by name
	cutovers           sync.WaitGroup    // the cutover goroutines
	// abortReason says why phase one ended when no host failed (a hook).
	abortReason string
}

// dialFunc connects to a host (the seam the tests replace).
type dialFunc func(ctx context.Context, a remote.Address, logf func(string, ...any)) (link, error)

type hostDeploy struct {
	mu      sync.Mutex // guards sess, which phase one may end on cancellation
	addr    remote.Address
	spec    string // the host as the stage lists it
	log     *console.Writer
	dialed  chan struct{} // closed when conn or dialErr is set
	dialErr error
	conn    link
	sess    *session
	state   hostState
	// from and to are the commits checked out before and after; fromSrc
	// and toSrc the source commits they are (the same, unless gitric
	// made a deploy commit).
	from, to       plumbing.Hash
	fromSrc, toSrc plumbing.Hash
	release        string // the release prepared in phase one (release mode)
	// tookOver is the audit line's reason of a lock taken over, written
	// once the script takes commands (a deploy's first ends its seed).
	tookOver string
	res      HostResult
	// cutErr and cutDone are the cutover goroutine's; read after it ends.
	cutErr  error
	cutDone bool
}

func (d *deployment) run(ctx context.Context) (*Result, error) {
	err := d.seedAll(ctx)
	if err == nil {
		err = d.before(ctx)
	}
	if err == nil {
		err = d.cutoverAll(ctx)
	}
	d.close(ctx.Err() != nil)
	d.cutovers.Wait() // a closed session ends a cutover under way at once
	d.summary()
	r := d.result()
	if d.opts.Hooks.After != nil {
		d.opts.Hooks.After(context.WithoutCancel(ctx), r, err)
	}
	return r, err
}

func (d *deployment) result() *Result {
	r := &Result{Commit: publicCommit(d.commit)}
	for _, h := range d.hosts {
		res := h.res
		res.From, res.To = hashString(h.fromSrc), hashString(h.toSrc)
		r.Hosts = append(r.Hosts, res)
	}
	return r
}

// ErrHook means a hook refused the deploy.
var ErrHook = errors.New("refused by a hook")

// before calls the Before hook with what each host will do; its error
// aborts the deploy before any cutover.
func (d *deployment) before(ctx context.Context) error {
	if d.opts.Hooks.Before == nil {
		return nil
	}
	p := &Plan{Commit: publicCommit(d.commit)}
	for _, h := range d.hosts {
		p.Hosts = append(p.Hosts, HostPlan{Host: h.addr.Name(), From: hashString(h.fromSrc), To: hashString(h.toSrc), Already: h.res.Skipped, Steps: d.steps(h.from.IsZero())})
	}
	if err := d.opts.Hooks.Before(ctx, p); err != nil {
		d.abortReason = "the Before hook refused the deploy"
		return d.abort(ctx, []error{fmt.Errorf("%w: %w", ErrHook, err)})
	}
	return nil
}

func publicCommit(c localrepo.Commit) Commit {
	if c.Hash.IsZero() {
		return Commit{}
	}
	return Commit{Hash: c.Hash.String(), Subject: c.Subject}
}

func (h *hostDeploy) session() *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sess
}

// closeGrace is how long an interrupted deploy waits for the hosts' steps
// under way before it stops waiting (mage gives its targets 5 seconds).
const closeGrace = 3500 * time.Millisecond

// close ends every host's script (releasing its lock) and connection. When
// interrupted, it waits at most closeGrace for a host step under way, then
// leaves it to the host, which finishes the step, writes its audit line
// and releases its lock by itself.
func (d *deployment) close(interrupted bool) {
	var wg sync.WaitGroup
	for _, h := range d.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if h.dialed != nil {
				<-h.dialed
			}
			s := h.session()
			if s != nil && h.res.Finishing {
				s.abandon() // its host finishes the step by itself
			} else if s != nil {
				done := make(chan struct{})
				go func() { _ = s.wait(); close(done) }()
				var bound <-chan time.Time
				if interrupted {
					bound = time.After(closeGrace)
				}
				select {
				case <-done:
				case <-bound:
					s.abandon()
				}
			}
			if h.conn != nil {
				h.conn.close()
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
	// stops where it is, changes nothing and releases its lock. A step
	// that goes on regardless (a release's build) is waited for closeGrace,
	// then left to its host, which finishes it and releases its lock.
	phaseDone := make(chan struct{})
	defer close(phaseDone)
	defer context.AfterFunc(ctx, func() {
		for _, h := range d.hosts {
			if s := h.session(); s != nil {
				_ = s.proc.stdin.Close()
			}
		}
		select {
		case <-phaseDone:
		case <-time.After(closeGrace):
			for _, h := range d.hosts {
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
	d.dialAll(ctx)
	first := d.hosts[0]
	if first.res.Err = d.open(ctx, first); first.res.Err != nil {
		d.each(func(h *hostDeploy) {
			if h != first {
				h.res.Outcome = OutcomeAborted
			}
		})
		return d.abort(ctx, []error{first.res.Err})
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
		if err := d.once(ctx); err != nil {
			return d.abort(ctx, []error{err})
		}
		return nil
	}
	return d.abort(ctx, errs)
}

// once runs the stage's run-once command on its host, when any host is to
// be cut over: after every host is seeded and built, before any cutover.
func (d *deployment) once(ctx context.Context) error {
	if d.opts.Stage.Once == "" || d.action != ActionDeploy || ctx.Err() != nil {
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

// abort ends a deploy in phase one: no host is cut over, and the hosts
// that were ready say so in their audit logs.
func (d *deployment) abort(ctx context.Context, errs []error) error {
	reason := fmt.Sprintf("%d of %d host(s) failed in phase 1", len(errs), len(d.hosts))
	if d.abortReason != "" {
		reason = d.abortReason
	}
	if ctx.Err() != nil {
		reason = "the deploy was interrupted"
	}
	d.each(func(h *hostDeploy) {
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
				h.audit(d, OutcomeAborted, reason)
			}
		}
	})
	if len(d.hosts) > 1 {
		d.con.Printf("%v: %s; no host was changed", ErrNotDeployed, reason)
	}
	err := errors.Join(errs...)
	if ctx.Err() != nil {
		return fmt.Errorf("%w: %w", ErrInterrupted, err)
	}
	return err
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
func (h *hostDeploy) audit(d *deployment, outcome Outcome, reason string) {
	s := h.session()
	if s == nil {
		return
	}
	e := AuditEntry{
		Time: time.Now().UTC(), Who: d.opts.Who, Action: d.action, Message: d.opts.Message,
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
func (h *hostDeploy) auditHead(d *deployment, action Action, checkout, source plumbing.Hash) auditHead {
	a := auditHead{Who: d.opts.Who, Action: action, From: hashString(h.fromSrc), To: hashString(source), Message: d.opts.Message}
	if checkout != source {
		a.Deployed = hashString(checkout)
	}
	return a
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
			var logf func(string, ...any)
			if d.opts.Verbose {
				logf = func(format string, args ...any) { h.log.Printf(format, args...) }
			}
			conn, err := d.dial(ctx, h.addr, logf)
			if err != nil {
				h.dialErr = &HostError{Host: h.addr.Name(), Step: "connect", Err: err}
				return
			}
			h.conn = conn
		}()
	}
}

// vars are the host script's values for this deployment.
func (d *deployment) vars(action hostscript.Action) hostscript.Vars {
	st := d.opts.Stage
	return hostscript.Vars{
		Action: action,
		Path:   st.Path, Mode: string(st.mode()), Keep: st.Keep,
		Stop: st.Stop, Start: st.Start, Check: st.Check,
		StopWait: d.opts.StopTimeout, StartWait: d.opts.StartTimeout, CheckWait: d.opts.CheckTimeout,
		Colors: st.Colors, Sudo: st.Sudo, Submodules: st.Submodules,
		Adopt: d.opts.TakeOver,
		Build: st.Build, BuildWait: d.opts.BuildTimeout,
		Once: st.Once, OnceWait: d.opts.OnceTimeout,
		Shared:    st.Shared,
		Overlap:   st.Overlap && st.mode() == ModeRelease,
		HTTPCheck: st.HTTPCheck != "",
	}
}

// open starts the host's script, which takes the lock and reports the
// host's state, and refuses what the state does not allow.
func (d *deployment) open(ctx context.Context, h *hostDeploy) error {
	name := h.addr.Name()
	<-h.dialed
	if h.dialErr != nil {
		return h.dialErr
	}
	vars := d.vars(hostscript.Action(d.action))
	vars.Lock = fmt.Sprintf("%s since %s (%s %s)", d.opts.Who, time.Now().UTC().Format(time.RFC3339), d.action, d.commitName())
	if d.opts.Message != "" {
		vars.Lock += ": " + d.opts.Message
	}
	vars.LockWait = d.opts.LockWait
	vars.AuditLog = d.action == ActionRollback
	vars.Env = d.hostEnv(h.spec)
	if d.action == ActionDeploy {
		vars.New = d.target.String()
		vars.Audit = auditHead{Who: d.opts.Who, Action: ActionDeploy, To: d.commit.Hash.String(), Message: d.opts.Message}.prefix()
	}
	// The script's session outlives a cancelled ctx: a cutover under way
	// must finish. Phase one ends the scripts itself on cancellation.
	sess, state, err := openSession(context.WithoutCancel(ctx), h.conn, vars, h.log, d.secrets)
	h.mu.Lock()
	h.sess, h.state = sess, state
	h.mu.Unlock()
	if se := (*ScriptError)(nil); errors.As(err, &se) && se.Code == "foreign" {
		err = fmt.Errorf("%w. To deploy into it anyway: %s", err, d.opts.Hints.TakeOver)
	}
	if err != nil {
		return &HostError{Host: name, Step: "prepare", Err: err}
	}
	h.from, h.fromSrc = state.head, state.sourceOf()
	h.to, h.toSrc = d.target, d.commit.Hash
	if state.tookOver != "" {
		h.log.Printf("took over the lock of a deploy that is gone: %s", lockHolder(state.tookOver))
		h.tookOver = "stale lock of " + lockHolder(state.tookOver)
		if d.action != ActionDeploy {
			h.logTookOver(d)
		}
	}
	if state.locked != "" {
		h.res.Outcome = OutcomeRefused
		h.audit(d, OutcomeRefused, "locked by "+lockHolder(state.locked))
		return &LockedError{Host: name, Owner: lockHolder(state.locked), Hint: d.opts.Hints.Unlock}
	}
	if len(state.changed) > 0 && !d.opts.DiscardEdits && d.action != ActionSwap {
		h.res.Outcome = OutcomeRefused
		// A deploy's script is in git receive-pack: end it first.
		if d.action != ActionDeploy || h.endSeed(ctx, d) == nil {
			h.audit(d, OutcomeRefused, "working copy edited on the host")
		}
		return &ServerEditsError{Host: name, Paths: state.changed, Hint: d.opts.Hints.DiscardEdits}
	}
	return nil
}

// endSeed ends a deploy's git receive-pack on the host with no update,
// after which the script takes commands (the audit log's among them).
func (h *hostDeploy) endSeed(ctx context.Context, d *deployment) error {
	_, err := h.session().push(ctx, nil, h.state.head, nil, nil)
	if err == nil {
		h.logTookOver(d)
	}
	return err
}

// logTookOver writes the audit line of a lock taken over, if any: in a
// deploy, once its seed is over, since until then the host script's input
// is git receive-pack's.
func (h *hostDeploy) logTookOver(d *deployment) {
	if h.tookOver != "" {
		h.audit(d, OutcomeTookOver, h.tookOver)
		h.tookOver = ""
	}
}

// lockHolder is the readable part of a lock's owner ("pid=N boot=B who ...").
func lockHolder(owner string) string {
	if strings.HasPrefix(owner, "pid=") {
		if _, rest, ok := strings.Cut(owner, " boot="); ok {
			if _, who, ok := strings.Cut(rest, " "); ok {
				return who
			}
		}
	}
	return owner
}

// seed pushes the commit to a host opened by open (for a rollback: picks
// the host's target commit), and refuses a host whose untracked files the
// new commit would overwrite.
func (d *deployment) seed(ctx context.Context, h *hostDeploy) error {
	name, sess, st := h.addr.Name(), h.sess, h.state
	switch d.action {
	case ActionSwap:
		return nil
	case ActionRollback:
		if err := d.prepareRollback(h, st); err != nil || h.res.Skipped {
			return err
		}
		untracked, missing, err := sess.verify(h.to)
		if err != nil {
			return &HostError{Host: name, Step: "prepare", Err: err}
		}
		if err := d.refuseMissing(h, missing); err != nil {
			return err
		}
		if err := d.refuseUntracked(h, untracked); err != nil {
			return err
		}
		return d.prepareRelease(h, true)
	}
	end := func() error { return h.endSeed(ctx, d) } // no push
	if st.head == d.target || (d.opts.Stage.Subdir != "" && d.opts.Stage.Artifacts == nil && !st.tree.IsZero() && st.tree == d.targetTree) {
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
			h.audit(d, OutcomeRefused, "history not provable from a shallow clone")
			return &HostError{Host: name, Step: "seed", Err: d.shallowError(st.head, err)}
		}
		if !ok {
			h.res.Outcome = OutcomeRefused
			// End receive-pack before writing the audit line.
			if end() == nil {
				h.audit(d, OutcomeRefused, "non-fast-forward")
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
	if err != nil {
		return &HostError{Host: name, Step: "seed", Err: err}
	}
	h.logTookOver(d)
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

// prepareRelease has a release-mode host check the new release out and
// build it, in phase one, while the old version serves; a blue/green host
// with a Build likewise makes and builds next's new copy beside next (a
// rollback's too: the old commit is built again).
func (d *deployment) prepareRelease(h *hostDeploy, reuse bool) error {
	mode := d.opts.Stage.mode()
	if h.res.Skipped || (mode != ModeRelease && (mode != ModeBlueGreen || d.opts.Stage.Build == "")) {
		return nil
	}
	what := "release"
	if mode == ModeBlueGreen {
		what, reuse = "copy of next", false
	}
	start := time.Now()
	rel, built, err := h.session().prepare(h.to, h.toSrc, reuse, d.opts.BuildTimeout)
	switch {
	case errors.Is(err, errPrepare) && built == "t":
		err = fmt.Errorf("%w: the build did not finish within %s and was killed; the %s was removed and the service was not stopped", ErrCommandTimeout, d.opts.BuildTimeout, what)
	case errors.Is(err, errPrepare) && built != "-" && built != "0":
		err = fmt.Errorf("the build failed (exit status %s); see its last lines above; the %s was removed and the service was not stopped", built, what)
	case errors.Is(err, errPrepare) && reuse:
		err = fmt.Errorf("%w: the release of %s is not on the host any more (pruned: Keep is %d)", ErrNoPrevious, short(h.toSrc), d.opts.Stage.Keep)
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
func (d *deployment) refuseMissing(h *hostDeploy, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	h.res.Outcome = OutcomeRefused
	p := strings.TrimPrefix(d.opts.Stage.Path, "~/")
	return &HostError{Host: h.addr.Name(), Step: "prepare", Err: fmt.Errorf("%w: %s; create it on the host first, e.g.: ssh %s 'mkdir -p %s/shared && cat > %s/shared/%s' < %s",
		ErrSharedMissing, strings.Join(paths, ", "), h.spec, p, p, paths[0], paths[0])}
}

// checkShared refuses, in place, shared paths that the commit tracks: the
// working copy is the repository's, so they could not be linked.
func (d *deployment) checkShared() error {
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
func (d *deployment) shallowError(head plumbing.Hash, cause error) error {
	what := "the host is empty, and a shallow clone cannot give it a whole history"
	if !head.IsZero() {
		what = fmt.Sprintf("the host is on %s, which is not inside the local (shallow) history, so gitric cannot tell whether the deploy would lose history", short(head))
	}
	if cause != nil && !errors.Is(cause, localrepo.ErrShallow) {
		what += " (" + cause.Error() + ")"
	}
	return fmt.Errorf("%w: %s is a shallow clone: %s. Fetch the whole history first: git fetch --unshallow (in CI: actions/checkout with fetch-depth: 0)", ErrIncompleteClone, d.repo.Root(), what)
}

// refuseUntracked refuses a host whose untracked files the switch would
// overwrite or delete, unless the user said to discard host edits.
func (d *deployment) refuseUntracked(h *hostDeploy, paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	if d.opts.DiscardEdits {
		h.log.Printf("discardEdits: %d untracked file(s) on the host will be overwritten: %s", len(paths), strings.Join(paths, ", "))
		return nil
	}
	h.res.Outcome = OutcomeRefused
	h.audit(d, OutcomeRefused, "untracked files on the host would be overwritten")
	return &UntrackedError{Host: h.addr.Name(), Paths: paths, Hint: d.opts.Hints.DiscardEdits}
}

// prepareRollback picks the host's rollback target: with Options.Rev, the
// deploy of that commit (or release) that the host's audit log records;
// without, the one before the live one. The audit log must agree with
// what the host runs.
func (d *deployment) prepareRollback(h *hostDeploy, st hostState) error {
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
	h.to = plumbing.NewHash(prev)
	h.toSrc = sourceFor(st.audit, h.to)
	if h.to == st.head {
		h.res.Skipped = true
		h.log.Printf("already on %s; nothing to do", d.describe(h.toSrc))
		return nil
	}
	h.log.Printf("will roll back from %s to %s", d.describe(h.fromSrc), d.describe(h.toSrc))
	return nil
}

// ErrNeverDeployed means a rollback target is not a deploy the host had.
var ErrNeverDeployed = errors.New("never deployed on this host")

// rollbackTo picks the deploy of Options.Rev (a commit, or a release
// directory's name) from the host's audit log and releases.
func (d *deployment) rollbackTo(h *hostDeploy, st hostState) error {
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
	h.to = plumbing.NewHash(checkout)
	h.toSrc = sourceFor(st.audit, h.to)
	if h.to == st.head {
		h.res.Skipped = true
		h.log.Printf("already on %s; nothing to do", d.describe(h.toSrc))
		return nil
	}
	h.log.Printf("will roll back from %s to %s", d.describe(h.fromSrc), d.describe(h.toSrc))
	return nil
}

func (d *deployment) commitName() string {
	if d.commit.Hash.IsZero() {
		return "previous commits"
	}
	return d.commit.Short()
}

// lookup finds a commit in the local repository.
func (d *deployment) lookup(h plumbing.Hash) (localrepo.Commit, bool) {
	if d.repo == nil {
		return localrepo.Commit{}, false
	}
	return d.repo.Lookup(h)
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

// cutoverAll is phase two: batches of hosts, one batch after another. An
// interrupt stops it from starting a batch, and from waiting for the one
// under way (see close).
func (d *deployment) cutoverAll(ctx context.Context) error {
	var todo []*hostDeploy
	for _, h := range d.hosts {
		if h.res.Skipped {
			h.res.Outcome = OutcomeOK
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
				errs = append(errs, fmt.Errorf("%w: %d host(s) were not cut over", ErrInterrupted, len(todo)-b*size))
			}
			for _, h := range todo[b*size:] {
				h.res.Outcome = OutcomeAborted
				if ctx.Err() == nil {
					h.audit(d, OutcomeAborted, reason)
				}
				h.log.Printf("not cut over (%s); still on %s", reason, short(h.fromSrc))
			}
			break
		}
		names := make([]string, len(batch))
		for i, h := range batch {
			names[i] = h.addr.Name()
		}
		d.con.Printf("phase 2/2: batch %d/%d: %v", b+1, batches, names)
		done := make(chan *hostDeploy, len(batch))
		for _, h := range batch {
			d.cutovers.Add(1)
			go func() {
				defer d.cutovers.Done()
				h.cutErr = d.cutover(h)
				if hook := d.opts.Hooks.AfterHost; hook != nil {
					res := h.res
					res.From, res.To = hashString(h.fromSrc), hashString(h.toSrc)
					if err := hook(context.WithoutCancel(ctx), res); err != nil {
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
				d.con.Printf("interrupted: %s still finishing the step under way; each finishes it, records it in its audit log and releases its lock by itself (see: %s)", strings.Join(busy, ", "), d.opts.Hints.Status)
				for _, h := range todo[min(len(todo), (b+1)*size):] {
					h.res.Outcome = OutcomeAborted
					h.log.Printf("not cut over (the deploy was interrupted); still on %s", short(h.fromSrc))
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

// cutover runs stop, switch, start, check on one host, and rolls it back
// when a step fails after the switch. The host writes the audit line of
// each cutover itself.
func (d *deployment) cutover(h *hostDeploy) error {
	name := h.addr.Name()
	sess := h.session()
	t := timeouts{stop: d.opts.StopTimeout, start: d.opts.StartTimeout, check: d.opts.CheckTimeout, build: d.opts.BuildTimeout}
	if d.action == ActionSwap {
		begin := time.Now()
		if err := sess.swap(h.auditHead(d, ActionSwap, h.from, h.fromSrc)); err != nil {
			h.res.Outcome, h.res.Err = OutcomeFailed, &HostError{Host: name, Step: "swap", Err: err}
			return h.res.Err
		}
		h.res.Outcome, h.res.Downtime = OutcomeOK, time.Since(begin)
		return nil
	}
	head := h.auditHead(d, d.action, h.to, h.toSrc)
	if d.opts.Stage.Overlap && d.opts.Stage.mode() == ModeRelease {
		head.Cutover = "overlap"
	}
	r, err := sess.cutover(h.to, OutcomeOK, head, t, d.opts.CutoverTimeout, d.httpCheck(h, h.toSrc))
	h.res.Stop, h.res.Reset, h.res.Build, h.res.Start, h.res.Downtime = r.stop, r.reset, r.build, r.start, r.downtime
	if err != nil {
		h.res.Outcome, h.res.Err = OutcomeFailed, &HostError{Host: name, Step: "cutover", Err: err}
		return h.res.Err
	}
	step := r.failure(h.toSrc, t)
	if step == nil {
		h.res.Outcome = OutcomeOK
		switch {
		case r.overlap:
			h.log.Printf("overlap: no downtime (start %s, then the switch and the old one's stop %s)", round(r.start), round(r.stop))
		case r.buildStatus == "0":
			h.log.Printf("downtime %s (stop %s, switch %s, build %s, start %s)", round(r.downtime), round(r.stop), round(r.reset), round(r.build), round(r.start))
		default:
			h.log.Printf("downtime %s (stop %s, switch %s, start %s)", round(r.downtime), round(r.stop), round(r.reset), round(r.start))
		}
		return nil
	}
	h.res.Outcome = OutcomeFailed
	h.res.Err = &HostError{Host: name, Step: "cutover", Err: step}
	if r.resetStatus == "f" {
		h.res.Outcome = OutcomeRolledBack // the host put itself back
		h.res.Err = &HostError{Host: name, Step: "cutover", Err: fmt.Errorf("%w (%w)", step, ErrRolledBack)}
	}
	if !r.moved() || d.opts.NoRollback || h.from.IsZero() {
		return h.res.Err
	}
	h.log.Printf("%v; rolling back to %s", step, d.describe(h.fromSrc))
	rb, err := sess.cutover(h.from, OutcomeRolledBack, h.auditHead(d, d.action, h.from, h.fromSrc), t, d.opts.CutoverTimeout, d.httpCheck(h, h.fromSrc))
	if err == nil {
		err = rb.failure(h.fromSrc, t)
	}
	if err != nil {
		h.log.Printf("rollback to %s failed too: %v", short(h.fromSrc), err)
		return h.res.Err
	}
	h.res.Outcome = OutcomeRolledBack
	h.res.Err = &HostError{Host: name, Step: "cutover", Err: fmt.Errorf("%w; %w to %s", step, ErrRolledBack, d.describe(h.fromSrc))}
	h.log.Printf("rolled back to %s", d.describe(h.fromSrc))
	return h.res.Err
}

// summary prints one line per host.
func (d *deployment) summary() {
	rows := make([]console.Row, 0, len(d.hosts))
	for _, h := range d.hosts {
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
	d.con.Summary(rows, time.Since(d.started))
}

func short(h plumbing.Hash) string {
	if h.IsZero() {
		return "-"
	}
	return h.String()[:7]
}

func shortHex(s string) string {
	if len(s) < 7 {
		return "-"
	}
	return s[:7]
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
