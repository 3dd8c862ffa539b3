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
//		gitrictasks.SetStage("prod", gitrictasks.Stage{
//			Hosts: []string{"deploy@web1.example.com", "deploy@web2.example.com:2222"},
//			Path:  "apps/hello", // relative to the login user's home
//			Stop:  "sudo systemctl stop hello",
//			Start: "sudo systemctl start hello",
//		})
//	}
//
// Then `mage prod deploy` deploys HEAD, `mage allowDirty prod deploy` does
// so from a dirty working copy, `mage forcePush prod deploy` even when a
// host would lose history, and `mage ref v1.2.0 prod deploy` deploys a
// tag, branch or commit instead of HEAD. `mage local deploy` deploys to an
// SSH server that gitric runs itself on 127.0.0.1, into .gitric/local.
//
// The environment can change a stage without editing code: GITRIC_HOSTS
// (user@host[:port],...) replaces its hosts, GITRIC_KNOWN_HOSTS (a
// colon-separated list of files) and GITRIC_IDENTITY (a private key file)
// replace the SSH defaults of ~/.ssh/known_hosts and ssh-agent plus
// ~/.ssh/id_*.
//
// The targets only record choices in a shared state and hand them to the
// engine in the deploy package, which can be used without mage.
package gitrictasks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/magefile/mage/mg"
	"golang.org/x/crypto/ssh"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/localhost"
	"github.com/gitric/gitric/gitrictasks/localrepo"
	"github.com/gitric/gitric/gitrictasks/remote"
)

// Stage is a named set of hosts and what to run on them; see deploy.Stage.
type Stage = deploy.Stage

// LocalStage is the name of the stage the Local target selects.
const LocalStage = "local"

// state is what the targets of one mage call set for the ones after them.
type state struct {
	mu         sync.Mutex
	stages     map[string]Stage
	stage      string
	allowDirty bool
	forcePush  bool
	rev        string
	ssh        remote.Config
}

var current = &state{stages: map[string]Stage{}}

// SetStage defines (or redefines) a stage. Call it from your magefile's
// init. A stage named "prod" is what the Prod target selects; "local"
// customises Local (its hosts are ignored).
func SetStage(name string, s Stage) {
	current.mu.Lock()
	defer current.mu.Unlock()
	s.Name = name
	current.stages[name] = s
}

// SetSSH sets how gitric connects: known_hosts files, identity files, keys
// and timeouts. Call it from your magefile's init; the environment
// variables GITRIC_KNOWN_HOSTS and GITRIC_IDENTITY still take precedence.
func SetSSH(cfg remote.Config) {
	current.mu.Lock()
	defer current.mu.Unlock()
	current.ssh = cfg
}

// Prod selects the production stage: the hosts the magefile names for "prod" (or GITRIC_HOSTS).
func Prod() { selectStage("prod") }

// Local selects the embedded local host: an SSH server on 127.0.0.1 that deploys into .gitric/local.
func Local() { selectStage(LocalStage) }

// AllowDirty allows pushing even when the working copy is dirty.
func AllowDirty() {
	current.mu.Lock()
	defer current.mu.Unlock()
	current.allowDirty = true
}

// ForcePush allows pushing even when history will be lost.
func ForcePush() {
	current.mu.Lock()
	defer current.mu.Unlock()
	current.forcePush = true
}

// Ref deploys the given branch, tag or commit instead of HEAD: mage ref v1.2.0 prod deploy.
func Ref(ref string) {
	current.mu.Lock()
	defer current.mu.Unlock()
	current.rev = ref
}

// Deploy deploys the commit to every host of the chosen stage: seed, stop, reset --hard, start.
func Deploy(ctx context.Context) error {
	opts, cleanup, err := current.options(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	res, err := deploy.Run(ctx, opts)
	if err != nil {
		return err
	}
	done := 0
	for _, h := range res.Hosts {
		if !h.Skipped {
			done++
		}
	}
	fmt.Printf("deployed %s to %d of %d host(s) of %s\n", res.Commit, done, len(res.Hosts), opts.Stage.Name)
	return nil
}

func selectStage(name string) {
	current.mu.Lock()
	defer current.mu.Unlock()
	current.stage = name
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
		return deploy.Options{}, nothing, fmt.Errorf("stage %q is not defined: call gitrictasks.SetStage(%q, gitrictasks.Stage{...}) in your magefile's init", s.stage, s.stage)
	}
	stage.Name = s.stage
	opts := deploy.Options{
		Stage:      stage,
		Rev:        s.rev,
		AllowDirty: s.allowDirty,
		ForcePush:  s.forcePush,
		SSH:        s.ssh,
		Out:        os.Stdout,
		Verbose:    mg.Verbose(),
	}
	call := s.stage + " deploy"
	if s.rev != "" {
		call = "ref " + s.rev + " " + call
	}
	opts.Hints.AllowDirty = "mage allowDirty " + call
	opts.Hints.ForcePush = "mage forcePush " + call
	if s.allowDirty {
		opts.Hints.ForcePush = "mage allowDirty forcePush " + call
	}
	if s.forcePush {
		opts.Hints.AllowDirty = "mage allowDirty forcePush " + call
	}
	if v := os.Getenv("GITRIC_KNOWN_HOSTS"); v != "" {
		opts.SSH.KnownHostsFiles = filepath.SplitList(v)
	}
	if v := os.Getenv("GITRIC_IDENTITY"); v != "" {
		opts.SSH.IdentityFiles = []string{v}
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
	opts.Stage.Hosts = []string{srv.User() + "@" + srv.Addr()}
	opts.SSH = remote.Config{
		Signers:         []ssh.Signer{srv.ClientSigner()},
		IdentitiesOnly:  true,
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey()),
	}
	fmt.Printf("local host: SSH server on %s, deploying into %s\n", srv.Addr(), filepath.Join(root, opts.Stage.Path))
	return opts, func() { srv.Close() }, nil
}
