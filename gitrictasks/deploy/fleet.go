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
	"github.com/gitric/gitric/gitrictasks/internal/remote"
)

// fleet is what every operation on a stage's hosts starts from: the
// checked options, the hosts, their connections and the console. The
// read-only operations (status, releases, plan, unlock) use it as it is;
// the ones that change hosts run a rollout over it.
type fleet struct {
	opts    settings
	dial    dialFunc
	repo    *localrepo.Repo // nil outside a repository (rollback, status)
	con     *console.Console
	hosts   []*hostDeploy
	started time.Time
}

// dialFunc connects to a host (the seam the tests replace).
type dialFunc func(ctx context.Context, a remote.Address, logf func(string, ...any)) (link, error)

// hostDeploy is one host of a fleet, through one operation.
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
	// inPush is set while the host script is in git receive-pack (a
	// deploy's, until its seed ends): it takes no command until then.
	inPush bool
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

// newFleet refuses a machine listed twice, and sets up the hosts and the
// console, for options the operation has validated. It connects nowhere
// yet.
func newFleet(ctx context.Context, opts settings) (*fleet, error) {
	opts.defaults()
	hosts, _ := opts.Stage.hostsFor(opts.Role) // Validate checked it
	f := &fleet{opts: opts, dial: opts.dial}
	if f.dial == nil {
		ssh := opts.SSH.config()
		f.dial = func(ctx context.Context, a remote.Address, logf func(string, ...any)) (link, error) {
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
	f.con = console.New(opts.Out, console.Options{JSON: opts.JSON}, names...)
	for i, a := range addrs {
		f.hosts = append(f.hosts, &hostDeploy{addr: a, spec: hosts[i], log: f.con.Host(a.Name()), res: HostResult{Host: a.Name()}})
	}
	f.started = time.Now()
	return f, nil
}

// openRepo opens the local repository, when there is one, only to name
// commits in messages.
func (f *fleet) openRepo() {
	if repo, err := localrepo.Open(f.opts.Dir); err == nil {
		f.repo = repo
	}
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

func (h *hostDeploy) session() *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sess
}

// each runs fn for every host at once and waits.
func (f *fleet) each(fn func(h *hostDeploy)) {
	var wg sync.WaitGroup
	for _, h := range f.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(h)
		}()
	}
	wg.Wait()
}

// closeGrace is how long an interrupted deploy waits for the hosts' steps
// under way before it stops waiting (mage gives its targets 5 seconds).
const closeGrace = 3500 * time.Millisecond

// close ends every host's script (releasing its lock) and connection. When
// interrupted, it waits at most closeGrace for a host step under way, then
// leaves it to the host, which finishes the step, writes its audit line
// and releases its lock by itself.
func (f *fleet) close(interrupted bool) {
	f.each(func(h *hostDeploy) {
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
	})
}

// dialAll connects to every host in the background, opts.Parallel at a
// time; a rollout's open waits for its host's connection.
func (f *fleet) dialAll(ctx context.Context) {
	sem := make(chan struct{}, f.opts.Parallel)
	for _, h := range f.hosts {
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
			if f.opts.Verbose {
				logf = func(format string, args ...any) { h.log.Printf(format, args...) }
			}
			conn, err := f.dial(ctx, h.addr, logf)
			if err != nil {
				h.dialErr = &HostError{Host: h.addr.Name(), Step: "connect", Err: err}
				return
			}
			h.conn = conn
		}()
	}
}

// look connects to h and runs a read-only action of the host script
// (status, plan, unlock), which reports the host's state.
func (f *fleet) look(ctx context.Context, h *hostDeploy, vars hostscript.Vars) (hostState, error) {
	conn, err := f.dial(ctx, h.addr, nil)
	if err != nil {
		return hostState{}, err
	}
	h.conn = conn
	sess, st, err := openSession(ctx, conn, vars, h.log, nil)
	h.mu.Lock()
	h.sess = sess
	h.mu.Unlock()
	return st, err
}

// vars are the host script's values for an action on this fleet's stage.
func (f *fleet) vars(action hostscript.Action) hostscript.Vars {
	st := f.opts.Stage
	return hostscript.Vars{
		Action: action,
		Path:   st.Path, Mode: string(st.mode()), Keep: st.Keep,
		Stop: st.Stop, Start: st.Start, Check: st.Check,
		StopWait: f.opts.StopTimeout, StartWait: f.opts.StartTimeout, CheckWait: f.opts.CheckTimeout,
		Colors: st.Colors, Sudo: st.Sudo, Submodules: st.Submodules,
		Adopt: f.opts.TakeOver,
		Build: st.Build, BuildWait: f.opts.BuildTimeout,
		Once: st.Once, OnceWait: f.opts.OnceTimeout,
		Shared:    st.Shared,
		Overlap:   st.Overlap && st.mode() == ModeRelease,
		HTTPCheck: st.HTTPCheck != "",
	}
}

// lookup finds a commit in the local repository.
func (f *fleet) lookup(h plumbing.Hash) (localrepo.Commit, bool) {
	if f.repo == nil {
		return localrepo.Commit{}, false
	}
	return f.repo.Lookup(h)
}

// describe names a commit for a message: hash and subject when we know it.
func (f *fleet) describe(h plumbing.Hash) string {
	if h.IsZero() {
		return "nothing"
	}
	if c, ok := f.lookup(h); ok {
		return c.Short() + " (" + c.Subject + ")"
	}
	return h.String()[:7]
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

func hashString(h plumbing.Hash) string {
	if h.IsZero() {
		return ""
	}
	return h.String()
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
