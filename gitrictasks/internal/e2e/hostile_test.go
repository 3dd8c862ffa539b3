package e2e_test

// The hostile-host tests ("Safe on every host"): real sshd, real login
// shells, odd paths, odd repositories, killed processes. Every case
// asserts what is on the host afterwards, not just the error.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// deployBound turns a hang of any deploy in these tests into a failure.
const deployBound = 45 * time.Second

// lab is one sshd that many cases share: the test's own user and
// throwaway users (sshdtest.AddUser) log in to it with its client key.
type lab struct {
	srv *sshdtest.Server
	dir string
}

func newLab(t *testing.T, opts sshdtest.Options) *lab {
	t.Helper()
	sshdtest.Require(t)
	return &lab{srv: sshdtest.Start(t, opts), dir: t.TempDir()}
}

// login is how a case reaches the lab: as user (nil: the test's own
// user), through an ssh_config that names the host "target".
type login struct {
	lab    *lab
	user   *sshdtest.User
	name   string // the login name
	home   string
	config string
}

func (l *lab) login(t *testing.T, u *sshdtest.User, extra ...string) *login {
	t.Helper()
	lg := &login{lab: l, user: u, name: l.srv.User, home: l.srv.Home}
	if u != nil {
		lg.name, lg.home = u.Name, u.Home
	}
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("Host target\n")
	for _, e := range extra {
		b.WriteString("  " + e + "\n")
	}
	fmt.Fprintf(&b, "  HostName 127.0.0.1\n  Port %d\n  User %s\nHost *\n  IdentityFile %s\n  IdentitiesOnly yes\n  IdentityAgent none\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile none\n  ServerAliveInterval 2\n  ServerAliveCountMax 3\n",
		l.srv.Port, lg.name, l.srv.ClientKeyFile, l.srv.KnownHostsFile)
	lg.config = writeFile(t, dir, "ssh_config", b.String())
	return lg
}

// env is one case: a local repository with a first commit (v1) and a
// deploy path on the host.
type env struct {
	*login
	src     *repotest.Repo
	path    string // Stage.Path as written
	dir     string // where that is on the host
	scratch string // a directory of the case's own, outside the deploy
	mode    deploy.Mode
	out     *sshdtest.Buffer
	v1      string
}

func newEnv(t *testing.T, lg *login, mode deploy.Mode) *env {
	t.Helper()
	e := &env{login: lg, src: repotest.New(t), mode: mode, out: &sshdtest.Buffer{}, scratch: t.TempDir()}
	e.v1 = e.src.Commit(t, "v1", map[string]string{"index.html": "v1\n"})
	base := t.TempDir()
	if lg.user != nil {
		// Under the user's home: t.TempDir's parents are root's alone.
		base = mkdir(t, filepath.Join(lg.home, "base"))
		lg.user.Chown(t, base)
		e.scratch = mkdir(t, filepath.Join(lg.home, "scratch")) // root's
	}
	e.setPath(filepath.Join(base, "app"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("deploy output:\n%s", e.out)
		}
	})
	return e
}

// setPath sets the stage path; a relative one is under the login's home.
func (e *env) setPath(p string) {
	e.path = p
	switch {
	case strings.HasPrefix(p, "~/"):
		e.dir = filepath.Join(e.home, p[2:])
	case filepath.IsAbs(p):
		e.dir = p
	default:
		e.dir = filepath.Join(e.home, p)
	}
}

func (e *env) options() deploy.DeployOptions {
	return deploy.DeployOptions{
		Options: deploy.Options{
			Stage: deploy.Stage{Name: "hostile", Hosts: []string{"target"}, Path: e.path, Mode: e.mode},
			Dir:   e.src.Dir,
			SSH:   deploy.SSH{ConfigFile: e.config},
			Out:   e.out,
			Who:   "tester@e2e",
		},
	}
}

// run deploys with opts, bounded.
func (e *env) run(opts deploy.DeployOptions) (*deploy.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), deployBound)
	defer cancel()
	return deploy.Run(ctx, opts)
}

// deploy deploys HEAD, which must work.
func (e *env) deploy(t *testing.T) {
	t.Helper()
	if _, err := e.run(e.options()); err != nil {
		t.Fatalf("deploy: %v", err)
	}
}

// gitDir is the host repository's git directory.
func (e *env) gitDir() string {
	if e.mode == deploy.ModeRelease || e.mode == deploy.ModeBlueGreen {
		return filepath.Join(e.dir, "repo")
	}
	return filepath.Join(e.dir, ".git")
}

// work is the working copy a deploy changes.
func (e *env) work() string {
	switch e.mode {
	case deploy.ModeRelease:
		return filepath.Join(e.dir, "current")
	case deploy.ModeBlueGreen:
		return filepath.Join(e.dir, "next")
	}
	return e.dir
}

// head is the host working copy's commit; "" for none.
func (e *env) head() string {
	out, err := repotest.Git(e.work(), "rev-parse", "-q", "--verify", "HEAD")
	if err != nil {
		return ""
	}
	return out
}

// read is a file of the host working copy; "<none>" when missing.
func (e *env) read(name string) string {
	b, err := os.ReadFile(filepath.Join(e.work(), name))
	if err != nil {
		return "<none>"
	}
	return string(b)
}

func (e *env) lockFile() string { return filepath.Join(e.gitDir(), "gitric", "lock") }

// lock is the host lock's owner, "" when there is none.
func (e *env) lock() string {
	if fi, err := os.Lstat(e.lockFile()); err != nil {
		return ""
	} else if fi.IsDir() {
		return "<directory>"
	}
	owner, _ := os.Readlink(e.lockFile())
	return owner
}

func (e *env) audit(t *testing.T) []deploy.AuditEntry {
	t.Helper()
	file, err := os.Open(filepath.Join(e.gitDir(), "gitric", "audit.log"))
	if err != nil {
		return nil
	}
	defer file.Close()
	var out []deploy.AuditEntry
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var a deploy.AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, a)
	}
	return out
}

// host is what a case expects on the host afterwards.
type host struct {
	head  string            // the working copy's commit; "" none (no repository)
	files map[string]string // content, or "<none>"
	audit deploy.Outcome    // the audit log's last result; "" not checked
	// noAudit: there must be no audit log.
	noAudit bool
	reason  string // in the last audit line's reason
	locked  bool   // the lock is still there
}

// expect checks the host against w. The script releases its lock when
// it ends, which may be a moment after the deploy returned (or, for a
// client that died, after the host finished the step under way): unless
// w.locked, expect waits up to 10s for that first.
func (e *env) expect(t *testing.T, w host) {
	t.Helper()
	lock := e.lock()
	for i := 0; i < 100 && lock != "" && !w.locked; i++ {
		time.Sleep(100 * time.Millisecond)
		lock = e.lock()
	}
	if (lock != "") != w.locked {
		t.Errorf("host lock %q, want locked=%v", lock, w.locked)
	}
	if got := e.head(); got != w.head {
		t.Errorf("host HEAD %q, want %q", got, w.head)
	}
	for name, content := range w.files {
		if got := e.read(name); got != content {
			t.Errorf("host file %q is %q, want %q", name, got, content)
		}
	}
	log := e.audit(t)
	switch {
	case w.noAudit && len(log) > 0:
		t.Errorf("audit log %+v, want none", log)
	case w.audit != "" && len(log) == 0:
		t.Errorf("no audit log, want a last line %q", w.audit)
	case w.audit != "":
		if l := log[len(log)-1]; l.Result != w.audit || !strings.Contains(l.Reason, w.reason) {
			t.Errorf("last audit line %+v, want result %q reason containing %q", l, w.audit, w.reason)
		}
	}
}

// untouched checks that the host path was never created.
func (e *env) untouched(t *testing.T) {
	t.Helper()
	if _, err := os.Lstat(e.dir); err == nil {
		t.Errorf("the deploy created %s", e.dir)
	}
}

// hostGit runs git in the host's working copy as root, then gives the
// files back to the login user.
func (e *env) hostGit(t *testing.T, args ...string) string {
	t.Helper()
	out, err := repotest.Git(e.work(), args...)
	if err != nil {
		t.Fatal(err)
	}
	e.own(t, e.dir)
	return out
}

// hostWrite writes files into the host's working copy.
func (e *env) hostWrite(t *testing.T, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(e.work(), name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	e.own(t, e.dir)
}

func (e *env) own(t *testing.T, paths ...string) {
	t.Helper()
	if e.user != nil {
		e.user.Chown(t, paths...)
	}
}

// foreignCommit puts the host's working copy on a commit made there, which
// the local repository does not have.
func (e *env) foreignCommit(t *testing.T) string {
	t.Helper()
	e.hostGit(t, "-c", "user.name=ops", "-c", "user.email=ops@host", "commit", "-q", "--allow-empty", "-m", "hotfix on the host")
	return e.hostGit(t, "rev-parse", "HEAD")
}

// scriptPID is the host script's process id, read from the lock it holds;
// it waits up to 20s for the lock to appear.
func (e *env) scriptPID(t *testing.T) int {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if owner := e.lock(); strings.HasPrefix(owner, "pid=") {
			pid, err := strconv.Atoi(strings.Fields(strings.TrimPrefix(owner, "pid="))[0])
			if err == nil {
				return pid
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("no lock appeared at %s", e.lockFile())
	return 0
}

// waitChild waits up to 20s for a child process of pid whose command
// line holds word (the host script's git receive-pack).
func waitChild(t *testing.T, pid int, word string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		procs, _ := filepath.Glob("/proc/[0-9]*/stat")
		for _, p := range procs {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			// pid (comm) state ppid ...
			_, rest, _ := strings.Cut(string(b), ") ")
			if f := strings.Fields(rest); len(f) > 1 && f[1] == strconv.Itoa(pid) {
				cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline"))
				if strings.Contains(string(cmd), word) {
					return
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("process %d started no %q", pid, word)
}

// waitFile waits up to 20s for a file to exist.
func waitFile(t *testing.T, p string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Lstat(p); err == nil {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s did not appear", p)
}

func wantIs(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

func wantScript(t *testing.T, err error, code string) {
	t.Helper()
	var se *deploy.ScriptError
	if !errors.As(err, &se) || se.Code != code {
		t.Fatalf("error %v, want a host script refusal %q", err, code)
	}
}

func wantSays(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("error %v does not say %q", err, p)
		}
	}
}

// startSleeper starts a process of this test that lives for d (a live
// lock holder); it is killed, by its pid, when the test ends.
func startSleeper(t *testing.T, d time.Duration) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", strconv.Itoa(int(d.Seconds())))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	return cmd
}

func bootID(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skipf("no boot id: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// fakeLock makes the host's lock as a deploy of process pid would.
func (e *env) fakeLock(t *testing.T, owner string) {
	t.Helper()
	if err := os.Symlink(owner, e.lockFile()); err != nil {
		t.Fatal(err)
	}
	if e.user != nil {
		_ = os.Lchown(e.lockFile(), e.user.UID, -1)
	}
}

// mountTmpfs mounts a tmpfs of size bytes (and the other mount options
// given) on a new directory, unmounted when the test ends. Without the
// right to mount, the test is skipped (failed under CI=true).
func mountTmpfs(t *testing.T, size int, options ...string) string {
	t.Helper()
	sshdtest.RequireRoot(t, "mounting a small tmpfs (a full disk)")
	dir := t.TempDir()
	opts := strings.Join(append([]string{fmt.Sprintf("size=%d,mode=0755", size)}, options...), ",")
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v: %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// hostileCase is one row of TestHostile.
type hostileCase struct {
	name string
	// user: log in as a throwaway user (relative paths, permissions)
	// rather than as the test's own user (root in CI).
	user bool
	mode deploy.Mode
	// test arranges the local repository and the host, deploys, and
	// checks the error and the host state.
	test func(t *testing.T, e *env)
}

// TestHostile is the table of hostile hosts, paths, refs and repository
// states. The cases share one sshd.
func TestHostile(t *testing.T) {
	t.Parallel()
	l := newLab(t, sshdtest.Options{FastShell: true})
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var u *sshdtest.User
			if tc.user {
				u = l.srv.AddUser(t, "/bin/bash", nil)
			}
			tc.test(t, newEnv(t, l.login(t, u), tc.mode))
		})
	}
}

// twoDeploys deploys v1 then v2 to the env's path, which must work, and
// checks the host on v2.
func twoDeploys(t *testing.T, e *env) {
	t.Helper()
	e.deploy(t)
	e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "v1\n"}, audit: deploy.OutcomeOK})
	v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	e.deploy(t)
	e.expect(t, host{head: v2, files: map[string]string{"index.html": "v2\n"}, audit: deploy.OutcomeOK})
	if l := e.audit(t); len(l) != 2 || l[1].From != e.v1 || l[1].To != v2 {
		t.Errorf("audit log %+v, want two deploys, v1 then v2", l)
	}
}

// pathCase deploys twice to a path made of the base temp dir and name.
func pathCase(name string) func(t *testing.T, e *env) {
	return func(t *testing.T, e *env) {
		e.setPath(filepath.Join(filepath.Dir(e.dir), name))
		twoDeploys(t, e)
	}
}

// noInjection checks that nothing a path tried to run ran.
func noInjection(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if m, _ := filepath.Glob(filepath.Join(d, "pwned*")); len(m) > 0 {
			t.Errorf("a path's text ran as a command: %v", m)
		}
	}
}

func hostileCases() []hostileCase {
	cases := []hostileCase{
		// ---- host paths ----
		{name: "path/spaces", test: pathCase("my app  dir")},
		{name: "path/quotes", test: pathCase(`it's a "quoted" app`)},
		{name: "path/dollar-backticks", test: func(t *testing.T, e *env) {
			base := filepath.Dir(e.dir)
			e.setPath(base + "/a$(touch pwned1)`touch pwned2`${HOME}$HOME")
			twoDeploys(t, e)
			noInjection(t, base, e.dir, e.home)
		}},
		{name: "path/semicolons", test: func(t *testing.T, e *env) {
			base := filepath.Dir(e.dir)
			e.setPath(base + "/app;touch pwned3&&touch pwned4|x;#")
			twoDeploys(t, e)
			noInjection(t, base, e.dir, e.home)
		}},
		{name: "path/glob-chars", test: pathCase("app*[?]{a,b}")},
		{name: "path/unicode", test: pathCase("应用 ünïcödé 🚀")},
		{name: "path/leading-dash", user: true, test: func(t *testing.T, e *env) {
			e.setPath("-rf app")
			twoDeploys(t, e)
		}},
		{name: "path/tilde", user: true, test: func(t *testing.T, e *env) {
			e.setPath("~/site")
			twoDeploys(t, e)
		}},
		{name: "path/relative", user: true, test: func(t *testing.T, e *env) {
			e.setPath("deploy/app")
			twoDeploys(t, e)
		}},
		{name: "path/newline", test: func(t *testing.T, e *env) {
			e.setPath(e.dir + "\nrm -rf /")
			_, err := e.run(e.options())
			wantIs(t, err, deploy.ErrInvalidOptions)
			e.untouched(t)
		}},
		{name: "path/file-in-the-way", test: func(t *testing.T, e *env) {
			writeFile(t, filepath.Dir(e.dir), "app", "not a directory\n")
			_, err := e.run(e.options())
			wantScript(t, err, "path")
			if b, _ := os.ReadFile(e.dir); string(b) != "not a directory\n" {
				t.Errorf("the file in the way is now %q", b)
			}
		}},
		{name: "path/file-in-the-way-of-a-parent", test: func(t *testing.T, e *env) {
			writeFile(t, filepath.Dir(e.dir), "parent", "a file\n")
			e.setPath(filepath.Join(filepath.Dir(e.dir), "parent", "app"))
			_, err := e.run(e.options())
			wantScript(t, err, "path")
			wantSays(t, err, "cannot create")
		}},
		{name: "path/unwritable-parent", user: true, test: func(t *testing.T, e *env) {
			parent := filepath.Join(e.scratch, "root-owned")
			if err := os.Mkdir(parent, 0o755); err != nil {
				t.Fatal(err)
			}
			e.setPath(filepath.Join(parent, "app"))
			_, err := e.run(e.options())
			wantScript(t, err, "path")
			wantSays(t, err, "cannot create", e.name)
			e.untouched(t)
		}},
		{name: "path/unwritable-dir", user: true, test: func(t *testing.T, e *env) {
			if err := os.Mkdir(e.dir, 0o755); err != nil { // root's, empty
				t.Fatal(err)
			}
			_, err := e.run(e.options())
			wantScript(t, err, "path")
			wantSays(t, err, "not writable")
			if m, _ := filepath.Glob(filepath.Join(e.dir, "*")); len(m) > 0 {
				t.Errorf("the refused deploy wrote %v", m)
			}
		}},
		{name: "path/symlink-to-dir", test: func(t *testing.T, e *env) {
			real := filepath.Join(e.scratch, "real")
			if err := os.Mkdir(real, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(real, e.dir); err != nil {
				t.Fatal(err)
			}
			twoDeploys(t, e)
			if fi, err := os.Lstat(e.dir); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("the symlink was replaced: %v %v", fi, err)
			}
			if _, err := os.Stat(filepath.Join(real, ".git", "gitric")); err != nil {
				t.Errorf("the repository is not in the symlink's target: %v", err)
			}
		}},
		{name: "path/dangling-symlink", test: func(t *testing.T, e *env) {
			if err := os.Symlink(filepath.Join(e.scratch, "gone"), e.dir); err != nil {
				t.Fatal(err)
			}
			_, err := e.run(e.options())
			wantScript(t, err, "path")
			if _, err := os.Lstat(filepath.Join(e.scratch, "gone")); err == nil {
				t.Errorf("the refused deploy created the symlink's target")
			}
		}},
		{name: "path/empty-dir", test: func(t *testing.T, e *env) {
			if err := os.Mkdir(e.dir, 0o755); err != nil {
				t.Fatal(err)
			}
			twoDeploys(t, e)
		}},
		{name: "path/non-empty-dir", test: func(t *testing.T, e *env) {
			writeFile(t, mkdir(t, e.dir), "notes.txt", "mine\n")
			_, err := e.run(e.options())
			wantScript(t, err, "notempty")
			e.expect(t, host{files: map[string]string{"notes.txt": "mine\n"}, noAudit: true})
			if _, err := os.Stat(e.gitDir()); err == nil {
				t.Errorf("the refused deploy made %s", e.gitDir())
			}
		}},
		{name: "path/only-a-dotfile", test: func(t *testing.T, e *env) {
			writeFile(t, mkdir(t, e.dir), ".env", "SECRET=1\n")
			_, err := e.run(e.options())
			wantScript(t, err, "notempty")
			e.expect(t, host{files: map[string]string{".env": "SECRET=1\n"}, noAudit: true})
		}},
		{name: "path/foreign-repository", test: func(t *testing.T, e *env) {
			mkdir(t, e.dir)
			e.hostGit(t, "init", "-q")
			foreign := e.foreignCommit(t)
			_, err := e.run(e.options())
			wantScript(t, err, "foreign")
			wantSays(t, err, "did not create")
			e.expect(t, host{head: foreign, noAudit: true})
			if _, err := os.Stat(filepath.Join(e.gitDir(), "gitric")); err == nil {
				t.Errorf("the refused deploy marked the foreign repository as gitric's")
			}
		}},
		{name: "path/foreign-clone-taken-over", test: func(t *testing.T, e *env) {
			if _, err := repotest.Git(filepath.Dir(e.dir), "clone", "-q", e.src.Dir, e.dir); err != nil {
				t.Fatal(err)
			}
			e.own(t, e.dir)
			v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			_, err := e.run(e.options())
			wantScript(t, err, "foreign")
			opts := e.options()
			opts.TakeOver = true
			if _, err := e.run(opts); err != nil {
				t.Fatalf("deploy with TakeOver: %v", err)
			}
			e.expect(t, host{head: v2, files: map[string]string{"index.html": "v2\n"}, audit: deploy.OutcomeOK})
		}},

		{name: "path/home-itself", user: true, test: func(t *testing.T, e *env) {
			e.setPath("~")
			_, err := e.run(e.options())
			wantScript(t, err, "notempty")
			if _, err := os.Stat(filepath.Join(e.home, ".git")); err == nil {
				t.Errorf("the refused deploy made a repository of the home directory")
			}
			if _, err := os.Stat(filepath.Join(e.home, ".ssh", "authorized_keys")); err != nil {
				t.Errorf("the home directory lost its files: %v", err)
			}
		}},
		{name: "path/dots-and-trailing-slash", user: true, test: func(t *testing.T, e *env) {
			e.setPath("./deploy/../app/")
			twoDeploys(t, e)
			if _, err := os.Stat(filepath.Join(e.home, "app", ".git", "gitric")); err != nil {
				t.Errorf("the deploy is not in ~/app: %v", err)
			}
		}},
		{name: "path/non-empty-dir-with-takeover", test: func(t *testing.T, e *env) {
			// TakeOver is for repositories: a directory of other files
			// is still refused.
			writeFile(t, mkdir(t, e.dir), "notes.txt", "mine\n")
			opts := e.options()
			opts.TakeOver = true
			_, err := e.run(opts)
			wantScript(t, err, "notempty")
			e.expect(t, host{files: map[string]string{"notes.txt": "mine\n"}, noAudit: true})
		}},
		{name: "sudo/to-a-nologin-account", test: func(t *testing.T, e *env) {
			// The login user is root; files belong to the service user,
			// whose shell is nologin (sudo runs /bin/sh, not that shell).
			u := e.lab.srv.AddUser(t, "/usr/sbin/nologin", nil)
			opts := e.options()
			opts.Stage.Sudo = u.Name
			opts.Stage.Path = "app"
			e.login = &login{lab: e.lab, user: u, name: u.Name, home: u.Home, config: e.config}
			e.setPath("app")
			if _, err := e.run(opts); err != nil {
				t.Fatalf("deploy with Sudo: %v", err)
			}
			e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "v1\n"}, audit: deploy.OutcomeOK})
			var st syscall.Stat_t
			if err := syscall.Stat(filepath.Join(e.dir, "index.html"), &st); err != nil || int(st.Uid) != u.UID {
				t.Errorf("index.html belongs to uid %d, want the sudo user's %d (%v)", st.Uid, u.UID, err)
			}
		}},

		// ---- host lists ----
		{name: "hosts/same-host-twice", test: func(t *testing.T, e *env) {
			opts := e.options()
			opts.Stage.Hosts = []string{"target", "target"}
			_, err := e.run(opts)
			wantIs(t, err, deploy.ErrDuplicateHost)
			e.untouched(t)
		}},
		{name: "hosts/two-users-of-one-host", test: func(t *testing.T, e *env) {
			opts := e.options()
			opts.Stage.Hosts = []string{"target", fmt.Sprintf("nobody@127.0.0.1:%d", e.lab.srv.Port)}
			_, err := e.run(opts)
			wantIs(t, err, deploy.ErrDuplicateHost)
			e.untouched(t)
		}},
		{name: "hosts/alias-and-address", test: func(t *testing.T, e *env) {
			opts := e.options()
			opts.Stage.Hosts = []string{fmt.Sprintf("127.0.0.1:%d", e.lab.srv.Port), "target"}
			_, err := e.run(opts)
			wantIs(t, err, deploy.ErrDuplicateHost)
			e.untouched(t)
		}},

		// ---- revisions ----
		{name: "ref/annotated-tag", test: func(t *testing.T, e *env) {
			e.src.Git(t, "tag", "-a", "-m", "release 1.0", "v1.0")
			e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			opts := e.options()
			opts.Rev = "v1.0"
			if _, err := e.run(opts); err != nil {
				t.Fatal(err)
			}
			e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "v1\n"}, audit: deploy.OutcomeOK})
		}},
		{name: "ref/short-hash", test: func(t *testing.T, e *env) {
			e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			opts := e.options()
			opts.Rev = e.v1[:7]
			if _, err := e.run(opts); err != nil {
				t.Fatal(err)
			}
			e.expect(t, host{head: e.v1, audit: deploy.OutcomeOK})
		}},
		{name: "ref/ambiguous-tag-and-branch", test: func(t *testing.T, e *env) {
			// git rev-parse prefers the tag; so must the deploy.
			e.src.Git(t, "tag", "release")
			e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			e.src.Git(t, "branch", "release")
			want := e.src.Git(t, "rev-parse", "release")
			opts := e.options()
			opts.Rev = "release"
			if _, err := e.run(opts); err != nil {
				t.Fatal(err)
			}
			e.expect(t, host{head: want, audit: deploy.OutcomeOK})
		}},
		{name: "ref/nonexistent", test: func(t *testing.T, e *env) {
			opts := e.options()
			opts.Rev = "no-such-branch"
			_, err := e.run(opts)
			wantIs(t, err, localrepo.ErrUnknownRevision)
			e.untouched(t)
		}},
		{name: "ref/dash-named-tag", test: func(t *testing.T, e *env) {
			e.src.Git(t, "update-ref", "refs/tags/-rf", "HEAD")
			e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			opts := e.options()
			opts.Rev = "-rf"
			if _, err := e.run(opts); err != nil {
				t.Fatal(err)
			}
			e.expect(t, host{head: e.v1, audit: deploy.OutcomeOK})
		}},
		{name: "ref/option-like", test: func(t *testing.T, e *env) {
			opts := e.options()
			opts.Rev = "--output=" + filepath.Join(e.scratch, "pwned")
			_, err := e.run(opts)
			wantIs(t, err, localrepo.ErrUnknownRevision)
			e.untouched(t)
			noInjection(t, e.scratch)
		}},
		{name: "ref/expression", test: func(t *testing.T, e *env) {
			e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			opts := e.options()
			opts.Rev = "HEAD~1"
			if _, err := e.run(opts); err != nil {
				t.Fatal(err)
			}
			e.expect(t, host{head: e.v1, audit: deploy.OutcomeOK})
		}},

		// ---- the local repository ----
		{name: "local/dirty", test: func(t *testing.T, e *env) {
			e.deploy(t)
			e.src.Write(t, map[string]string{"index.html": "uncommitted\n"})
			_, err := e.run(e.options())
			wantIs(t, err, deploy.ErrDirty)
			wantSays(t, err, "index.html")
			e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "v1\n"}, audit: deploy.OutcomeOK})
		}},
		{name: "local/untracked", test: func(t *testing.T, e *env) {
			e.src.Write(t, map[string]string{"notes.txt": "draft\n"})
			_, err := e.run(e.options())
			wantIs(t, err, deploy.ErrDirty)
			wantSays(t, err, "notes.txt")
			e.untouched(t)
			opts := e.options()
			opts.IgnoreUntracked = true
			if _, err := e.run(opts); err != nil {
				t.Fatalf("deploy with IgnoreUntracked: %v", err)
			}
			e.expect(t, host{head: e.v1, files: map[string]string{"notes.txt": "<none>"}, audit: deploy.OutcomeOK})
		}},
		{name: "local/detached-head", test: func(t *testing.T, e *env) {
			e.src.Git(t, "checkout", "-q", "--detach")
			v2 := e.src.Commit(t, "v2 detached", map[string]string{"index.html": "v2\n"})
			e.deploy(t)
			e.expect(t, host{head: v2, files: map[string]string{"index.html": "v2\n"}, audit: deploy.OutcomeOK})
		}},
		{name: "local/crlf-text-auto", test: func(t *testing.T, e *env) {
			// Committed normalised (LF), checked out CRLF: git status is
			// clean, so the dirty check must be too.
			e.src.Commit(t, "attributes", map[string]string{".gitattributes": "* text=auto eol=crlf\n", "a.txt": "one\ntwo\n"})
			e.src.Git(t, "rm", "-q", "--cached", "-r", ".")
			e.src.Git(t, "reset", "-q", "--hard")
			if b, _ := os.ReadFile(filepath.Join(e.src.Dir, "a.txt")); string(b) != "one\r\ntwo\r\n" {
				t.Fatalf("the local checkout is %q, not CRLF", b)
			}
			if st := e.src.Git(t, "status", "--porcelain"); st != "" {
				t.Fatalf("git status: %q", st)
			}
			e.deploy(t)
			e.expect(t, host{head: e.src.Head(t), files: map[string]string{"a.txt": "one\r\ntwo\r\n"}, audit: deploy.OutcomeOK})
		}},
		{name: "local/clean-smudge-filter", test: func(t *testing.T, e *env) {
			// A clean filter known only locally: the commit holds the
			// cleaned text, the working copy the raw one, git status is
			// clean, and so must the dirty check be.
			e.src.Git(t, "config", "filter.redact.clean", "sed s/hunter2/REDACTED/")
			e.src.Git(t, "config", "filter.redact.smudge", "cat")
			e.src.Commit(t, "filter", map[string]string{".gitattributes": "*.conf filter=redact\n", "db.conf": "password=hunter2\n"})
			if st := e.src.Git(t, "status", "--porcelain"); st != "" {
				t.Fatalf("git status: %q", st)
			}
			e.deploy(t)
			e.expect(t, host{head: e.src.Head(t), files: map[string]string{"db.conf": "password=REDACTED\n"}, audit: deploy.OutcomeOK})
		}},

		// ---- the host repository ----
		{name: "host/edited-tracked-file", test: func(t *testing.T, e *env) {
			e.deploy(t)
			e.hostWrite(t, map[string]string{"index.html": "hotfix\n"})
			v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			_, err := e.run(e.options())
			wantIs(t, err, deploy.ErrServerEdits)
			wantSays(t, err, "index.html")
			e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "hotfix\n"}, audit: deploy.OutcomeRefused, reason: "edited"})
			opts := e.options()
			opts.DiscardEdits = true
			if _, err := e.run(opts); err != nil {
				t.Fatalf("deploy with DiscardEdits: %v", err)
			}
			e.expect(t, host{head: v2, files: map[string]string{"index.html": "v2\n"}, audit: deploy.OutcomeOK})
		}},
		{name: "host/untracked-file-the-commit-adds", test: func(t *testing.T, e *env) {
			e.deploy(t)
			e.hostWrite(t, map[string]string{"config/local.yml": "db: prod\n"})
			e.src.Commit(t, "v2", map[string]string{"config/local.yml": "db: dev\n"})
			_, err := e.run(e.options())
			wantIs(t, err, deploy.ErrUntracked)
			var ue *deploy.UntrackedError
			if !errors.As(err, &ue) || strings.Join(ue.Paths, ",") != "config/local.yml" {
				t.Errorf("untracked paths %+v", ue)
			}
			e.expect(t, host{head: e.v1, files: map[string]string{"config/local.yml": "db: prod\n"}, audit: deploy.OutcomeRefused, reason: "untracked"})
		}},
		{name: "host/untracked-dir-replaced-by-a-file", test: func(t *testing.T, e *env) {
			e.deploy(t)
			e.hostWrite(t, map[string]string{"uploads/cat.jpg": "meow"})
			e.src.Commit(t, "v2", map[string]string{"uploads": "now a file\n"})
			_, err := e.run(e.options())
			wantIs(t, err, deploy.ErrUntracked)
			wantSays(t, err, "uploads/cat.jpg")
			e.expect(t, host{head: e.v1, files: map[string]string{"uploads/cat.jpg": "meow"}, audit: deploy.OutcomeRefused})
		}},
		{name: "host/untracked-file-where-the-commit-adds-a-dir", test: func(t *testing.T, e *env) {
			e.deploy(t)
			e.hostWrite(t, map[string]string{"assets": "a file of the host\n"})
			e.src.Commit(t, "v2", map[string]string{"assets/app.css": "body{}\n"})
			_, err := e.run(e.options())
			wantIs(t, err, deploy.ErrUntracked)
			wantSays(t, err, "assets")
			e.expect(t, host{head: e.v1, files: map[string]string{"assets": "a file of the host\n"}, audit: deploy.OutcomeRefused})
		}},
		{name: "host/untracked-unicode-name", test: func(t *testing.T, e *env) {
			e.deploy(t)
			e.hostWrite(t, map[string]string{"café menü.yml": "host\n"})
			e.src.Commit(t, "v2", map[string]string{"café menü.yml": "repo\n"})
			_, err := e.run(e.options())
			wantIs(t, err, deploy.ErrUntracked)
			e.expect(t, host{head: e.v1, files: map[string]string{"café menü.yml": "host\n"}, audit: deploy.OutcomeRefused})
		}},
		{name: "host/ignored-file-overwritten", test: func(t *testing.T, e *env) {
			e.src.Commit(t, "ignore logs", map[string]string{".gitignore": "*.log\n"})
			e.deploy(t)
			e.hostWrite(t, map[string]string{"app.log": "host log\n"})
			e.src.Write(t, map[string]string{"app.log": "committed\n"})
			e.src.Git(t, "add", "-f", "app.log")
			e.src.Git(t, "commit", "-qm", "v2")
			e.deploy(t)
			e.expect(t, host{head: e.src.Head(t), files: map[string]string{"app.log": "committed\n"}, audit: deploy.OutcomeOK})
		}},
		{name: "host/on-a-commit-not-in-local-history", test: func(t *testing.T, e *env) {
			e.deploy(t)
			foreign := e.foreignCommit(t)
			e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			_, err := e.run(e.options())
			wantIs(t, err, deploy.ErrNonFastForward)
			e.expect(t, host{head: foreign, files: map[string]string{"index.html": "v1\n"}, audit: deploy.OutcomeRefused, reason: "non-fast-forward"})
		}},
		{name: "host/amended-commit", test: func(t *testing.T, e *env) {
			e.deploy(t)
			e.src.Write(t, map[string]string{"index.html": "v1 amended\n"})
			e.src.Git(t, "commit", "-q", "-a", "--amend", "-m", "v1 amended")
			_, err := e.run(e.options())
			wantIs(t, err, deploy.ErrNonFastForward)
			e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "v1\n"}, audit: deploy.OutcomeRefused})
			opts := e.options()
			opts.ForcePush = true
			if _, err := e.run(opts); err != nil {
				t.Fatalf("deploy with ForcePush: %v", err)
			}
			e.expect(t, host{head: e.src.Head(t), files: map[string]string{"index.html": "v1 amended\n"}, audit: deploy.OutcomeOK})
		}},

		{name: "host/dot-git-is-a-file", test: func(t *testing.T, e *env) {
			// A linked worktree of some other repository.
			writeFile(t, mkdir(t, e.dir), ".git", "gitdir: /somewhere/else/.git/worktrees/app\n")
			_, err := e.run(e.options())
			wantScript(t, err, "path")
			if b, _ := os.ReadFile(filepath.Join(e.dir, ".git")); !strings.HasPrefix(string(b), "gitdir: /somewhere") {
				t.Errorf("the .git file is now %q", b)
			}
		}},
		{name: "host/moved-by-hand-then-rollback", test: func(t *testing.T, e *env) {
			e.deploy(t)
			v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			e.deploy(t)
			v3 := e.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
			e.src.Git(t, "push", "-q", e.gitDir(), v3+":refs/heads/by-hand")
			e.hostGit(t, "reset", "-q", "--hard", v3) // outside gitric
			_, err := deployRollback(e, e.options())
			wantIs(t, err, deploy.ErrAuditMismatch)
			e.expect(t, host{head: v3, files: map[string]string{"index.html": "v3\n"}, audit: deploy.OutcomeOK})
			if l := e.audit(t); l[len(l)-1].To != v2 {
				t.Errorf("the refused rollback wrote to the audit log: %+v", l[len(l)-1])
			}
		}},

		// ---- odd file names in the commit ----
		{name: "files/newline", test: oddNames("line\nbreak.txt", "trailing newline\n")},
		{name: "files/tab-and-quotes", test: oddNames("tab\there \"q\" 'q'.txt")},
		{name: "files/leading-dash", test: oddNames("-rf", "--help", "-")},
		{name: "files/unicode", test: oddNames("日本語/ファイル.txt", "emoji 🚀.md", "e\u0301.txt")},
		{name: "files/very-long", test: oddNames(strings.Repeat("n", 255), strings.Repeat("d/", 60)+strings.Repeat("x", 200))},
		{name: "files/shell-metacharacters", test: oddNames("$(touch pwned5)", "`touch pwned6`", "a;b&c|d>e<f")},

		// ---- locks ----
		{name: "lock/dead-holder-taken-over", test: func(t *testing.T, e *env) {
			e.deploy(t)
			dead := exec.Command("true")
			if err := dead.Run(); err != nil {
				t.Fatal(err)
			}
			e.fakeLock(t, fmt.Sprintf("pid=%d boot=%s ghost@gone since 2020-01-01T00:00:00Z (deploy 1234567)", dead.Process.Pid, bootID(t)))
			v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			e.deploy(t)
			e.expect(t, host{head: v2, audit: deploy.OutcomeOK})
			if !tookOver(e.audit(t), "ghost@gone") {
				t.Errorf("no took-over line in the audit log: %+v", e.audit(t))
			}
		}},
		{name: "lock/other-boot-taken-over", test: func(t *testing.T, e *env) {
			e.deploy(t)
			e.fakeLock(t, "pid=1 boot=00000000-dead-beef-0000-000000000000 ghost@before-reboot since 2020-01-01T00:00:00Z (deploy 1234567)")
			v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			e.deploy(t)
			e.expect(t, host{head: v2, audit: deploy.OutcomeOK})
			if !tookOver(e.audit(t), "ghost@before-reboot") {
				t.Errorf("no took-over line in the audit log: %+v", e.audit(t))
			}
		}},
		{name: "lock/live-holder-refuses", test: func(t *testing.T, e *env) {
			e.deploy(t)
			holder := startSleeper(t, time.Minute)
			owner := fmt.Sprintf("pid=%d boot=%s alice@laptop since 2030-01-01T00:00:00Z (deploy abcdef0)", holder.Process.Pid, bootID(t))
			e.fakeLock(t, owner)
			e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			_, err := e.run(e.options())
			wantIs(t, err, deploy.ErrLocked)
			wantSays(t, err, "locked by alice@laptop since 2030-01-01T00:00:00Z (deploy abcdef0)")
			e.expect(t, host{head: e.v1, audit: deploy.OutcomeRefused, reason: "locked by alice@laptop", locked: true})
			if got := e.lock(); got != owner {
				t.Errorf("the refused deploy changed the lock to %q", got)
			}
		}},
		{name: "lock/live-holder-waited-for", test: func(t *testing.T, e *env) {
			e.deploy(t)
			holder := startSleeper(t, time.Minute)
			e.fakeLock(t, fmt.Sprintf("pid=%d boot=%s bob@ci since 2030-01-01T00:00:00Z (deploy abcdef0)", holder.Process.Pid, bootID(t)))
			time.AfterFunc(1500*time.Millisecond, func() { os.Remove(e.lockFile()) }) // bob's deploy ends
			v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			opts := e.options()
			opts.LockWait = 20 * time.Second
			begin := time.Now()
			if _, err := e.run(opts); err != nil {
				t.Fatalf("deploy with LockWait: %v", err)
			}
			if took := time.Since(begin); took < time.Second || took > 30*time.Second {
				t.Errorf("the deploy took %v; it should have waited for the lock, about 1.5s", took)
			}
			e.expect(t, host{head: v2, audit: deploy.OutcomeOK})
			if !strings.Contains(e.out.String(), "locked by bob@ci") {
				t.Errorf("the output does not say whom it waited for:\n%s", e.out)
			}
		}},
		{name: "lock/old-directory-lock", test: func(t *testing.T, e *env) {
			e.deploy(t)
			writeFile(t, mkdir(t, e.lockFile()), "owner", "carol@old-gitric since 2019-01-01T00:00:00Z (deploy 0000000)\n")
			e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			_, err := e.run(e.options())
			wantIs(t, err, deploy.ErrLocked)
			wantSays(t, err, "carol@old-gitric")
			e.expect(t, host{head: e.v1, audit: deploy.OutcomeRefused, locked: true})
		}},
		{name: "lock/gitric-dir-unwritable", user: true, test: func(t *testing.T, e *env) {
			e.deploy(t)
			g := filepath.Join(e.gitDir(), "gitric")
			if err := os.Chown(g, 0, 0); err != nil { // root's now
				t.Fatal(err)
			}
			e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			_, err := e.run(e.options())
			if errors.Is(err, deploy.ErrLocked) || err == nil {
				t.Fatalf("deploy with an unwritable gitric dir = %v; want a clear refusal, not a lock", err)
			}
			wantScript(t, err, "path")
			wantSays(t, err, g)
			e.expect(t, host{head: e.v1, audit: deploy.OutcomeOK})
		}},

		// ---- concurrency ----
		{name: "concurrent/two-deploys", test: func(t *testing.T, e *env) {
			opts := e.options()
			opts.Stage.Stop = e.gate()
			e.deploy(t)
			v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			errs := parallelDeploys(e, opts, 2)
			oneWins(t, errs)
			e.expect(t, host{head: v2, files: map[string]string{"index.html": "v2\n"}})
			if !hasResult(e.audit(t), deploy.OutcomeRefused, "locked by") {
				t.Errorf("the loser's refusal is not in the audit log: %+v", e.audit(t))
			}
		}},
		{name: "concurrent/two-first-deploys", test: func(t *testing.T, e *env) {
			opts := e.options()
			opts.Stage.Start = e.gate()
			errs := parallelDeploys(e, opts, 2)
			oneWins(t, errs)
			e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "v1\n"}})
		}},

		// ---- killed processes ----
		{name: "killed/script-during-seed", test: func(t *testing.T, e *env) {
			e.deploy(t)
			e.src.Commit(t, "big", map[string]string{"big.txt": randomText(t, 4<<20)})
			errc := make(chan error, 1)
			go func() { _, err := e.run(e.options()); errc <- err }()
			pid := e.scriptPID(t)
			waitChild(t, pid, "receive-pack")
			_ = syscall.Kill(pid, syscall.SIGKILL)
			err := <-errc
			t.Logf("killed in the seed: %v", err)
			if he := (*deploy.HostError)(nil); !errors.As(err, &he) || he.Step != "seed" {
				t.Fatalf("deploy whose host script was killed = %v, want a failure in the seed", err)
			}
			e.expect(t, host{head: e.v1, files: map[string]string{"big.txt": "<none>"}, audit: deploy.OutcomeOK, locked: true})
			v3 := e.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
			e.deploy(t)
			e.expect(t, host{head: v3, files: map[string]string{"index.html": "v3\n"}, audit: deploy.OutcomeOK})
			if !tookOver(e.audit(t), "tester@e2e") {
				t.Errorf("no took-over line in the audit log: %+v", e.audit(t))
			}
		}},
		{name: "killed/script-during-cutover", test: func(t *testing.T, e *env) {
			e.deploy(t)
			stopping := filepath.Join(e.scratch, "stopping")
			opts := e.options()
			opts.Stage.Stop = "touch '" + stopping + "'; sleep 2"
			e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			errc := make(chan error, 1)
			go func() { _, err := e.run(opts); errc <- err }()
			pid := e.scriptPID(t)
			waitFile(t, stopping)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			err := <-errc
			t.Logf("killed in the cutover: %v", err)
			if he := (*deploy.HostError)(nil); !errors.As(err, &he) || he.Step != "cutover" {
				t.Fatalf("deploy whose host script was killed = %v, want a failure in the cutover", err)
			}
			e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "v1\n"}, audit: deploy.OutcomeOK, locked: true})
			v3 := e.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
			e.deploy(t)
			e.expect(t, host{head: v3, files: map[string]string{"index.html": "v3\n"}, audit: deploy.OutcomeOK})
			if !tookOver(e.audit(t), "tester@e2e") {
				t.Errorf("no took-over line in the audit log: %+v", e.audit(t))
			}
		}},

		// ---- modes ----
		{name: "release/path-with-quotes-and-spaces", mode: deploy.ModeRelease, test: pathCase(`rel 'ease' "dir"`)},
		{name: "bluegreen/unicode-path", mode: deploy.ModeBlueGreen, test: pathCase("blü grün 🟦🟩")},
		{name: "release/untracked-files-do-not-matter", mode: deploy.ModeRelease, test: func(t *testing.T, e *env) {
			e.deploy(t)
			e.hostWrite(t, map[string]string{"config/local.yml": "db: prod\n"})
			v2 := e.src.Commit(t, "v2", map[string]string{"config/local.yml": "db: dev\n"})
			e.deploy(t)
			e.expect(t, host{head: v2, files: map[string]string{"config/local.yml": "db: dev\n"}, audit: deploy.OutcomeOK})
		}},
	}
	return cases
}

// oddNames deploys a commit with files of these names, then one without
// them: each must arrive with its content, then go.
func oddNames(names ...string) func(t *testing.T, e *env) {
	return func(t *testing.T, e *env) {
		files := map[string]string{}
		gone := map[string]string{}
		for i, n := range names {
			files[n] = fmt.Sprintf("file %d\n", i)
			gone[n] = "<none>"
		}
		v2 := e.src.Commit(t, "odd names", files)
		e.deploy(t)
		e.expect(t, host{head: v2, files: files, audit: deploy.OutcomeOK})
		for _, n := range names {
			e.src.Git(t, "rm", "-q", "--", n)
		}
		e.src.Git(t, "commit", "-qm", "without them")
		e.deploy(t)
		e.expect(t, host{head: e.src.Head(t), files: gone, audit: deploy.OutcomeOK})
		noInjection(t, e.dir, e.home)
	}
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func randomText(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n/2)
	f, err := os.Open("/dev/urandom")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}

func tookOver(log []deploy.AuditEntry, holder string) bool {
	return hasResult(log, deploy.OutcomeTookOver, holder)
}

func hasResult(log []deploy.AuditEntry, result deploy.Outcome, reason string) bool {
	for _, a := range log {
		if a.Result == result && strings.Contains(a.Reason, reason) {
			return true
		}
	}
	return false
}

// gate is a shell command that waits (up to 20s) for the gate file of
// the env: a service command that holds its deploy, and so its lock,
// until parallelDeploys opens the gate.
func (e *env) gate() string {
	return fmt.Sprintf("i=0; while [ ! -e '%s/gate' ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done", e.scratch)
}

// parallelDeploys runs n deploys of opts at once; opts' stop or start
// command should wait for e.gate(), which opens once n-1 of them have
// returned: the one holding the lock cannot end before the others tried.
func parallelDeploys(e *env, opts deploy.DeployOptions, n int) []error {
	errs := make([]error, n)
	returned := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := opts
			o.Who = fmt.Sprintf("deployer%d@ci", i)
			_, errs[i] = e.run(o)
			returned <- struct{}{}
		}()
	}
	for range n - 1 {
		<-returned
	}
	_ = os.WriteFile(filepath.Join(e.scratch, "gate"), nil, 0o644)
	wg.Wait()
	return errs
}

// oneWins checks that of deploys run at once, one went through and every
// other was refused by the lock.
func oneWins(t *testing.T, errs []error) {
	t.Helper()
	var ok, locked int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, deploy.ErrLocked):
			locked++
			wantSays(t, err, "locked by deployer")
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || locked != len(errs)-1 {
		t.Fatalf("%d deploys went through and %d were refused by the lock: %v", ok, locked, errs)
	}
}
