package deploy_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

func TestReleaseModeAtomicCutover(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	opts := f.options()
	opts.Stage.Mode = deploy.ModeRelease
	opts.Stage.Keep = 3
	opts.Stage.Stop = "true"
	opts.Stage.Start = "true"
	root := f.target
	f.src.Write(t, map[string]string{"index.html": strings.Repeat("v0\n", 2000)})
	f.src.Git(t, "commit", "-qam", "v0")
	f.deploy(t, opts)

	// A client reads the live file through current all along.
	stop := make(chan struct{})
	var reads, bad atomic.Int64
	var firstBad atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(filepath.Join(root, "current", "index.html"))
			reads.Add(1)
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			ok := err == nil && len(lines) == 2000
			for _, l := range lines {
				ok = ok && l == lines[0]
			}
			if !ok {
				bad.Add(1)
				firstBad.CompareAndSwap(nil, fmt.Sprintf("%v: %d bytes", err, len(b)))
			}
		}
	}()
	var heads []string
	for i := 1; i <= 6; i++ {
		f.src.Write(t, map[string]string{"index.html": strings.Repeat(fmt.Sprintf("v%d\n", i), 2000)})
		f.src.Git(t, "commit", "-qam", fmt.Sprintf("v%d", i))
		heads = append(heads, f.src.Head(t))
		f.deploy(t, opts)
	}
	close(stop)
	wg.Wait()
	if bad.Load() > 0 || reads.Load() < 10 {
		t.Errorf("%d of %d reads through current saw a missing or torn file (first: %v)", bad.Load(), reads.Load(), firstBad.Load())
	}
	if got, _ := repotest.Git(filepath.Join(root, "current"), "rev-parse", "HEAD"); got != heads[5] {
		t.Fatalf("current is on %s, want %s", got, heads[5])
	}
	rels, _ := filepath.Glob(filepath.Join(root, "releases", "*"))
	if len(rels) != 3 {
		t.Errorf("%d releases kept, want 3: %v", len(rels), rels)
	}
	if !strings.Contains(f.out.String(), "current is now releases/") {
		t.Errorf("output does not name the new release:\n%s", f.out)
	}

	// Rollback is a symlink swap back to the release before.
	if _, err := deploy.Rollback(context.Background(), rollbackOptions(opts)); err != nil {
		t.Fatal(err)
	}
	if got, _ := repotest.Git(filepath.Join(root, "current"), "rev-parse", "HEAD"); got != heads[4] {
		t.Fatalf("after rollback current is on %s, want %s", got, heads[4])
	}
	if rels2, _ := filepath.Glob(filepath.Join(root, "releases", "*")); len(rels2) != 3 {
		t.Errorf("the rollback made a new release instead of reusing one: %v", rels2)
	}
}

func TestBlueGreen(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	opts := f.options()
	opts.Stage.Mode = deploy.ModeBlueGreen
	opts.Stage.Colors = map[string]map[string]string{"blue": {"PORT": "8081"}, "green": {"PORT": "8082"}}
	opts.Stage.Start = `echo "$GITRIC_COLOR $PORT $(cat index.html)" > started`
	root := f.target
	read := func(link, file string) string {
		b, _ := os.ReadFile(filepath.Join(root, link, file))
		return strings.TrimSpace(string(b))
	}
	color := func(link string) string {
		target, _ := os.Readlink(filepath.Join(root, link))
		return filepath.Base(target)
	}
	f.deploy(t, opts) // v1 on both; blue live
	if color("live") != "blue" || color("next") != "green" || read("live", "index.html") != "v1" {
		t.Fatalf("first deploy: live %s next %s", color("live"), color("next"))
	}
	f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	f.deploy(t, opts)
	if read("live", "index.html") != "v1" || read("next", "index.html") != "v2" || read("next", "started") != "green 8082 v2" {
		t.Fatalf("deploy went to live, or next did not start: live %q next %q started %q", read("live", "index.html"), read("next", "index.html"), read("next", "started"))
	}
	for i, want := range []struct{ live, content string }{{"green", "v2"}, {"blue", "v1"}} {
		if _, err := deploy.Swap(context.Background(), swapOptions(opts)); err != nil {
			t.Fatal(err)
		}
		if color("live") != want.live || read("live", "index.html") != want.content {
			t.Errorf("swap %d: live is %s serving %q", i+1, color("live"), read("live", "index.html"))
		}
	}
	f.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
	f.deploy(t, opts) // next is green again
	if read("next", "started") != "green 8082 v3" || read("live", "index.html") != "v1" {
		t.Errorf("third deploy: next started %q, live %q", read("next", "started"), read("live", "index.html"))
	}
	opts.Stage.Mode = ""
	if _, err := deploy.Swap(context.Background(), swapOptions(opts)); !errors.Is(err, deploy.ErrInvalidOptions) {
		t.Errorf("swap of an in-place stage = %v", err)
	}
}

// TestBlueGreenLiveWithoutNext deploys to a blue/green root that a first
// deploy left with live but no next (it stopped between its two links):
// next is made the other colour, and the deploy goes ahead.
func TestBlueGreenLiveWithoutNext(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	opts := f.options()
	opts.Stage.Mode = deploy.ModeBlueGreen
	f.deploy(t, opts)
	for _, gone := range []string{"next", "green"} {
		if err := os.RemoveAll(filepath.Join(f.target, gone)); err != nil {
			t.Fatal(err)
		}
		f.src.Commit(t, "after "+gone, map[string]string{"index.html": gone + "\n"})
		f.deploy(t, opts)
		next, _ := os.Readlink(filepath.Join(f.target, "next"))
		live, _ := os.Readlink(filepath.Join(f.target, "live"))
		b, _ := os.ReadFile(filepath.Join(f.target, "next", "index.html"))
		if filepath.Base(next) != "green" || filepath.Base(live) != "blue" || string(b) != gone+"\n" {
			t.Fatalf("without %s: next -> %q, live -> %q, next serves %q", gone, next, live, b)
		}
	}
}

func TestServerEditsRefused(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	opts := f.options()
	f.deploy(t, opts)
	os.WriteFile(filepath.Join(f.target, "index.html"), []byte("hotfix on the server\n"), 0o644)
	f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	before := repotest.Snapshot(t, f.target)
	_, err := deploy.Run(context.Background(), opts)
	var se *deploy.ServerEditsError
	if !errors.As(err, &se) || !strings.Contains(err.Error(), "index.html") || !strings.Contains(err.Error(), "DiscardEdits") {
		t.Fatalf("deploy over a server edit = %v", err)
	}
	if repotest.Snapshot(t, f.target) != before {
		t.Errorf("the refused deploy changed the host")
	}
	rep, _ := deploy.Status(context.Background(), statusOptions(opts))
	if len(rep.Hosts[0].Modified) != 1 {
		t.Errorf("status does not list the edit: %+v", rep.Hosts[0])
	}
	opts.DiscardEdits = true
	f.deploy(t, opts)
	if got := f.targetFile(t, "index.html"); got != "v2\n" {
		t.Errorf("index.html = %q", got)
	}
}

func TestIgnoreUntracked(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	f.src.Write(t, map[string]string{"scratch.txt": "x"})
	opts := f.options()
	if _, err := deploy.Run(context.Background(), opts); !errors.Is(err, deploy.ErrDirty) {
		t.Fatalf("untracked file, strict check = %v", err)
	}
	opts.IgnoreUntracked = true
	f.deploy(t, opts)
	f.src.Write(t, map[string]string{"index.html": "edited"})
	if _, err := deploy.Run(context.Background(), opts); !errors.Is(err, deploy.ErrDirty) {
		t.Fatalf("modified file with IgnoreUntracked = %v", err)
	}
}

// ensureUser creates a local user that can log in with a key (not locked).
func ensureUser(t *testing.T, name string) *user.User {
	t.Helper()
	if u, err := user.Lookup(name); err == nil {
		return u
	}
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", "-p", "*", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v: %s", name, err, out)
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestSudo(t *testing.T) {
	sshdtest.Require(t)
	if os.Geteuid() != 0 {
		t.Skip("creates users and a sudoers rule: run as root (CI does)")
	}
	if _, err := exec.LookPath("sudo"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("sudo is not installed (apt-get install -y sudo)")
		}
		t.Skip("sudo is not installed (apt-get install -y sudo)")
	}
	deployer := ensureUser(t, "gitricdeploy")
	app := ensureUser(t, "gitricapp")
	ensureUser(t, "gitricnopass")
	// One rule file per test process: several may run on one machine.
	rule := fmt.Sprintf("/etc/sudoers.d/gitric-test-%d", os.Getpid())
	if err := os.WriteFile(rule, []byte("gitricdeploy ALL=(gitricapp) NOPASSWD: ALL\n"), 0o440); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(rule) })

	f := newFixture(t, sshdtest.Options{})
	// sshd reads authorized_keys as the user logging in.
	keys := filepath.Join(f.srv.Dir, "authorized_keys")
	os.Chmod(keys, 0o644)
	for p := filepath.Dir(keys); p != "/tmp" && p != "/"; p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	parent := t.TempDir()
	for p := parent; p != "/tmp" && p != "/"; p = filepath.Dir(p) {
		os.Chmod(p, 0o755)
	}
	os.Chmod(parent, 0o777)
	f.target = filepath.Join(parent, "app")
	opts := f.options()
	opts.Stage.Hosts = []string{deployer.Username + "@" + f.srv.Addr}
	opts.Stage.Sudo = app.Username
	opts.Stage.Start = "id -un > started-as"
	f.deploy(t, opts)
	if got := strings.TrimSpace(f.targetFile(t, "started-as")); got != app.Username {
		t.Errorf("start ran as %q", got)
	}
	var st syscallStat
	if err := statOwner(filepath.Join(f.target, "index.html"), &st); err != nil || fmt.Sprint(st.uid) != app.Uid {
		t.Errorf("index.html belongs to uid %d (%v), want %s", st.uid, err, app.Uid)
	}

	opts.Stage.Hosts = []string{"gitricnopass@" + f.srv.Addr}
	opts.Stage.Path = filepath.Join(parent, "other")
	_, err := deploy.Run(context.Background(), opts)
	if !errors.Is(err, deploy.ErrSudo) || !strings.Contains(err.Error(), "password") || !strings.Contains(err.Error(), "NOPASSWD") {
		t.Fatalf("sudo that wants a password = %v", err)
	}
}
