package gitrictasks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/magefile/mage/mg"
	"golang.org/x/crypto/ssh"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/console"
	"github.com/gitric/gitric/gitrictasks/internal/localhost"
	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
)

// StageConfig is a named set of hosts and what to run on them; see
// deploy.Stage.
type StageConfig = deploy.Stage

// Settings apply to every stage (give them to Configure);
// deploy.Options and deploy.RolloutOptions say more of each. The GITRIC_* environment variables beat them.
type Settings struct {
	// SSH says how to connect and whom to trust: known_hosts files,
	// identities, keys in memory, ssh_config, timeouts.
	SSH deploy.SSH
	// Parallel is how many hosts are connected and seeded at once
	// (default 10; GITRIC_PARALLEL).
	Parallel int
	// Batch is how many hosts are cut over at a time: "all", "2", "25%"
	// (default 1; GITRIC_BATCH).
	Batch string
	// NoRollback leaves hosts whose cutover failed as they are, instead
	// of putting them back on their previous commit.
	NoRollback bool
	// IgnoreUntracked always leaves untracked files out of the dirty
	// check, as the IgnoreUntracked target does for one call.
	IgnoreUntracked bool
	// StopTimeout and StartTimeout bound each run of a stage's Stop and
	// Start (default 2m each): past it the command is killed, with what it
	// started, and the step fails.
	StopTimeout, StartTimeout time.Duration
	// CheckTimeout bounds how long a stage's Check may take to pass, all
	// attempts together (default 30s).
	CheckTimeout time.Duration
	// CutoverTimeout bounds the switch of the working copy on one host
	// (default 10m).
	CutoverTimeout time.Duration
	// Hooks are called as a deploy goes: Before (with the plan, before the
	// first cutover; its error aborts the deploy), AfterHost, After.
	Hooks deploy.Hooks
	// BuildTimeout and OnceTimeout bound a stage's Build (on each host)
	// and Once (default 10m each).
	BuildTimeout, OnceTimeout time.Duration
	// LockWait is how long a deploy waits for a lock that another live
	// deploy holds (default 0: refuse at once; GITRIC_LOCK_WAIT, e.g. 2m).
	// A dead deploy's lock is always taken over at once.
	LockWait time.Duration
}

// LocalStage is the name of the stage the Local target selects.
const LocalStage = "local"

// state is what the targets of one mage call set for the ones after them.
type state struct {
	mu              sync.Mutex
	stages          map[string]StageConfig
	settings        Settings
	stage           string
	role            string
	allowDirty      bool
	forcePush       bool
	ignoreUntracked bool
	discardEdits    bool
	takeOver        bool
	message         string
	acceptNew       bool
	rev             string
	// args is the call (the targets as typed, see commandLine); ran, the
	// package's targets run so far, in order.
	args []string
	ran  []string
}

var current = &state{stages: map[string]StageConfig{}, args: commandLine()}

// SetStage defines (or redefines) a stage. Call it from your magefile's
// init. A stage named "prod" is what the Prod target selects; "local"
// customises Local (its hosts are ignored).
func SetStage(name string, stage StageConfig) {
	stage.Name = name
	update(func(s *state) { s.stages[name] = stage })
}

// Configure sets what applies to every stage: how to connect (known_hosts,
// identities, timeouts), seeding concurrency, cutover batches. Call it from
// your magefile's init; the GITRIC_* environment variables still take
// precedence.
func Configure(settings Settings) { update(func(s *state) { s.settings = settings }) }

// Prod selects the stage named "prod" for the action after it.
//
// Its hosts are those the magefile gives SetStage("prod", ...), or those of
// GITRIC_HOSTS ([user@]host[:port] or ssh_config aliases, comma-separated).
// Put it before the action, with any modifiers:
//
//	mage gitric:prod gitric:deploy
//	GITRIC_HOSTS=deploy@web1,deploy@web2:2222 mage gitric:prod gitric:status
func Prod() { selectStage("prod", "prod") }

// Stage selects a stage by name for the action after it.
//
// The name is one the magefile gives SetStage; GITRIC_HOSTS replaces its
// hosts. Put it before the action, with any modifiers:
//
//	mage gitric:stage staging gitric:deploy
func Stage(name string) { selectStage("stage", name) }

// Only limits the action after it to one role of the stage.
//
// Roles name subsets of the stage's hosts (StageConfig.Roles). Put it before
// the action, next to the stage:
//
//	mage gitric:prod gitric:only web gitric:deploy
func Only(role string) { set("only", func(s *state) { s.role = role }) }

// Local selects the local stage: an SSH server on 127.0.0.1, deploying into .gitric/local.
//
// gitric starts the server itself for the length of the call, with
// throwaway keys, and deploys into .gitric/local/<path> of the repository
// (ignored by git), through the same client code as a real host. Its path
// and commands come from SetStage("local", ...) (path "app" by default);
// its host is always the embedded server, whatever GITRIC_HOSTS says.
//
//	mage gitric:local gitric:deploy
//	mage gitric:local gitric:status
func Local() { selectStage("local", LocalStage) }

// AllowDirty deploys the committed revision even when the working copy is dirty.
//
// A dirty working copy (modified, staged or untracked files) is refused by
// default: what you would deploy is not what you see. The uncommitted
// changes are left out either way. Put it before the action:
//
//	mage gitric:allowDirty gitric:prod gitric:deploy
func AllowDirty() { set("allowDirty", func(s *state) { s.allowDirty = true }) }

// ForcePush deploys even when a host would lose history.
//
// A host whose commit is not an ancestor of the one deployed (after an
// amend, a rebase, or to go back) is refused by default, and no host is
// changed. Put it before the action:
//
//	mage gitric:forcePush gitric:prod gitric:deploy
func ForcePush() { set("forcePush", func(s *state) { s.forcePush = true }) }

// IgnoreUntracked leaves untracked files out of the dirty check.
//
// Ignored files (.gitignore, .git/info/exclude, core.excludesFile) are
// always left out. Put it before the action:
//
//	mage gitric:ignoreUntracked gitric:prod gitric:deploy
func IgnoreUntracked() { set("ignoreUntracked", func(s *state) { s.ignoreUntracked = true }) }

// DiscardEdits deploys even over files someone edited on the hosts.
//
// A host whose working copy has local edits is refused by default, and its
// edits listed; with DiscardEdits they are lost. Put it before the action:
//
//	mage gitric:discardEdits gitric:prod gitric:deploy
func DiscardEdits() { set("discardEdits", func(s *state) { s.discardEdits = true }) }

// TakeOver deploys into a path that holds a git repository gitric did not create.
//
// gitric marks the repositories it creates, and by default refuses any
// other one, so that a mistyped path never turns someone's repository into
// a deploy target. Put it before the action:
//
//	mage gitric:takeOver gitric:prod gitric:deploy
func TakeOver() { set("takeOver", func(s *state) { s.takeOver = true }) }

// Message records why this deploy happens, in the lock and the audit logs.
//
// It is shown to whoever meets the lock, and by status; GITRIC_MESSAGE
// does the same without a target. Put it before the action:
//
//	mage gitric:message "hotfix for #123" gitric:prod gitric:deploy
func Message(text string) { set("message", func(s *state) { s.message = text }) }

// AcceptNew trusts hosts that known_hosts does not list yet, and records their keys.
//
// Like ssh's StrictHostKeyChecking=accept-new: a changed key is still
// refused. The keys go to the first known_hosts file (GITRIC_KNOWN_HOSTS,
// or ~/.ssh/known_hosts). Put it before the action:
//
//	mage gitric:acceptNew gitric:prod gitric:deploy
func AcceptNew() { set("acceptNew", func(s *state) { s.acceptNew = true }) }

// Ref deploys a branch, tag or commit instead of HEAD.
//
// A full or short hash, a branch or a tag of the local repository. Put it
// before the action:
//
//	mage gitric:ref v1.2.0 gitric:prod gitric:deploy
func Ref(ref string) { set("ref", func(s *state) { s.rev = ref }) }

// Deploy deploys the commit to every host of the stage: seed them all, then cut over in batches.
//
// Needs a stage before it (prod, stage <name> or local) and takes the
// modifiers before it: only, ref, allowDirty, ignoreUntracked, forcePush,
// discardEdits, acceptNew. It checks the working copy first (a dirty one is
// refused) and contacts nothing before that passes. Phase 1 connects to
// every host, takes the stage's lock there and pushes the commit's objects
// (seeding; working copies and services are untouched); if any host fails,
// none is changed. Phase 2 cuts the hosts over, GITRIC_BATCH at a time:
// stop, reset --hard to the commit, start, check; a failed batch ends the
// rollout and its hosts go back to their previous commit.
//
// Environment: GITRIC_HOSTS, GITRIC_BATCH, GITRIC_PARALLEL, GITRIC_OUTPUT,
// GITRIC_SSH_CONFIG, GITRIC_KNOWN_HOSTS, GITRIC_IDENTITY (see the package
// documentation: go doc github.com/gitric/gitric/gitrictasks). mage -v also
// shows how each connection was made and what git says on the hosts.
// Ctrl-C or SIGTERM finishes the host steps under way and releases the
// locks.
//
//	mage gitric:prod gitric:deploy
//	mage gitric:allowDirty gitric:ref v1.2.0 gitric:prod gitric:only web gitric:deploy
//	GITRIC_BATCH=25% GITRIC_OUTPUT=json mage gitric:prod gitric:deploy
func Deploy(ctx context.Context) error {
	return withOptions(ctx, "deploy", func(ctx context.Context, opts deploy.DeployOptions) error {
		_, err := deploy.Run(ctx, opts)
		return err
	})
}

// Rollback puts every host of the stage back on the commit deployed before its current one.
//
// Needs a stage before it; only, acceptNew, ref, message and discardEdits
// apply (any other modifier is refused). Each host's audit
// log (.git/gitric/audit.log) names its previous deploy; with ref, the
// deploy of that commit, tag or release directory instead (see releases).
// A host that never had it, or whose release was pruned, is refused before
// any host changes, as is one whose audit log disagrees with what it runs.
// The host has the commit already, so nothing is pushed. The cutover is as
// Deploy's, GITRIC_BATCH at a time. Environment: GITRIC_HOSTS, GITRIC_BATCH,
// GITRIC_PARALLEL, GITRIC_OUTPUT and the SSH ones, as for deploy.
//
//	mage gitric:prod gitric:rollback
//	mage gitric:ref v1.4.2 gitric:prod gitric:rollback
func Rollback(ctx context.Context) error {
	return withOptions(ctx, "rollback", func(ctx context.Context, opts deploy.DeployOptions) error {
		_, err := deploy.Rollback(ctx, deploy.RollbackOptions{Options: opts.Options, RolloutOptions: opts.RolloutOptions, Rev: opts.Rev, DiscardEdits: opts.DiscardEdits})
		return err
	})
}

// Swap exchanges live and next on every host of a blue/green stage.
//
// Needs a blue/green stage (Mode "bluegreen") before it; only, acceptNew and
// message apply. Each host renames two symlinks under the stage's lock, GITRIC_BATCH
// hosts at a time. Environment: as for deploy.
//
//	mage gitric:stage shop gitric:swap
func Swap(ctx context.Context) error {
	return withOptions(ctx, "swap", func(ctx context.Context, opts deploy.DeployOptions) error {
		_, err := deploy.Swap(ctx, deploy.SwapOptions{Options: opts.Options, RolloutOptions: opts.RolloutOptions})
		return err
	})
}

// Status shows what every host of the stage runs, its lock, local edits and drift.
//
// Needs a stage before it; only, ref (compare with it instead of HEAD) and
// acceptNew apply (any other modifier is refused). Read-only: it takes no lock and changes nothing.
// It exits 13 when a host cannot be reached, 1 when a host's last cutover
// was cut short (killed halfway: deploy again); drift, edits and locks are
// reported, with status 0. Environment: GITRIC_HOSTS, GITRIC_PARALLEL,
// GITRIC_OUTPUT and the SSH ones, as for deploy.
//
//	mage gitric:prod gitric:status
func Status(ctx context.Context) error {
	return withOptions(ctx, "status", func(ctx context.Context, opts deploy.DeployOptions) error {
		_, err := deploy.Status(ctx, deploy.StatusOptions{Options: opts.Options, Rev: opts.Rev})
		return err
	})
}

// Plan shows what a deploy would do on every host, and what would refuse it, changing nothing.
//
// Needs a stage before it; the modifiers of deploy apply (ref, allowDirty,
// forcePush, discardEdits, only...). One read-only session per host: no
// lock is taken and nothing is written on any host. Per host: from and
// to, the commits that go out, a diff summary, the bytes to send, the
// commands that would run (those inside the downtime marked) and every
// refusal the deploy would meet. It exits with the status the deploy would
// have (10 refused, 11 locked, 13 unreachable; see ExitRefused).
// Environment: as for deploy.
//
//	mage gitric:prod gitric:plan
//	mage gitric:ref v1.4.2 gitric:prod gitric:plan
func Plan(ctx context.Context) error {
	return withOptions(ctx, "plan", func(ctx context.Context, opts deploy.DeployOptions) error {
		_, err := deploy.MakePlan(ctx, opts)
		return err
	})
}

// Releases lists what every host of the stage ran, newest first, the live one marked.
//
// Needs a stage before it; only and acceptNew apply. From each host's audit
// log: commit, subject, when, by whom, the deploy's message and its result;
// in release mode also the release directory, while it is kept. Any of
// them is a target for rollback: mage gitric:ref <commit or release>
// gitric:prod gitric:rollback. Read-only. Environment: as for status.
//
//	mage gitric:prod gitric:releases
func Releases(ctx context.Context) error {
	return withOptions(ctx, "releases", func(ctx context.Context, opts deploy.DeployOptions) error {
		_, err := deploy.Releases(ctx, opts.Options)
		return err
	})
}

// Unlock removes a stale deploy lock from every host of the stage.
//
// Needs a stage before it; only and acceptNew apply. A deploy that died
// (its machine crashed, its connection was cut for good) can leave the
// stage's lock on a host; the next deploy is then refused with the lock's
// owner and this command. Do not remove the lock of a deploy that runs.
// Environment: GITRIC_HOSTS, GITRIC_OUTPUT and the SSH ones, as for deploy.
//
//	mage gitric:prod gitric:unlock
func Unlock(ctx context.Context) error {
	return withOptions(ctx, "unlock", func(ctx context.Context, opts deploy.DeployOptions) error {
		return deploy.Unlock(ctx, opts.Options)
	})
}

// withOptions runs the action fn with the options the earlier targets
// chose, printing through the console, and stops it on SIGTERM, SIGHUP or
// when mage is gone, as on Ctrl-C.
func withOptions(ctx context.Context, name string, fn func(context.Context, deploy.DeployOptions) error) error {
	set(name, func(*state) {})
	con := console.New(os.Stdout, console.Options{JSON: jsonOutput()})
	err := func() error {
		ctx, stop := stopOnSignals(ctx, con)
		defer stop()
		opts, cleanup, err := current.options(ctx, con)
		if err != nil {
			return err
		}
		defer cleanup()
		err = fn(ctx, opts)
		if cause := context.Cause(ctx); err != nil && errors.Is(cause, ErrStopped) {
			err = fmt.Errorf("%w (%w)", err, cause)
		}
		return err
	}()
	if err != nil && jsonOutput() {
		con.Errorf("%v", err)
	}
	return withExitStatus(err)
}

func jsonOutput() bool { return os.Getenv("GITRIC_OUTPUT") == "json" }

// selectStage records that the target named target chose the stage name.
func selectStage(target, name string) { set(target, func(s *state) { s.stage = name }) }

// set records that the target named name ran, and its choice.
func set(name string, fn func(s *state)) {
	update(func(s *state) {
		s.ran = append(s.ran, name)
		fn(s)
	})
}

// update changes the shared state under its lock.
func update(fn func(s *state)) {
	current.mu.Lock()
	defer current.mu.Unlock()
	fn(current)
}

// ErrNoStage means deploy was called without a stage target before it.
var ErrNoStage = errors.New("no stage chosen")

// options turns the state into deploy options for the action that ran
// last. For the local stage it starts the embedded SSH server; cleanup
// stops it.
func (s *state) options(ctx context.Context, con *console.Console) (deploy.DeployOptions, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nothing := func() {}
	act := "deploy"
	if n := len(s.ran); n > 0 && targets[strings.ToLower(s.ran[n-1])].kind == action {
		act = s.ran[n-1]
	}
	c := parseCall(s.args)
	ours, cur := c.ours(s.ran)
	if cur >= 0 {
		if err := checkOrder(c, ours); err != nil {
			return deploy.DeployOptions{}, nothing, err
		}
	}
	if err := checkApplies(c, ours, cur, s.ran, act); err != nil {
		return deploy.DeployOptions{}, nothing, err
	}
	if s.stage == "" {
		hint := "mage prod " + act
		if cur >= 0 {
			hint = withSetter(c, ours, cur, "prod")
		}
		return deploy.DeployOptions{}, nothing, fmt.Errorf("%w: put a stage target before %s, e.g. %s (stages: %s)", ErrNoStage, act, hint, s.stageNames())
	}
	stage, ok := s.stages[s.stage]
	if !ok && s.stage != LocalStage {
		return deploy.DeployOptions{}, nothing, fmt.Errorf("stage %q is not defined (stages: %s): call gitrictasks.SetStage(%q, gitrictasks.StageConfig{...}) in your magefile's init", s.stage, s.stageNames(), s.stage)
	}
	stage.Name = s.stage
	set := s.settings
	opts := deploy.DeployOptions{
		Options: deploy.Options{
			Stage:    stage,
			Role:     s.role,
			SSH:      set.SSH,
			Parallel: set.Parallel,
			Out:      os.Stdout,
			Verbose:  mg.Verbose(),
			JSON:     jsonOutput(),
		},
		RolloutOptions: deploy.RolloutOptions{
			Message:        s.message,
			Batch:          set.Batch,
			NoRollback:     set.NoRollback,
			StopTimeout:    set.StopTimeout,
			StartTimeout:   set.StartTimeout,
			CheckTimeout:   set.CheckTimeout,
			CutoverTimeout: set.CutoverTimeout,
			LockWait:       set.LockWait,
			BuildTimeout:   set.BuildTimeout,
			OnceTimeout:    set.OnceTimeout,
			Hooks:          set.Hooks,
		},
		Rev:             s.rev,
		AllowDirty:      s.allowDirty,
		ForcePush:       s.forcePush,
		IgnoreUntracked: set.IgnoreUntracked || s.ignoreUntracked,
		DiscardEdits:    s.discardEdits,
		TakeOver:        s.takeOver,
	}
	if cur >= 0 {
		opts.Hints = deploy.Hints{
			AllowDirty:   withSetter(c, ours, cur, "allowDirty"),
			ForcePush:    withSetter(c, ours, cur, "forcePush"),
			DiscardEdits: withSetter(c, ours, cur, "discardEdits"),
			TakeOver:     withSetter(c, ours, cur, "takeOver"),
			Unlock:       asUnlock(c, ours, cur),
			Status:       asAction(c, ours, cur, "status"),
			Releases:     asAction(c, ours, cur, "releases"),
		}
	} else {
		opts.Hints = s.hints(act)
	}
	if v := os.Getenv("GITRIC_MESSAGE"); v != "" && opts.Message == "" {
		opts.Message = v
	}
	if v := os.Getenv("GITRIC_LOCK_WAIT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return opts, nothing, fmt.Errorf("GITRIC_LOCK_WAIT=%q: want a duration such as 2m or 30s", v)
		}
		opts.LockWait = d
	}
	if v := os.Getenv("GITRIC_BATCH"); v != "" {
		opts.Batch = v
	}
	if v := os.Getenv("GITRIC_PARALLEL"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return opts, nothing, fmt.Errorf("GITRIC_PARALLEL=%q: want a number of hosts, 1 or more", v)
		}
		opts.Parallel = n
	}
	if v := os.Getenv("GITRIC_KNOWN_HOSTS"); v != "" {
		opts.SSH.KnownHostsFiles = filepath.SplitList(v)
	}
	if v := os.Getenv("GITRIC_IDENTITY"); v != "" {
		opts.SSH.IdentityFiles = []string{v}
	}
	if v := os.Getenv("GITRIC_SSH_CONFIG"); v != "" {
		opts.SSH.ConfigFile = v
	}
	if s.acceptNew {
		opts.SSH.HostKeyPolicy = deploy.HostKeyAcceptNew
	}
	if s.stage == LocalStage {
		return localOptions(ctx, con, opts)
	}
	if v := os.Getenv("GITRIC_HOSTS"); v != "" {
		opts.Stage.Hosts = splitHosts(v)
	}
	return opts, nothing, nil
}

// hints are the override hints when the call does not name the action
// (a magefile target ran it, or no mage at all): the state's choices again,
// with the package's targets under their root names.
func (s *state) hints(act string) deploy.Hints {
	sel := s.stage
	if s.stage != LocalStage && s.stage != "prod" {
		sel = "stage " + s.stage
	}
	if s.role != "" {
		sel += " only " + s.role
	}
	unlock := "mage " + sel + " unlock"
	if s.rev != "" {
		sel = "ref " + s.rev + " " + sel
	}
	// with is this call again with one more modifier.
	with := func(extra string) string {
		f := []string{"mage"}
		for _, o := range []struct {
			name string
			on   bool
		}{{"allowDirty", s.allowDirty}, {"forcePush", s.forcePush}, {"discardEdits", s.discardEdits}} {
			if o.on || extra == o.name {
				f = append(f, o.name)
			}
		}
		return strings.Join(f, " ") + " " + sel + " " + act
	}
	return deploy.Hints{AllowDirty: with("allowDirty"), ForcePush: with("forcePush"), DiscardEdits: with("discardEdits"), TakeOver: with("takeOver"), Unlock: unlock, Status: strings.Replace(unlock, " unlock", " status", 1)}
}

func (s *state) stageNames() string {
	names := []string{LocalStage}
	for n := range s.stages {
		if n != LocalStage {
			names = append(names, n)
		}
	}
	sort.Strings(names[1:])
	return strings.Join(names, ", ")
}

func splitHosts(v string) []string {
	var hosts []string
	for _, h := range strings.Split(v, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// localOptions points opts at an embedded SSH server rooted in the
// repository's .gitric/local directory.
func localOptions(ctx context.Context, con *console.Console, opts deploy.DeployOptions) (deploy.DeployOptions, func(), error) {
	repo, err := localrepo.Open(".")
	if err != nil {
		return opts, func() {}, err
	}
	dir := filepath.Join(repo.Root(), ".gitric")
	root := filepath.Join(dir, "local")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return opts, func() {}, fmt.Errorf("local host: %w", err)
	}
	// A .gitignore that ignores everything, itself included, keeps the
	// local host's files out of the dirty check in any repository.
	if err := os.WriteFile(filepath.Join(dir, ".gitignore"), []byte("*\n"), 0o644); err != nil {
		return opts, func() {}, fmt.Errorf("local host: %w", err)
	}
	// The server outlives a cancelled ctx until cleanup: the host step under
	// way when Ctrl-C comes must be finished, through it.
	srv, err := localhost.Start(context.WithoutCancel(ctx), root)
	if err != nil {
		return opts, func() {}, fmt.Errorf("local host: %w", err)
	}
	if opts.Stage.Path == "" {
		opts.Stage.Path = "app"
	}
	// An ssh_config of its own names the host "local" in the output. The
	// user's ssh_config does not apply (a "Host *" ProxyJump must not route
	// it elsewhere), nor does the agent.
	host, port, _ := net.SplitHostPort(srv.Addr())
	sshConfig := filepath.Join(dir, "local.ssh_config")
	conf := fmt.Sprintf("Host local\n\tHostName %s\n\tPort %s\n\tUser %s\n", host, port, srv.User())
	if err := os.WriteFile(sshConfig, []byte(conf), 0o600); err != nil {
		srv.Close()
		return opts, func() {}, fmt.Errorf("local host: %w", err)
	}
	opts.Stage.Hosts = []string{"local"}
	opts.SSH = deploy.SSH{
		ConfigFile:      sshConfig,
		IdentityAgent:   "none",
		Signers:         []ssh.Signer{srv.ClientSigner()},
		IdentitiesOnly:  true,
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey()),
	}
	con.Printf("local host: SSH server on %s for %s", srv.Addr(), filepath.Join(root, opts.Stage.Path))
	return opts, func() { srv.Close() }, nil
}
