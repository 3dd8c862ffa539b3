// Package gitrictasks is gitric's mage targets: deploy a git repository to
// servers by pushing the commit over SSH, then checking it out there.
//
// Import it into your magefile and say what your stages mean:
//
//	//go:build mage
//
//	package main
//
//	import (
//		//mage:import
//		"github.com/gitric/gitric/gitrictasks"
//	)
//
//	func init() {
//		gitrictasks.SetStage("prod", gitrictasks.StageConfig{
//			Hosts: []string{"deploy@web1.example.com", "deploy@web2.example.com:2222"},
//			Roles: map[string][]string{"web": {"deploy@web1.example.com"}},
//			Path:  "apps/hello", // relative to the login user's home
//			Stop:  "sudo systemctl stop hello",
//			Start: "sudo systemctl start hello",
//			Check: "curl -fsS localhost:8080/health",
//		})
//		gitrictasks.SetStage("staging", gitrictasks.StageConfig{...})
//	}
//
// Then `mage prod deploy` deploys HEAD, `mage allowDirty prod deploy` does
// so from a dirty working copy, `mage forcePush prod deploy` even when a
// host would lose history, and `mage ref v1.2.0 prod deploy` deploys a
// tag, branch or commit instead of HEAD. `mage stage staging deploy`
// selects any stage by name, `mage prod only web deploy` one role of it.
// `mage prod status` shows what every host runs, `mage prod rollback` puts
// them back on the previous deploy, `mage prod unlock` removes a stale
// deploy lock. `mage local deploy` deploys to an SSH server that gitric
// runs itself on 127.0.0.1, into .gitric/local.
//
// Hosts are reached as ssh reaches them: a host may be an ~/.ssh/config
// alias, with its HostName, User, Port, IdentityFile, ProxyJump and the
// rest (see package remote). `mage acceptNew prod deploy` trusts hosts
// that known_hosts does not list yet and records their keys (a changed
// key is still refused).
//
// The environment can change a call without editing code: GITRIC_HOSTS
// ([user@]host[:port] or aliases, comma-separated) replaces the stage's
// hosts; GITRIC_SSH_CONFIG names the ssh_config file to read instead of
// ~/.ssh/config and /etc/ssh/ssh_config ("none" for none);
// GITRIC_KNOWN_HOSTS (a colon-separated list of files) and GITRIC_IDENTITY
// (a private key file) replace the SSH defaults of ~/.ssh/known_hosts and
// ssh-agent plus ~/.ssh/id_*; GITRIC_BATCH ("all", "2", "25%") and
// GITRIC_PARALLEL set the cutover batch and the seeding concurrency;
// GITRIC_OUTPUT=json prints JSON lines for CI logs.
//
// The targets only record choices in a shared state and hand them to the
// engine in the deploy package, which can be used without mage.
package gitrictasks

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/magefile/mage/mg"
	"golang.org/x/crypto/ssh"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/localhost"
	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
)

// StageConfig is a named set of hosts and what to run on them; see
// deploy.Stage.
type StageConfig = deploy.Stage

// Settings apply to every stage; see deploy.Options for each.
type Settings struct {
	SSH             deploy.SSH
	Parallel        int
	Batch           string
	NoRollback      bool
	IgnoreUntracked bool
	CheckTimeout    time.Duration
	CutoverTimeout  time.Duration
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
	acceptNew       bool
	rev             string
}

var current = &state{stages: map[string]StageConfig{}}

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

// Prod selects the production stage: the hosts the magefile names for "prod" (or GITRIC_HOSTS).
func Prod() { selectStage("prod") }

// Stage selects a stage by name: mage stage staging deploy.
func Stage(name string) { selectStage(name) }

// Only limits the call to the hosts of one role of the stage: mage prod only web deploy.
func Only(role string) { update(func(s *state) { s.role = role }) }

// Local selects the embedded local host: an SSH server on 127.0.0.1 that deploys into .gitric/local.
func Local() { selectStage(LocalStage) }

// AllowDirty allows pushing even when the working copy is dirty.
func AllowDirty() { update(func(s *state) { s.allowDirty = true }) }

// ForcePush allows pushing even when history will be lost.
func ForcePush() { update(func(s *state) { s.forcePush = true }) }

// IgnoreUntracked leaves untracked files out of the dirty check (ignored files always are).
func IgnoreUntracked() { update(func(s *state) { s.ignoreUntracked = true }) }

// DiscardEdits deploys even over working copies that someone edited on the hosts (their edits are lost).
func DiscardEdits() { update(func(s *state) { s.discardEdits = true }) }

// AcceptNew trusts hosts that known_hosts does not list yet and records their keys; a changed key is still refused.
func AcceptNew() { update(func(s *state) { s.acceptNew = true }) }

// Ref deploys the given branch, tag or commit instead of HEAD: mage ref v1.2.0 prod deploy.
func Ref(ref string) { update(func(s *state) { s.rev = ref }) }

// Deploy deploys the commit to every host of the chosen stage: seed all, then stop, reset --hard, start in batches.
func Deploy(ctx context.Context) error {
	return withOptions(ctx, func(ctx context.Context, opts deploy.Options) error {
		_, err := deploy.Run(ctx, opts)
		return err
	})
}

// Rollback puts every host of the chosen stage back on the commit deployed before the current one.
func Rollback(ctx context.Context) error {
	return withOptions(ctx, func(ctx context.Context, opts deploy.Options) error {
		_, err := deploy.Rollback(ctx, opts)
		return err
	})
}

// Swap exchanges live and next on every host of the chosen blue/green stage.
func Swap(ctx context.Context) error {
	return withOptions(ctx, func(ctx context.Context, opts deploy.Options) error {
		_, err := deploy.Swap(ctx, opts)
		return err
	})
}

// Status shows what every host of the chosen stage runs, its lock and local edits, and any drift (read-only).
func Status(ctx context.Context) error {
	return withOptions(ctx, func(ctx context.Context, opts deploy.Options) error {
		_, err := deploy.Status(ctx, opts)
		return err
	})
}

// Unlock removes a stale deploy lock from every host of the chosen stage.
func Unlock(ctx context.Context) error {
	return withOptions(ctx, func(ctx context.Context, opts deploy.Options) error {
		return deploy.Unlock(ctx, opts)
	})
}

// withOptions runs fn with the options the earlier targets chose. SIGTERM
// cancels like Ctrl-C: a host step under way is finished, locks released.
func withOptions(ctx context.Context, fn func(context.Context, deploy.Options) error) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()
	opts, cleanup, err := current.options(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	return fn(ctx, opts)
}

func selectStage(name string) { update(func(s *state) { s.stage = name }) }

// update changes the shared state under its lock.
func update(fn func(s *state)) {
	current.mu.Lock()
	defer current.mu.Unlock()
	fn(current)
}

// ErrNoStage means deploy was called without a stage target before it.
var ErrNoStage = errors.New("no stage chosen")

// options turns the state into deploy options. For the local stage it
// starts the embedded SSH server; cleanup stops it.
func (s *state) options(ctx context.Context) (deploy.Options, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	nothing := func() {}
	if s.stage == "" {
		return deploy.Options{}, nothing, fmt.Errorf("%w: put a stage target before deploy, e.g. mage prod deploy (stages: %s)", ErrNoStage, s.stageNames())
	}
	stage, ok := s.stages[s.stage]
	if !ok && s.stage != LocalStage {
		return deploy.Options{}, nothing, fmt.Errorf("stage %q is not defined (stages: %s): call gitrictasks.SetStage(%q, gitrictasks.StageConfig{...}) in your magefile's init", s.stage, s.stageNames(), s.stage)
	}
	stage.Name = s.stage
	set := s.settings
	opts := deploy.Options{
		Stage:           stage,
		Role:            s.role,
		Rev:             s.rev,
		AllowDirty:      s.allowDirty,
		ForcePush:       s.forcePush,
		IgnoreUntracked: set.IgnoreUntracked || s.ignoreUntracked,
		DiscardEdits:    s.discardEdits,
		SSH:             set.SSH,
		Parallel:        set.Parallel,
		Batch:           set.Batch,
		NoRollback:      set.NoRollback,
		CheckTimeout:    set.CheckTimeout,
		CutoverTimeout:  set.CutoverTimeout,
		Out:             os.Stdout,
		Verbose:         mg.Verbose(),
		JSON:            os.Getenv("GITRIC_OUTPUT") == "json",
	}
	sel := s.stage
	if s.stage != LocalStage && s.stage != "prod" {
		sel = "stage " + s.stage
	}
	if s.role != "" {
		sel += " only " + s.role
	}
	if s.rev != "" {
		sel = "ref " + s.rev + " " + sel
	}
	// flags is this call again with one more override target.
	flags := func(extra string) string {
		f := []string{"mage"}
		for _, o := range []struct {
			name string
			on   bool
		}{{"allowDirty", s.allowDirty}, {"forcePush", s.forcePush}, {"discardEdits", s.discardEdits}} {
			if o.on || extra == o.name {
				f = append(f, o.name)
			}
		}
		return strings.Join(f, " ") + " " + sel + " deploy"
	}
	opts.Hints.AllowDirty = flags("allowDirty")
	opts.Hints.ForcePush = flags("forcePush")
	opts.Hints.DiscardEdits = flags("discardEdits")
	opts.Hints.Unlock = "mage " + sel + " unlock"
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
		return localOptions(ctx, opts)
	}
	if v := os.Getenv("GITRIC_HOSTS"); v != "" {
		opts.Stage.Hosts = splitHosts(v)
	}
	return opts, nothing, nil
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
func localOptions(ctx context.Context, opts deploy.Options) (deploy.Options, func(), error) {
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
	srv, err := localhost.Start(ctx, root)
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
	fmt.Printf("local host: SSH server on %s for %s\n", srv.Addr(), filepath.Join(root, opts.Stage.Path))
	return opts, func() { srv.Close() }, nil
}
