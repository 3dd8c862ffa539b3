// Package gitrictasks is gitric's mage targets: deploy a git repository to
// servers by pushing the commit over SSH, then checking it out there.
//
// # Importing
//
// Import the package into your magefile under a namespace, and say what
// your stages are:
//
//	//go:build mage
//
//	package main
//
//	import (
//		//mage:import gitric
//		"github.com/gitric/gitric/gitrictasks"
//	)
//
//	func init() {
//		gitrictasks.SetStage("prod", gitrictasks.StageConfig{
//			Hosts: []string{"deploy@web1.example.com", "deploy@web2.example.com:2222"},
//			Roles: map[string][]string{"web": {"deploy@web1.example.com"}},
//			Path:  "apps/hello", // relative to the home of the user the commands run as
//			Stop:  "sudo systemctl stop hello",
//			Start: "sudo systemctl start hello",
//			Check: "curl -fsS localhost:8080/health",
//		})
//		gitrictasks.SetStage("staging", gitrictasks.StageConfig{...})
//	}
//
// The targets are then gitric:prod, gitric:deploy and so on, next to your
// own. With a root import (//mage:import with no name) they are prod,
// deploy and so on. Every hint gitric prints is your call again, in the
// form you typed it.
//
// # Calls
//
// A call names a stage, any modifiers, then an action; mage runs the
// targets in the order given, so the action comes last:
//
//	mage gitric:prod gitric:deploy
//	mage gitric:stage staging gitric:only web gitric:deploy
//	mage gitric:allowDirty gitric:ref v1.2.0 gitric:prod gitric:deploy
//	mage gitric:prod gitric:status
//	mage gitric:local gitric:deploy
//
// The first deploys HEAD to every host of prod; the second to the hosts of
// the role web of the stage staging; the third the tag v1.2.0, even though
// the working copy has uncommitted changes; the fourth shows what every
// host of prod runs; the last deploys to an SSH server that gitric runs
// itself on 127.0.0.1, into .gitric/local, for trying things out.
//
// The stage targets are Prod, Stage and Local; the modifiers Only, Ref,
// AllowDirty, ForcePush, IgnoreUntracked, DiscardEdits and AcceptNew; the
// actions Deploy, Rollback, Swap, Status and Unlock. A stage or modifier
// typed after the last action (mage gitric:prod gitric:deploy
// gitric:allowDirty) would apply to nothing: the action refuses the call
// before it does anything and shows where to put it. `mage -h gitric:deploy`
// explains each target.
//
// Hosts are reached as ssh reaches them: a host may be an ~/.ssh/config
// alias, with its HostName, User, Port, IdentityFile, ProxyJump and the
// rest. Host keys are checked against known_hosts; AcceptNew trusts hosts
// that it does not list yet (a changed key is always refused).
//
// # Environment
//
// The environment changes a call without editing code:
//
//	GITRIC_HOSTS        [user@]host[:port] or ssh_config aliases, comma-separated:
//	                    replaces the stage's hosts (not the local stage's)
//	GITRIC_SSH_CONFIG   the ssh_config file to read instead of ~/.ssh/config and
//	                    /etc/ssh/ssh_config ("none": none)
//	GITRIC_KNOWN_HOSTS  known_hosts files, colon-separated, instead of ~/.ssh/known_hosts
//	GITRIC_IDENTITY     a private key file instead of ssh-agent and ~/.ssh/id_*
//	GITRIC_BATCH        hosts cut over at a time: "all", "2", "25%" (default 1)
//	GITRIC_PARALLEL     hosts connected and seeded at a time (default 10)
//	GITRIC_OUTPUT       "json": JSON lines on stdout instead of text
//
// They take precedence over Configure. With GITRIC_OUTPUT=json every line
// on stdout is a JSON object: {"time","host","msg"} for what happens, one
// object per host with "summary": true at the end, and
// {"time","level":"error","msg"} for the error that ends the call; mage
// still prints that error on stderr ("Error: ...") and exits non-zero.
//
// # Stopping a deploy
//
// Ctrl-C (SIGINT to the call's process group, as a terminal sends it),
// SIGTERM or SIGHUP to any process of the call (go tool mage, mage, or the
// magefile mage compiled, which runs the targets), or mage dying, cancels
// the action:
// a host step under way (a seed, or stop, reset and start) is finished,
// hosts not cut over yet stay on their commit, locks are released and the
// summary is printed. A second signal exits at once. A SIGINT sent to mage
// alone is swallowed by mage, which does not forward it. On Ctrl-C, mage gives
// the targets 5 seconds before it exits. Do not use mage's -t to bound a
// deploy: when it runs out, mage exits without waiting for the hosts; set
// Settings.CutoverTimeout instead.
//
// # Without mage
//
// The targets only record choices in a shared state and hand them to the
// engine in package deploy, which can be used without mage.
package gitrictasks

// mage shows a target's whole doc comment for mage -h, line by line:
//mage:multiline
