package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/remote"
)

// Stage is a named set of hosts that get the same deploy.
type Stage struct {
	Name string
	// Hosts are [user@]host[:port] addresses or ~/.ssh/config aliases; a
	// user or port written here beats the config's.
	Hosts []string
	// Path is the repository (and working copy) on each host. A relative
	// path is relative to the home directory of the user that runs the
	// commands there: the login user, or under Sudo the sudo user.
	Path string
	// Stop and Start are shell commands run on each host in Path, around
	// the reset. Either may be empty.
	Stop, Start string
	// Check is an optional health check run in Path after Start; it is
	// retried every second until it passes or CheckTimeout runs out.
	Check string
	// Roles name subsets of Hosts (e.g. "web", "worker"), for Options.Role.
	Roles map[string][]string
	// Mode is how the working copy on a host is laid out and replaced:
	//   - ModeInPlace (default): Path is the repository and the working
	//     copy; the cutover is stop, git reset --hard, start.
	//   - ModeRelease: each deploy checks the commit out into a new
	//     Path/releases/<time>-<sha> while the service runs; the cutover is
	//     stop, an atomic rename of the Path/current symlink, start.
	//   - ModeBlueGreen: working copies Path/blue and Path/green, symlinks
	//     Path/live and Path/next; a deploy goes to next while live keeps
	//     serving, and Swap exchanges them. Without a Build the cutover is
	//     stop, git reset --hard in next, start. With one, phase one checks
	//     the commit out beside next's colour (Path/green.gitric-new, say)
	//     and builds it there, and the cutover is stop, a rename of that
	//     copy in place of the colour's directory, start; the old copy is
	//     kept until the new one passes its check, so a failed one goes
	//     back to it without a rebuild. Each deploy is then a fresh
	//     checkout, as in ModeRelease: what no commit tracks in next does
	//     not carry over (keep it in Shared), and untracked files there
	//     refuse the deploy, unless ignored or the build's own outputs.
	// Service commands run in the working copy they are about.
	Mode Mode
	// Keep is how many releases ModeRelease keeps (default 5); the live
	// one and the one before it are never deleted.
	Keep int
	// Colors are environment variables for each colour's service commands
	// in ModeBlueGreen, e.g. {"blue": {"PORT": "8081"}, "green": {"PORT": "8082"}}.
	// GITRIC_COLOR is always set.
	Colors map[string]map[string]string
	// Sudo runs every command on the hosts as this user (sudo -n -H -u),
	// so that the files deployed belong to it. sudo must not ask for a
	// password.
	Sudo string
	// Submodules deploys the commit's submodules too (recursively): their
	// objects are pushed with the commit's, from the local clone; a host
	// never fetches anything.
	Submodules bool

	// Build is a shell command run on every host in the new working copy,
	// with Env, before the service stops: in ModeRelease in the new
	// release directory, in ModeBlueGreen in next's new copy beside it
	// (with its colour's Colors), both during phase one, while the old
	// version keeps running; a build that fails on any host stops the
	// deploy before any cutover, its last lines are shown, and the new
	// directory is removed on every host. In ModeInPlace it runs after the
	// switch and before Start, inside the downtime.
	Build string
	// Artifacts are built locally and shipped with the commit as git
	// objects, so hosts need no toolchain (see Artifacts).
	Artifacts *Artifacts
	// Shared paths (ModeRelease, ModeBlueGreen) live in Path/shared on each
	// host and are linked into every release and colour before the build,
	// so they survive deploys, rollbacks and pruning: ".env", "data/". A
	// trailing slash marks a directory, created when missing; a shared
	// file must exist on every host before the deploy. A shared path that
	// the commit tracks is replaced by the link (with a warning). In
	// ModeInPlace shared paths must be untracked, and are left as they are.
	Shared []string
	// Env is exported to every command gitric runs on a host (Build, Once,
	// Stop, Start, Check); HostEnv overrides it per host (keyed by the host
	// as Hosts lists it). GITRIC_COMMIT is set too: the full hash of the
	// commit the step puts in place (for a rollback, the commit rolled
	// back to).
	Env     map[string]string
	HostEnv map[string]map[string]string
	// Secrets name local environment variables (from the CI's secret
	// store, say) whose values are exported like Env. They travel inside
	// the SSH session's standard input, never on a command line, are never
	// written to the audit log, and are printed as *** wherever a host's
	// output shows them. A secret that is not set locally is an error
	// before any host is touched.
	Secrets []string
	// Once is a command (a migration) run on exactly one host per deploy:
	// the first host of the "primary" role when there is one, else the
	// first host; in the new release (in a scratch checkout of the new
	// commit in the other modes), after every host is seeded and built and
	// before the first cutover. If it fails, no host is cut over. It is not
	// run by rollback.
	Once string
	// Overlap (ModeRelease) starts the new version before it stops the old
	// one: Start in the new release, the health check, the switch of
	// current, then Stop in the old release. With a service that listens
	// with SO_REUSEPORT there is no moment without a listener. Stop must
	// then stop only the release it runs in (e.g. by a pid file there).
	Overlap bool
	// HTTPCheck is a URL on the host (http://127.0.0.1:8080/health) that
	// must answer 2xx within CheckTimeout after Start. gitric requests it
	// itself, through the SSH connection: the host needs no HTTP client.
	HTTPCheck string
	// Subdir deploys one subdirectory of the repository (a monorepo's
	// service) as the host's whole tree: the host gets a commit of
	// gitric's own whose tree is that subdirectory, the same for the same
	// source commit; a source commit that does not change the
	// subdirectory is "already there". Everything gitric reports names the
	// source commit.
	Subdir string
	// DirtyOnlyInSubdir limits the dirty check to Subdir.
	DirtyOnlyInSubdir bool
	// HTTPCheckVersion also requires the answer to contain the deployed
	// commit's short hash, so that the new version, not the old one,
	// answered.
	HTTPCheckVersion bool
}

// Artifacts is a local build whose outputs are deployed with the commit.
// gitric builds in a clean checkout of the deployed commit (never the
// working copy), then commits the outputs on top of the commit's tree as a
// deploy commit of its own (parent: the source commit) and pushes that:
// an unchanged output is not sent again, and a rollback runs the very same
// binary. Everything gitric reports (status, audit, drift) names the source
// commit. The checkout is in the same directory every time (under the
// user's cache directory, one per local repository and stage), since
// compilers write their build directory into their outputs.
type Artifacts struct {
	// Command runs under sh in the checkout, e.g.
	// "GOOS=linux go build -o bin/app ./cmd/app"; GITRIC_COMMIT is set.
	Command string
	// Func builds in dir instead of Command.
	Func func(ctx context.Context, dir string) error
	// Paths are what the build writes, relative to the checkout (a file or
	// a directory); each goes to the same path in the deployed tree.
	Paths []string
}

// Mode is how a stage lays out and replaces the working copy on a host.
type Mode string

// Deploy modes for Stage.Mode.
const (
	ModeInPlace   Mode = "inplace"
	ModeRelease   Mode = "release"
	ModeBlueGreen Mode = "bluegreen"
)

func (s Stage) mode() Mode {
	if s.Mode == "" {
		return ModeInPlace
	}
	return s.Mode
}

// hostsFor returns the stage's hosts with the role, or all for "".
func (s Stage) hostsFor(role string) ([]string, error) {
	if role == "" {
		return s.Hosts, nil
	}
	hosts, ok := s.Roles[role]
	if !ok {
		var names []string
		for r := range s.Roles {
			names = append(names, r)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("%w: stage %q has no role %q (roles: %s)", ErrInvalidOptions, s.Name, role, strings.Join(names, ", "))
	}
	return hosts, nil
}

// Options are what every operation needs: the stage, how to reach its
// hosts, where the output goes. Releases and Unlock take them as they
// are; the other operations take them inside their own options type
// (DeployOptions, RollbackOptions, SwapOptions, StatusOptions), as go-git
// does, so that each takes exactly what it uses.
type Options struct {
	Stage Stage
	// Role limits the operation to the stage's hosts with that role.
	Role string
	// Dir is inside the local working copy; "." when empty.
	Dir string
	// SSH says how to connect and whom to trust.
	SSH SSH
	// Parallel is how many hosts are connected (and seeded) at once;
	// default 10.
	Parallel int
	// Who is recorded in locks and audit logs; default user@machine.
	Who string
	// JSON prints JSON lines instead of text, for CI logs.
	JSON bool
	// Out receives the output; nothing is printed when nil.
	Out io.Writer
	// Verbose also prints what the hosts' git says while storing the pack,
	// and how each connection was set up.
	Verbose bool
	// Hints name the way to override a refusal in the caller's own terms
	// (gitrictasks sets "mage allowDirty prod deploy" and the like).
	Hints Hints

	dial dialFunc // tests: how to reach a host
}

// RolloutOptions say how an operation that changes hosts (a deploy, a
// rollback, a swap) goes through them.
type RolloutOptions struct {
	// Message says why this happens; it is recorded in the lock and in
	// the audit logs.
	Message string
	// Batch is how many hosts are cut over at a time, once every host is
	// ready: "all", a number ("2"), or a percentage of the hosts ("25%").
	// Default "1": one host after another. A failed batch ends the rollout.
	Batch string
	// NoRollback leaves hosts whose cutover failed as they are, instead of
	// resetting them to their previous commit.
	NoRollback bool
	// StopTimeout and StartTimeout bound each run of Stage.Stop and
	// Stage.Start: past it the command, and whatever it started, is
	// killed and the step fails (a stop that fails starts the old version
	// again). Default 2m each. A start command may leave a daemon behind:
	// its end is what counts.
	StopTimeout, StartTimeout time.Duration
	// CheckTimeout bounds how long Stage.Check may take to pass, all
	// attempts together (an attempt that hangs is killed); default 30s.
	CheckTimeout time.Duration
	// CutoverTimeout bounds the switch of the working copy on one host (a
	// checkout); default 10m.
	CutoverTimeout time.Duration
	// BuildTimeout and OnceTimeout bound Stage.Build (on each host) and
	// Stage.Once; default 10m each.
	BuildTimeout, OnceTimeout time.Duration
	// LockWait is how long to wait for a lock that a live deploy holds,
	// instead of failing at once (for CI pipelines that queue). A lock
	// whose holder is gone (its process died, or the host rebooted) is
	// taken over at once, and the output and audit log say so.
	LockWait time.Duration
	// Hooks are called as it goes (to post to a chat, tag a release, call
	// a deploy tracker).
	Hooks Hooks
}

// DeployOptions are a deploy's (Run) and its plan's (MakePlan).
type DeployOptions struct {
	Options
	RolloutOptions
	// Rev is what to deploy: a branch, tag, full or short hash; HEAD when
	// empty.
	Rev string
	// AllowDirty deploys the committed Rev even when the working copy has
	// uncommitted changes or untracked files.
	AllowDirty bool
	// IgnoreUntracked leaves untracked files out of the dirty check.
	IgnoreUntracked bool
	// ForcePush deploys even when a host's commit is not an ancestor of
	// Rev, so that history on the host is left behind.
	ForcePush bool
	// DiscardEdits deploys even over working copies that were edited on
	// the host, and over untracked host files that the new commit would
	// overwrite or delete; by default such a host is refused and the
	// paths listed. (Ignored files are never protected, as in git.)
	DiscardEdits bool
	// TakeOver deploys into a Path that holds a git repository gitric did
	// not create (gitric marks its own); by default that is refused.
	TakeOver bool
}

// RollbackOptions are a rollback's.
type RollbackOptions struct {
	Options
	RolloutOptions
	// Rev is the deploy to go back to: a commit, a tag, or a release
	// directory's name, that each host's audit log records as deployed.
	// Empty: the deploy before the live one.
	Rev string
	// DiscardEdits rolls back even over edits made on the host, as for
	// DeployOptions.
	DiscardEdits bool
}

// SwapOptions are a blue/green swap's.
type SwapOptions struct {
	Options
	RolloutOptions
}

// StatusOptions are Status's.
type StatusOptions struct {
	Options
	// Rev is the local revision the hosts are compared with (drift); HEAD
	// when empty.
	Rev string
}

// settings are what the engine runs an operation with: every option, the
// ones the operation does not take left zero.
type settings DeployOptions

// Hooks follow a deploy from Go.
type Hooks struct {
	// Before is called once every host is seeded (and, in ModeRelease,
	// built), before the first cutover, with what each host will do. An
	// error aborts the deploy: no host is cut over.
	Before func(ctx context.Context, p *Plan) error
	// AfterHost is called after each host's cutover, with its result. It
	// cannot undo the host: an error is reported, and the deploy goes on.
	AfterHost func(ctx context.Context, r HostResult) error
	// After is called at the end, with the result (failures and rollbacks
	// included) and the deploy's error.
	After func(ctx context.Context, r *Result, err error)
}

// Hints are the words a refusal uses to say how to override it.
type Hints struct {
	AllowDirty   string
	ForcePush    string
	Unlock       string
	DiscardEdits string
	TakeOver     string
	Status       string
	Releases     string
}

// ErrInvalidOptions means options cannot describe an operation.
var ErrInvalidOptions = errors.New("invalid deploy options")

// Validate checks the options without touching the repository or network.
func (o *DeployOptions) Validate() error {
	if err := o.Options.Validate(); err != nil {
		return err
	}
	return o.RolloutOptions.validate(o.Stage.Name)
}

// Validate checks the options without touching the repository or network.
func (o *RollbackOptions) Validate() error {
	if err := o.Options.Validate(); err != nil {
		return err
	}
	return o.RolloutOptions.validate(o.Stage.Name)
}

// Validate checks the options without touching the repository or network.
func (o *SwapOptions) Validate() error {
	if err := o.Options.Validate(); err != nil {
		return err
	}
	if o.Stage.mode() != ModeBlueGreen {
		return fmt.Errorf("%w: stage %q: swap is for blue/green stages (Mode %q), not %q", ErrInvalidOptions, o.Stage.Name, ModeBlueGreen, o.Stage.mode())
	}
	return o.RolloutOptions.validate(o.Stage.Name)
}

// Validate checks the options without touching the repository or network.
func (o *StatusOptions) Validate() error { return o.Options.Validate() }

func (o *RolloutOptions) validate(stage string) error {
	for _, d := range []time.Duration{o.StopTimeout, o.StartTimeout, o.CheckTimeout, o.CutoverTimeout, o.LockWait, o.BuildTimeout, o.OnceTimeout} {
		if d < 0 {
			return fmt.Errorf("%w: stage %q: timeouts must not be negative", ErrInvalidOptions, stage)
		}
	}
	if _, err := batchSize(o.Batch, 1); err != nil {
		return fmt.Errorf("%w: stage %q: %w", ErrInvalidOptions, stage, err)
	}
	return nil
}

// Validate checks the stage and the hosts without touching the
// repository or network.
func (o *Options) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: stage %q: %s", ErrInvalidOptions, o.Stage.Name, fmt.Sprintf(format, args...))
	}
	if len(o.Stage.Hosts) == 0 {
		return bad("no hosts (list them in the stage, or set GITRIC_HOSTS=user@host[:port],...)")
	}
	if strings.TrimSpace(o.Stage.Path) == "" {
		return bad("no repository path for the targets (set Path)")
	}
	if strings.ContainsRune(o.Stage.Path, 0) || strings.ContainsRune(o.Stage.Path, '\n') {
		return bad("the repository path %q holds a NUL or newline", o.Stage.Path)
	}
	for name, cmd := range map[string]string{"Stop": o.Stage.Stop, "Start": o.Stage.Start, "Check": o.Stage.Check} {
		if strings.ContainsRune(cmd, 0) {
			return bad("the %s command holds a NUL byte", name)
		}
	}
	for _, h := range o.Stage.Hosts {
		if _, err := remote.ParseAddress(h); err != nil {
			return fmt.Errorf("%w: stage %q: %w", ErrInvalidOptions, o.Stage.Name, err)
		}
	}
	if o.Parallel < 0 {
		return bad("Parallel must not be negative")
	}
	switch o.Stage.mode() {
	case ModeInPlace, ModeRelease, ModeBlueGreen:
	default:
		return bad("mode %q: use %q, %q or %q", o.Stage.Mode, ModeInPlace, ModeRelease, ModeBlueGreen)
	}
	if o.Stage.Keep < 0 || o.Stage.Keep == 1 {
		return bad("Keep must be 2 or more (the live release and the one before it are always kept)")
	}
	for color, env := range o.Stage.Colors {
		if color != "blue" && color != "green" {
			return bad("colour %q: the colours are blue and green", color)
		}
		for k := range env {
			if !envName.MatchString(k) {
				return bad("colour %s: %q is not an environment variable name", color, k)
			}
		}
	}
	// Names go into the host script as they are (export NAME=value):
	// only variable names may.
	names := map[string]string{}
	for k := range o.Stage.Env {
		names[k] = "Env"
	}
	for host, env := range o.Stage.HostEnv {
		for k := range env {
			names[k] = "HostEnv of " + host
		}
	}
	for _, k := range o.Stage.Secrets {
		names[k] = "Secrets"
	}
	for k, where := range names {
		if !envName.MatchString(k) {
			return bad("%s: %q is not an environment variable name", where, k)
		}
	}
	// Shared paths are linked (and what is there removed) inside a
	// release: they must stay inside it.
	for _, p := range o.Stage.Shared {
		t := strings.TrimSuffix(p, "/")
		clean := path.Clean(t)
		if t == "" || clean != t || path.IsAbs(t) || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") ||
			strings.ContainsAny(t, "\x00\n") || clean == ".git" || strings.HasPrefix(clean, ".git/") {
			return bad("shared path %q: write a path inside the release, such as .env or data/ (no .., no leading /, not .git)", p)
		}
	}
	if u := o.Stage.HTTPCheck; u != "" {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return bad("HTTPCheck %q: write a URL as the host sees it, such as http://127.0.0.1:8080/health", u)
		}
	}
	if o.Stage.Sudo != "" && !userName.MatchString(o.Stage.Sudo) {
		return bad("sudo user %q is not a user name", o.Stage.Sudo)
	}
	if _, err := o.Stage.hostsFor(o.Role); err != nil {
		return err
	}
	return nil
}

var (
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	userName = regexp.MustCompile(`^[a-z_][a-z0-9_.-]*[$]?$`)
)

// batchSize is how many of n hosts one batch holds.
func batchSize(spec string, n int) (int, error) {
	spec = strings.TrimSpace(spec)
	switch {
	case spec == "" || spec == "1":
		return 1, nil
	case spec == "all":
		return max(n, 1), nil
	case strings.HasSuffix(spec, "%"):
		p, err := strconv.Atoi(strings.TrimSuffix(spec, "%"))
		if err != nil || p < 1 || p > 100 {
			return 0, fmt.Errorf("batch %q: a percentage must be from 1%% to 100%%", spec)
		}
		return max(1, n*p/100), nil
	default:
		k, err := strconv.Atoi(spec)
		if err != nil || k < 1 {
			return 0, fmt.Errorf("batch %q: write all, a number of hosts, or a percentage such as 25%%", spec)
		}
		return k, nil
	}
}

func (o *settings) defaults() {
	if o.Dir == "" {
		o.Dir = "."
	}
	if o.Parallel == 0 {
		o.Parallel = 10
	}
	if o.CutoverTimeout == 0 {
		o.CutoverTimeout = 10 * time.Minute
	}
	if o.BuildTimeout == 0 {
		o.BuildTimeout = 10 * time.Minute
	}
	if o.OnceTimeout == 0 {
		o.OnceTimeout = 10 * time.Minute
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 2 * time.Minute
	}
	if o.StartTimeout == 0 {
		o.StartTimeout = 2 * time.Minute
	}
	if o.CheckTimeout == 0 {
		o.CheckTimeout = 30 * time.Second
	}
	if o.Who == "" {
		o.Who = Who()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Hints.AllowDirty == "" {
		o.Hints.AllowDirty = "set AllowDirty"
	}
	if o.Hints.ForcePush == "" {
		o.Hints.ForcePush = "set ForcePush"
	}
	if o.Hints.Unlock == "" {
		o.Hints.Unlock = "deploy.Unlock"
	}
	if o.Hints.DiscardEdits == "" {
		o.Hints.DiscardEdits = "set DiscardEdits"
	}
	if o.Hints.TakeOver == "" {
		o.Hints.TakeOver = "set TakeOver"
	}
	if o.Hints.Status == "" {
		o.Hints.Status = "deploy.Status"
	}
	if o.Hints.Releases == "" {
		o.Hints.Releases = "deploy.Releases"
	}
	if o.Stage.Keep == 0 {
		o.Stage.Keep = 5
	}
}
