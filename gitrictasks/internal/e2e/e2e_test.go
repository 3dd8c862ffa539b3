package e2e_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/remote"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// fixture is a local repository and a target sshd reached through a
// proxy whose network can fail.
type fixture struct {
	src    *repotest.Repo
	srv    *sshdtest.Server
	proxy  *sshdtest.Proxy
	config string // ssh_config naming the target "target"
	target string // the repository path on the target
	out    *sshdtest.Buffer
}

func newFixture(t *testing.T, extra ...string) *fixture {
	t.Helper()
	sshdtest.Require(t)
	t.Parallel()
	f := &fixture{src: repotest.New(t), srv: sshdtest.Start(t, sshdtest.Options{}), out: &sshdtest.Buffer{}}
	f.proxy = sshdtest.StartProxy(t, f.srv.Addr)
	dir := t.TempDir()
	f.target = filepath.Join(dir, "app")
	kh := writeFile(t, dir, "known_hosts", "gitric-e2e-target "+authorized(f.srv.HostKey)+"\n")
	_, port, _ := net.SplitHostPort(f.proxy.Addr)
	var b strings.Builder
	b.WriteString("Host target\n")
	for _, l := range extra {
		b.WriteString("  " + l + "\n")
	}
	fmt.Fprintf(&b, "  HostName 127.0.0.1\n  Port %s\n  HostKeyAlias gitric-e2e-target\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  IdentityAgent none\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile none\n  ServerAliveInterval 1\n  ServerAliveCountMax 3\n",
		port, f.srv.User, f.srv.ClientKeyFile, kh)
	f.config = writeFile(t, dir, "ssh_config", b.String())
	f.src.Commit(t, "first", map[string]string{"index.html": "v1\n"})
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
			Stage: deploy.Stage{Name: "e2e", Hosts: []string{"target"}, Path: f.target},
			Dir:   f.src.Dir,
			SSH:   deploy.SSH{ConfigFile: f.config},
			Out:   f.out,
		},
	}
}

func (f *fixture) deploy(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := deploy.Run(ctx, f.options()); err != nil {
		t.Fatalf("deploy: %v", err)
	}
}

// bigCommit commits size bytes that do not compress, so that the pack is
// about that large.
func (f *fixture) bigCommit(t *testing.T, size int) string {
	t.Helper()
	data := make([]byte, size/2)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	return f.src.Commit(t, "big", map[string]string{"index.html": "v2\n", "blob.hex": hex.EncodeToString(data)})
}

// TestCutMidPack: the connection is cut after 1 MiB of an 8 MiB push.
// The deploy fails saying the connection was lost, the target's refs,
// HEAD and working copy are as they were, and the next deploy succeeds.
func TestCutMidPack(t *testing.T) {
	f := newFixture(t)
	f.deploy(t)
	first := f.src.Head(t)
	second := f.bigCommit(t, 8<<20)
	before := repotest.Snapshot(t, f.target)

	f.proxy.CutAfter(1 << 20)
	_, err := deploy.Run(context.Background(), f.options())
	if err == nil {
		t.Fatal("the deploy succeeded through a cut connection")
	}
	t.Logf("cut after %d bytes: %v", f.proxy.Sent(), err)
	if f.proxy.Cuts() != 1 {
		t.Fatalf("the proxy did not cut the connection (%d bytes went through)", f.proxy.Sent())
	}
	if !errors.Is(err, remote.ErrConnectionLost) || !strings.HasPrefix(err.Error(), "target: ") {
		t.Errorf("error %v, want one about target that wraps remote.ErrConnectionLost", err)
	}
	waitUnchanged(t, f.target, before)
	if got := head(f.target); got != first {
		t.Fatalf("target HEAD %s, want %s", got, first)
	}

	f.proxy.CutAfter(0)
	f.deploy(t)
	if got := head(f.target); got != second {
		t.Fatalf("the retry left HEAD at %s, want %s", got, second)
	}
	if _, err := repotest.Git(f.target, "fsck", "--no-dangling"); err != nil {
		t.Errorf("target repository is damaged: %v", err)
	}
}

// TestSilentNetwork: the network goes silent (nothing gets through, the
// connection stays open), at connect time or in the middle of the pack.
// The deploy fails within the configured bound (ConnectTimeout, or
// ServerAliveInterval x ServerAliveCountMax), saying why, and changes
// nothing; once the network is back, the deploy succeeds.
func TestSilentNetwork(t *testing.T) {
	tests := []struct {
		name   string
		after  int64 // bytes to the target before the network dies; 0: at once
		bound  time.Duration
		is     error
		says   string
		extras []string
	}{
		{"at connect", 0, 2 * time.Second, remote.ErrUnreachable, "within 2s (connect timeout)", []string{"ConnectTimeout 2"}},
		{"mid-pack", 1 << 20, 3 * time.Second, remote.ErrConnectionLost, "did not answer 3 keepalives", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.extras...)
			f.deploy(t)
			first := f.src.Head(t)
			second := f.bigCommit(t, 8<<20)
			before := repotest.Snapshot(t, f.target)

			f.proxy.FreezeAfter(tt.after)
			_, err := deploy.Run(context.Background(), f.options())
			took := time.Since(f.proxy.FrozenAt()) // from the moment the network died
			t.Logf("failed %v after the network died: %v", took.Round(time.Millisecond), err)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %v, want %v saying %q", err, tt.is, tt.says)
			}
			if f.proxy.FrozenAt().IsZero() || took > tt.bound+5*time.Second {
				t.Errorf("the deploy took %v to fail after the network died; the bound is %v", took, tt.bound)
			}
			waitUnchanged(t, f.target, before)
			if got := head(f.target); got != first {
				t.Fatalf("target HEAD %s, want %s", got, first)
			}

			f.proxy.Thaw()
			f.deploy(t)
			if got := head(f.target); got != second {
				t.Fatalf("the retry left HEAD at %s, want %s", got, second)
			}
		})
	}
}

// TestThroughJumpHost: a deploy through a ProxyJump host works, and the
// push and every command of the deploy share one connection to the
// target, carried by one connection to the jump host.
func TestThroughJumpHost(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	src := repotest.New(t)
	src.Commit(t, "first", map[string]string{"index.html": "v1\n"})
	target := sshdtest.Start(t, sshdtest.Options{ListenHost: "127.0.0.2"})
	jump := sshdtest.Start(t, sshdtest.Options{
		AuthorizedKeys: []string{authorized(target.ClientSigner.PublicKey())},
		ExtraConfig:    []string{"PermitOpen " + target.Addr},
	})
	dir := t.TempDir()
	kh := writeFile(t, dir, "known_hosts", target.KnownHostsLine()+"\n"+jump.KnownHostsLine()+"\n")
	cfg := writeFile(t, dir, "ssh_config", fmt.Sprintf(`
Host app
  HostName 127.0.0.2
  Port %d
  ProxyJump bastion
Host bastion
  HostName 127.0.0.1
  Port %d
Host *
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile %s
  GlobalKnownHostsFile none
`, target.Port, jump.Port, target.User, target.ClientKeyFile, kh))
	path := filepath.Join(t.TempDir(), "app")
	out := &sshdtest.Buffer{}
	opts := deploy.DeployOptions{
		Options: deploy.Options{
			Stage:   deploy.Stage{Name: "e2e", Hosts: []string{"app"}, Path: path, Start: "echo started > started.txt"},
			Dir:     src.Dir,
			SSH:     deploy.SSH{ConfigFile: cfg},
			Out:     out,
			Verbose: true,
		},
	}
	if _, err := deploy.Run(context.Background(), opts); err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	if got := head(path); got != src.Head(t) {
		t.Fatalf("target HEAD %q, want %s", got, src.Head(t))
	}
	if b, _ := os.ReadFile(filepath.Join(path, "started.txt")); string(b) != "started\n" {
		t.Errorf("start command output %q", b)
	}
	for name, srv := range map[string]*sshdtest.Server{"target": target, "jump host": jump} {
		if n := sshdtest.CountLines(srv.Log(), "Accepted publickey"); n != 1 {
			t.Errorf("the %s saw %d logins during one deploy, want 1", name, n)
		}
	}
	if !strings.Contains(out.String(), "app: through bastion: ") {
		t.Errorf("verbose output does not show the jump host:\n%s", out)
	}
}

// waitUnchanged checks that the target is as it was, also a moment
// later: sshd may still be winding down the cut session.
func waitUnchanged(t *testing.T, dir, before string) {
	t.Helper()
	for range 3 {
		if after := repotest.Snapshot(t, dir); after != before {
			t.Fatalf("the failed deploy changed the target:\nbefore %s\nafter  %s", before, after)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

func head(dir string) string {
	out, _ := repotest.Git(dir, "rev-parse", "-q", "--verify", "HEAD")
	return out
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func authorized(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
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
