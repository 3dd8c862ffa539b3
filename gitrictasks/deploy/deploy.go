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

	"github.com/gitric/gitric/gitrictasks/console"
	"github.com/gitric/gitric/gitrictasks/localrepo"
	"github.com/gitric/gitric/gitrictasks/remote"
)

// HostResult is what happened on one host.
type HostResult struct {
	Host     string
	From     plumbing.Hash // the host's commit before the deploy (zero: none)
	To       plumbing.Hash
	Skipped  bool // already on To
	Seed     time.Duration
	Objects  int
	Bytes    int64
	Stop     time.Duration
	Reset    time.Duration
	Start    time.Duration
	Downtime time.Duration // from the stop command's start to the start command's end
	Err      error
}

// Result is the outcome of a deploy.
type Result struct {
	Commit localrepo.Commit
	Hosts  []HostResult
}

// Run deploys opts.Rev to every host of opts.Stage. Before it connects
// anywhere it checks the options, the revision and the working copy. Then
// it prepares and seeds every host, at most opts.Parallel at a time; only
// when every host is seeded does it cut them over, one after another. A
// host that fails to seed or refuses the push stops the whole deploy before
// any host is cut over.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts.defaults()
	repo, err := localrepo.Open(opts.Dir)
	if err != nil {
		return nil, err
	}
	commit, err := repo.Resolve(opts.Rev)
	if err != nil {
		return nil, err
	}
	paths, err := repo.Changes(localrepo.StatusOptions{IgnoreUntracked: opts.IgnoreUntracked})
	if err != nil {
		return nil, err
	}
	names := make([]string, len(opts.Stage.Hosts))
	addrs := make([]remote.Address, len(opts.Stage.Hosts))
	for i, h := range opts.Stage.Hosts {
		addrs[i], _ = remote.ParseAddress(h) // Validate checked them
		names[i] = addrs[i].Name()
	}
	con := console.New(opts.Out, names...)
	if len(paths) > 0 {
		if !opts.AllowDirty {
			return nil, &DirtyError{Root: repo.Root(), Paths: paths, Hint: opts.Hints.AllowDirty}
		}
		con.Printf("allowDirty: %d uncommitted change(s) left out; deploying the committed %s", len(paths), commit.Short())
	}
	con.Printf("deploying %s to %s (%d host(s), %s)", commit, opts.Stage.Name, len(addrs), opts.Stage.Path)

	d := &deployment{opts: opts, repo: repo, commit: commit, con: con}
	d.hosts = make([]*hostDeploy, len(addrs))
	for i, a := range addrs {
		d.hosts[i] = &hostDeploy{addr: a, log: con.Host(a.Name()), res: HostResult{Host: a.Name(), To: commit.Hash}}
	}
	defer d.close()

	if err := d.seedAll(ctx); err != nil {
		return d.result(), err
	}
	err = d.cutoverAll(ctx)
	return d.result(), err
}

type deployment struct {
	opts   Options
	repo   *localrepo.Repo
	commit localrepo.Commit
	con    *console.Console
	hosts  []*hostDeploy
	// packMu serialises pack writing: go-git's object store is read by one
	// goroutine at a time.
	packMu sync.Mutex
}

type hostDeploy struct {
	addr remote.Address
	log  *console.Writer
	conn *remote.Host
	sess *session
	res  HostResult
}

func (d *deployment) result() *Result {
	r := &Result{Commit: d.commit}
	for _, h := range d.hosts {
		r.Hosts = append(r.Hosts, h.res)
	}
	return r
}

func (d *deployment) close() {
	for _, h := range d.hosts {
		if h.sess != nil {
			_ = h.sess.wait()
		}
		if h.conn != nil {
			h.conn.Close()
		}
	}
}

// seedAll runs phase one on every host; any failure fails the deploy
// before any cutover.
func (d *deployment) seedAll(ctx context.Context) error {
	sem := make(chan struct{}, d.opts.Parallel)
	var wg sync.WaitGroup
	for _, h := range d.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			h.res.Err = d.seed(ctx, h)
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
	for _, h := range d.hosts {
		if h.sess != nil {
			_ = h.sess.wait() // end of input: the script exits, changing nothing
		}
	}
	if len(d.hosts) > 1 {
		d.con.Printf("%s: %d of %d host(s) failed before the cutover; no host was changed", ErrNotDeployed, len(errs), len(d.hosts))
	}
	return errors.Join(errs...)
}

func (d *deployment) seed(ctx context.Context, h *hostDeploy) error {
	name := h.addr.Name()
	sshCfg := d.opts.SSH
	if d.opts.Verbose {
		sshCfg.Logf = func(format string, args ...any) { h.log.Printf(format, args...) }
	}
	conn, err := remote.Dial(ctx, h.addr, sshCfg)
	if err != nil {
		return &HostError{Host: name, Step: "connect", Err: err}
	}
	h.conn = conn
	sess, head, err := openSession(ctx, conn, d.opts.Stage.Path, d.opts.Stage.Stop, d.opts.Stage.Start, h.log)
	h.sess = sess
	if err != nil {
		return &HostError{Host: name, Step: "prepare", Err: err}
	}
	h.res.From = head
	if head == d.commit.Hash {
		h.res.Skipped = true
		h.log.Printf("already on %s; nothing to do", d.commit)
		_, err := sess.push(ctx, d.commit.Hash, head, nil, nil) // an empty push: receive-pack ends
		if err != nil {
			return &HostError{Host: name, Step: "seed", Err: err}
		}
		return nil
	}
	if !head.IsZero() && !d.opts.ForcePush {
		ok, err := d.repo.IsAncestor(head, d.commit.Hash)
		if err != nil {
			return &HostError{Host: name, Step: "seed", Err: err}
		}
		if !ok {
			return &NonFastForwardError{Host: name, Commit: d.commit.Hash.String(), Current: d.describe(head), Hint: d.opts.Hints.ForcePush}
		}
	}
	var progress io.Writer
	if d.opts.Verbose {
		progress = h.log
	}
	start := time.Now()
	st, err := sess.push(ctx, d.commit.Hash, head, func(w io.Writer, haves []plumbing.Hash) (int, int, error) {
		d.packMu.Lock()
		defer d.packMu.Unlock()
		ps, err := d.repo.WritePack(ctx, w, d.commit.Hash, haves)
		return ps.Commits, ps.Objects, err
	}, progress)
	if err != nil {
		return &HostError{Host: name, Step: "seed", Err: err}
	}
	h.res.Seed, h.res.Objects, h.res.Bytes = time.Since(start), st.objects, st.bytes
	from := "an empty repository"
	if !head.IsZero() {
		from = head.String()[:7]
	}
	h.log.Printf("seeded %d commit(s), %d object(s), %s in %s (host was on %s)", st.commits, st.objects, byteSize(st.bytes), round(h.res.Seed), from)
	return nil
}

// describe names a commit for a message: hash and subject when we know it.
func (d *deployment) describe(h plumbing.Hash) string {
	if c, ok := d.repo.Lookup(h); ok {
		return c.Short() + " (" + c.Subject + ")"
	}
	return h.String()[:7] + " (a commit this repository does not have)"
}

// cutoverAll runs phase two, host after host.
func (d *deployment) cutoverAll(ctx context.Context) error {
	var errs []error
	for _, h := range d.hosts {
		if h.res.Skipped {
			continue
		}
		if len(errs) > 0 {
			h.log.Printf("not cut over: an earlier host failed; still on %s", short(h.res.From))
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, d.opts.CutoverTimeout)
		t, err := h.sess.cutover(cctx, d.commit.Hash)
		cancel()
		h.res.Stop, h.res.Reset, h.res.Start, h.res.Downtime = t.stop, t.reset, t.start, t.downtime
		if err != nil {
			h.res.Err = err
			errs = append(errs, err)
			continue
		}
		h.log.Printf("downtime %s (stop %s, reset %s, start %s)", round(t.downtime), round(t.stop), round(t.reset), round(t.start))
	}
	return errors.Join(errs...)
}

func short(h plumbing.Hash) string {
	if h.IsZero() {
		return "nothing"
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

var _ = strings.TrimSpace
var _ = fmt.Sprint
