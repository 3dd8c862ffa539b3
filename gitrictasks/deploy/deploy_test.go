package deploy_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/remote"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// fixture is a local repository and one real sshd to deploy it to.
type fixture struct {
	src    *repotest.Repo
	srv    *sshdtest.Server
	target string
	out    *sshdtest.Buffer
}

func newFixture(t *testing.T, sshd sshdtest.Options) *fixture {
	t.Helper()
	sshdtest.Require(t)
	t.Parallel()
	f := &fixture{src: repotest.New(t), srv: sshdtest.Start(t, sshd), out: &sshdtest.Buffer{}}
	f.target = filepath.Join(t.TempDir(), "app")
	f.src.Commit(t, "first", map[string]string{"index.html": "v1\n", ".gitignore": "*.log\n"})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("deploy output:\n%s", f.out.String())
		}
	})
	return f
}

func (f *fixture) options() deploy.DeployOptions {
	return deploy.DeployOptions{
		Options: deploy.Options{
			Stage: deploy.Stage{
				Name:  "test",
				Hosts: []string{f.srv.User + "@" + f.srv.Addr},
				Path:  f.target,
			},
			Dir: f.src.Dir,
			SSH: deploy.SSH{
				KnownHostsFiles: []string{f.srv.KnownHostsFile},
				IdentityFiles:   []string{f.srv.ClientKeyFile},
				IdentitiesOnly:  true,
			},
			Out: f.out,
		},
	}
}

func (f *fixture) deploy(t *testing.T, opts deploy.DeployOptions) *deploy.Result {
	t.Helper()
	res, err := deploy.Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	return res
}

// targetHead is the target's HEAD, or "" when it has none.
func (f *fixture) targetHead(t *testing.T) string {
	t.Helper()
	out, err := repotest.Git(f.target, "rev-parse", "-q", "--verify", "HEAD")
	if err != nil {
		return ""
	}
	return out
}

func (f *fixture) targetFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.target, name))
	if err != nil {
		t.Fatalf("target file: %v", err)
	}
	return string(b)
}

func TestFirstThenIncrementalDeploy(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	first := f.src.Head(t)
	res := f.deploy(t, f.options())
	if got := f.targetHead(t); got != first {
		t.Fatalf("target HEAD = %q, want %s", got, first)
	}
	if got := f.targetFile(t, "index.html"); got != "v1\n" {
		t.Errorf("index.html = %q", got)
	}
	if h := res.Hosts[0]; h.Skipped || h.Err != nil || h.From != "" {
		t.Errorf("first deploy result = %+v", h)
	}
	if !strings.Contains(f.out.String(), "HEAD is now at "+first[:7]+" first") {
		t.Errorf("output lacks the HEAD line:\n%s", f.out)
	}

	second := f.src.Commit(t, "second", map[string]string{"index.html": "v2\n", "new/file.txt": "x"})
	res = f.deploy(t, f.options())
	if got := f.targetHead(t); got != second {
		t.Fatalf("target HEAD = %q, want %s", got, second)
	}
	if got := f.targetFile(t, "new/file.txt"); got != "x" {
		t.Errorf("new/file.txt = %q", got)
	}
	// One commit, two trees (root, new/) and two blobs.
	if h := res.Hosts[0]; h.Objects != 5 || h.From != first {
		t.Errorf("incremental deploy sent %d objects from %s; want 5 from %s", h.Objects, h.From, first)
	}
	if _, err := repotest.Git(f.target, "fsck", "--no-dangling"); err != nil {
		t.Errorf("target repository is damaged: %v", err)
	}
}

func TestSkipWhenCurrent(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	opts := f.options()
	marker := filepath.Join(t.TempDir(), "ran")
	opts.Stage.Stop = "echo stop >> " + marker
	opts.Stage.Start = "echo start >> " + marker
	f.deploy(t, opts)
	res := f.deploy(t, opts)
	if !res.Hosts[0].Skipped {
		t.Fatalf("second deploy of the same commit was not skipped: %+v", res.Hosts[0])
	}
	if !strings.Contains(f.out.String(), "already on "+f.src.Head(t)[:7]) {
		t.Errorf("output does not say the host is current:\n%s", f.out)
	}
	// The first deploy has nothing to stop; the skipped one runs nothing.
	if b, _ := os.ReadFile(marker); string(b) != "start\n" {
		t.Errorf("service commands ran %q, want only the first start", b)
	}
}

func TestDirtyWorkingCopy(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	committed := f.src.Head(t)
	for name, change := range map[string]map[string]string{
		"modified":  {"index.html": "uncommitted\n"},
		"untracked": {"notes.txt": "x"},
	} {
		t.Run(name, func(t *testing.T) {
			f.src.Write(t, change)
			t.Cleanup(func() {
				f.src.Git(t, "checkout", "-q", "--", ".")
				f.src.Git(t, "clean", "-qfd")
			})
			_, err := deploy.Run(context.Background(), f.options())
			var de *deploy.DirtyError
			if !errors.As(err, &de) || !errors.Is(err, deploy.ErrDirty) {
				t.Fatalf("deploy from a dirty working copy = %v, want DirtyError", err)
			}
			if !strings.Contains(strings.ToLower(err.Error()), "allowdirty") {
				t.Errorf("the refusal does not name allowDirty: %v", err)
			}
			if _, err := os.Stat(f.target); !os.IsNotExist(err) {
				t.Errorf("the target was touched before the refusal: %v", err)
			}
		})
	}
	f.src.Write(t, map[string]string{"index.html": "uncommitted\n", "notes.txt": "x"})
	opts := f.options()
	opts.AllowDirty = true
	f.deploy(t, opts)
	if got := f.targetHead(t); got != committed {
		t.Fatalf("allowDirty deployed %q, want the committed %s", got, committed)
	}
	if got := f.targetFile(t, "index.html"); got != "v1\n" {
		t.Errorf("allowDirty deployed uncommitted content: %q", got)
	}
}

func TestNonFastForward(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	opts := f.options()
	marker := filepath.Join(t.TempDir(), "ran")
	opts.Stage.Stop = "echo stop >> " + marker
	opts.Stage.Start = "echo start >> " + marker
	deployed := f.src.Head(t)
	f.deploy(t, opts)
	f.srv.Run(t, "echo running > "+filepath.Join(f.target, "service.log")) // ignored file on the host

	f.src.Write(t, map[string]string{"index.html": "amended\n"})
	f.src.Git(t, "commit", "-q", "-a", "--amend", "-m", "first, amended")
	amended := f.src.Head(t)
	before := repotest.Snapshot(t, f.target)
	_, err := deploy.Run(context.Background(), opts)
	var nff *deploy.NonFastForwardError
	if !errors.As(err, &nff) || !errors.Is(err, deploy.ErrNonFastForward) {
		t.Fatalf("deploy of an amended commit = %v, want NonFastForwardError", err)
	}
	for _, want := range []string{amended, "non-fast-forward", "left as it was", "ForcePush"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the refusal does not say %q: %v", want, err)
		}
	}
	if after := repotest.Snapshot(t, f.target); after != before {
		t.Errorf("the refused deploy changed the target:\nbefore %s\nafter  %s", before, after)
	}
	if b, _ := os.ReadFile(marker); string(b) != "start\n" {
		t.Errorf("service commands ran %q during a refused deploy", b)
	}

	opts.ForcePush = true
	f.deploy(t, opts)
	if got := f.targetHead(t); got != amended || got == deployed {
		t.Fatalf("forcePush deployed %q, want %s", got, amended)
	}
	if got := f.targetFile(t, "index.html"); got != "amended\n" {
		t.Errorf("index.html = %q", got)
	}
}

func TestStopResetStartOrder(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	opts := f.options()
	journal := filepath.Join(t.TempDir(), "journal")
	// Each command notes what it ran and which commit the working copy was
	// on at the time.
	opts.Stage.Stop = `echo "stop $(git rev-parse --short HEAD) $(cat index.html)" >> ` + journal
	opts.Stage.Start = `echo "start $(git rev-parse --short HEAD) $(cat index.html)" >> ` + journal
	first := f.src.Head(t)
	f.deploy(t, opts)
	second := f.src.Commit(t, "second", map[string]string{"index.html": "v2\n"})
	res := f.deploy(t, opts)
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	want := "start " + first[:7] + " v1\nstop " + first[:7] + " v1\nstart " + second[:7] + " v2\n"
	if string(b) != want {
		t.Errorf("journal:\n%s\nwant:\n%s", b, want)
	}
	if h := res.Hosts[0]; h.Downtime <= 0 || h.Downtime < h.Reset {
		t.Errorf("downtime %v, reset %v: not measured", h.Downtime, h.Reset)
	}
	if !strings.Contains(f.out.String(), "downtime ") {
		t.Errorf("output does not give the downtime:\n%s", f.out)
	}
}

func TestHostilePath(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	canary := filepath.Join(t.TempDir(), "pwned")
	f.target = filepath.Join(t.TempDir(), `it's a "dir" $HOME; touch `+canary+"; `touch "+canary+"`")
	opts := f.options()
	opts.Stage.Start = "cat index.html > started.log"
	f.deploy(t, opts)
	if got := f.targetHead(t); got != f.src.Head(t) {
		t.Fatalf("target HEAD = %q", got)
	}
	if got := f.targetFile(t, "started.log"); got != "v1\n" {
		t.Errorf("start command ran elsewhere: %q", got)
	}
	if _, err := os.Stat(canary); !os.IsNotExist(err) {
		t.Fatalf("the path was executed as a command: %s exists", canary)
	}
}

func TestRelativePathIsUnderHome(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	rel := filepath.Join(".gitric-test", filepath.Base(t.TempDir()))
	abs := filepath.Join(f.srv.Home, rel)
	t.Cleanup(func() { os.RemoveAll(abs) })
	opts := f.options()
	opts.Stage.Path = rel
	f.deploy(t, opts)
	f.target = abs
	if got := f.targetHead(t); got != f.src.Head(t) {
		t.Fatalf("%s: HEAD = %q, want %s", abs, got, f.src.Head(t))
	}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	otherKey, _ := sshdtest.WriteKey(t, t.TempDir())
	emptyKnownHosts := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(emptyKnownHosts, nil, 0o600)
	// A known_hosts that records another key for this host.
	impostor := sshdtest.Start(t, sshdtest.Options{})
	changedKnownHosts := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(f.srv.Addr)}, impostor.HostKey)
	os.WriteFile(changedKnownHosts, []byte(line+"\n"), 0o600)
	fileInTheWay := filepath.Join(t.TempDir(), "file")
	os.WriteFile(fileInTheWay, []byte("x"), 0o644)
	notEmpty := t.TempDir()
	os.WriteFile(filepath.Join(notEmpty, "precious.txt"), []byte("keep me"), 0o644)
	closed := sshdtest.ClosedPort(t)
	silent := sshdtest.SilentListener(t, "tcp", "127.0.0.1:0", "")

	tests := []struct {
		name   string
		change func(o *deploy.DeployOptions)
		is     error
		says   []string
	}{
		{"unknown host key", func(o *deploy.DeployOptions) { o.SSH.KnownHostsFiles = []string{emptyKnownHosts} },
			remote.ErrHostKeyUnknown, []string{f.srv.HostKeyFingerprint, "ssh-keyscan"}},
		{"changed host key", func(o *deploy.DeployOptions) { o.SSH.KnownHostsFiles = []string{changedKnownHosts} },
			remote.ErrHostKeyChanged, []string{f.srv.HostKeyFingerprint, changedKnownHosts + ":1", "ssh-keygen -R"}},
		{"wrong client key", func(o *deploy.DeployOptions) { o.SSH.IdentityFiles = []string{otherKey} },
			remote.ErrAuth, []string{f.srv.User, "authorized_keys"}},
		{"connection refused", func(o *deploy.DeployOptions) { o.Stage.Hosts = []string{"root@" + closed} },
			remote.ErrUnreachable, []string{closed}},
		{"no answer", func(o *deploy.DeployOptions) {
			o.Stage.Hosts = []string{"root@" + silent}
			o.SSH.ConnectTimeout = 500 * time.Millisecond
		}, remote.ErrUnreachable, []string{"500ms"}},
		{"unknown ref", func(o *deploy.DeployOptions) { o.Rev = "no-such-tag" }, nil, []string{"no-such-tag", "unknown revision"}},
		{"not a repository", func(o *deploy.DeployOptions) { o.Dir = t.TempDir() }, nil, []string{"not inside a git repository"}},
		{"path not creatable", func(o *deploy.DeployOptions) { o.Stage.Path = filepath.Join(fileInTheWay, "app") },
			deploy.ErrScript, []string{"repository path"}},
		{"path not empty and not a repository", func(o *deploy.DeployOptions) { o.Stage.Path = notEmpty },
			deploy.ErrScript, []string{"repository path"}},
		{"bad host", func(o *deploy.DeployOptions) { o.Stage.Hosts = []string{"root@host:99999"} }, deploy.ErrInvalidOptions, []string{"port"}},
		{"no hosts", func(o *deploy.DeployOptions) { o.Stage.Hosts = nil }, deploy.ErrInvalidOptions, []string{"GITRIC_HOSTS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := f.options()
			tt.change(&opts)
			start := time.Now()
			_, err := deploy.Run(context.Background(), opts)
			if err == nil {
				t.Fatal("deploy succeeded")
			}
			if time.Since(start) > 20*time.Second {
				t.Errorf("took %v to fail", time.Since(start)) // a hang, not a timing check
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
			for _, s := range tt.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q: %v", s, err)
				}
			}
			if _, err := os.Stat(f.target); !os.IsNotExist(err) {
				t.Errorf("the default target was created")
			}
		})
	}
	if b, _ := os.ReadFile(filepath.Join(notEmpty, "precious.txt")); string(b) != "keep me" {
		t.Errorf("a non-empty directory was taken over")
	}
}

func TestNoGitOnTarget(t *testing.T) {
	f := newFixture(t, sshdtest.Options{ExtraConfig: []string{"SetEnv PATH=/nonexistent"}})
	_, err := deploy.Run(context.Background(), f.options())
	if !errors.Is(err, deploy.ErrScript) || !strings.Contains(err.Error(), "git is not installed") {
		t.Fatalf("deploy to a host without git = %v", err)
	}
	if !strings.Contains(err.Error(), "apt-get install git") {
		t.Errorf("the error does not say how to install git: %v", err)
	}
}

// The options of the other operations, from a test's deploy options.
func rollbackOptions(o deploy.DeployOptions) deploy.RollbackOptions {
	return deploy.RollbackOptions{Options: o.Options, RolloutOptions: o.RolloutOptions, Rev: o.Rev, DiscardEdits: o.DiscardEdits}
}

func swapOptions(o deploy.DeployOptions) deploy.SwapOptions {
	return deploy.SwapOptions{Options: o.Options, RolloutOptions: o.RolloutOptions}
}

func statusOptions(o deploy.DeployOptions) deploy.StatusOptions {
	return deploy.StatusOptions{Options: o.Options, Rev: o.Rev}
}
