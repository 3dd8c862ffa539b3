package e2e_test

// One dedicated test per item of the issue "Safe on every host".

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// helperEnv, when set, makes the test binary a deploy client instead of
// running tests: TestMain runs the deploy its value describes, so that a
// test can kill -9 a client in the middle of a deploy.
const helperEnv = "GITRIC_E2E_DEPLOY"

// helperSpec is a deploy for the helper process.
type helperSpec struct {
	Path, Dir, Config, Start string
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(helperDeploy(spec))
	}
	os.Exit(m.Run())
}

func helperDeploy(spec string) int {
	var h helperSpec
	if err := json.Unmarshal([]byte(spec), &h); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), deployBound)
	defer cancel()
	_, err := deploy.Run(ctx, deploy.DeployOptions{
		Options: deploy.Options{
			Stage: deploy.Stage{Name: "helper", Hosts: []string{"target"}, Path: h.Path, Start: h.Start},
			Dir:   h.Dir,
			SSH:   deploy.SSH{ConfigFile: h.Config},
			Out:   os.Stdout,
			Who:   "helper@e2e",
		},
	})
	if err != nil {
		fmt.Println(err)
		return 1
	}
	return 0
}

// Item 1: untracked host files that the new commit would overwrite or
// delete are protected; ignored ones are not; release mode has fresh
// directories and is not affected.
func TestUntrackedHostFiles(t *testing.T) {
	t.Parallel()
	l := newLab(t, sshdtest.Options{FastShell: true})
	for _, mode := range []deploy.Mode{deploy.ModeInPlace, deploy.ModeRelease} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, l.login(t, nil), mode)
			e.src.Commit(t, "ignore the cache", map[string]string{".gitignore": "cache/\n", "legacy.txt": "old\n"})
			v1 := e.src.Head(t)
			e.deploy(t)
			e.hostWrite(t, map[string]string{
				"config/local.yml": "db: prod\n",                // the commit adds it
				"uploads/a.jpg":    "A", "uploads/b/c.jpg": "C", // the commit adds a file "uploads"
				"cache/page.html": "cached\n",                          // ignored: expendable
				"notes.txt":       "the host's own, in no one's way\n", // untouched by the commit
			})
			e.src.Git(t, "rm", "-q", "legacy.txt")
			v2 := e.src.Commit(t, "v2", map[string]string{"config/local.yml": "db: dev\n", "uploads": "a file now\n", "cache": "a file too\n"})
			_, err := e.run(e.options())
			if mode == deploy.ModeRelease {
				if err != nil {
					t.Fatalf("release mode deploy: %v", err)
				}
				e.expect(t, host{head: v2, files: map[string]string{"config/local.yml": "db: dev\n", "uploads": "a file now\n"}, audit: deploy.OutcomeOK})
				return
			}
			var ue *deploy.UntrackedError
			if !errors.As(err, &ue) || !errors.Is(err, deploy.ErrUntracked) {
				t.Fatalf("deploy over untracked host files = %v, want an UntrackedError", err)
			}
			if want := []string{"config/local.yml", "uploads/a.jpg", "uploads/b/c.jpg"}; !slices.Equal(ue.Paths, want) {
				t.Errorf("untracked paths %q, want %q", ue.Paths, want)
			}
			wantSays(t, err, "set DiscardEdits")
			e.expect(t, host{head: v1, files: map[string]string{"config/local.yml": "db: prod\n", "uploads/b/c.jpg": "C", "cache/page.html": "cached\n", "legacy.txt": "old\n"},
				audit: deploy.OutcomeRefused, reason: "untracked"})

			opts := e.options()
			opts.DiscardEdits = true
			if _, err := e.run(opts); err != nil {
				t.Fatalf("deploy with DiscardEdits: %v", err)
			}
			e.expect(t, host{head: v2, files: map[string]string{"config/local.yml": "db: dev\n", "uploads": "a file now\n", "cache": "a file too\n",
				"notes.txt": "the host's own, in no one's way\n", "legacy.txt": "<none>"}, audit: deploy.OutcomeOK})

			// A rollback is protected too: v1 brings legacy.txt back.
			e.hostWrite(t, map[string]string{"legacy.txt": "the host's new one\n"})
			_, err = deployRollback(e, e.options())
			wantIs(t, err, deploy.ErrUntracked)
			wantSays(t, err, "legacy.txt")
			e.expect(t, host{head: v2, files: map[string]string{"legacy.txt": "the host's new one\n"}})
		})
	}
}

func deployRollback(e *env, opts deploy.DeployOptions) (*deploy.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), deployBound)
	defer cancel()
	return deploy.Rollback(ctx, rollbackOptions(opts))
}

// Item 2: service commands run on descriptors of their own and within
// their timeouts.
func TestServiceCommands(t *testing.T) {
	t.Parallel()
	l := newLab(t, sshdtest.Options{FastShell: true})
	serving := func(e *env) string {
		b, err := os.ReadFile(filepath.Join(e.scratch, "serving"))
		if err != nil {
			return "<stopped>"
		}
		return string(b)
	}
	// The service: a file that holds what it serves while it runs.
	service := func(e *env) deploy.DeployOptions {
		o := e.options()
		o.Stage.Stop = fmt.Sprintf("rm -f '%s/serving'", e.scratch)
		o.Stage.Start = fmt.Sprintf("cat index.html > '%s/serving'", e.scratch)
		return o
	}
	tests := []struct {
		name string
		// tweak sets the commands for v2; the test deploys v1 with the
		// plain service first.
		tweak func(e *env, o *deploy.DeployOptions)
		check func(t *testing.T, e *env, v2 string, err error)
	}{
		{"start-that-daemonizes", func(e *env, o *deploy.DeployOptions) {
			// A daemon that keeps the start command's stdout and stderr,
			// and a double fork.
			o.Stage.Start += fmt.Sprintf("; nohup sleep 1000 & echo $! > '%[1]s/daemon1'; (sleep 1000 & echo $! > '%[1]s/daemon2') &", e.scratch)
		}, func(t *testing.T, e *env, v2 string, err error) {
			if err != nil {
				t.Fatalf("deploy with a daemonizing start: %v", err)
			}
			e.expect(t, host{head: v2, audit: deploy.OutcomeOK})
			for _, f := range []string{"daemon1", "daemon2"} {
				pid := readPID(t, filepath.Join(e.scratch, f))
				if syscall.Kill(pid, 0) != nil {
					t.Errorf("the daemon %d did not survive the deploy", pid)
				}
			}
		}},
		{"stop-hangs", func(e *env, o *deploy.DeployOptions) {
			o.StopTimeout = time.Second
			o.Stage.Stop = fmt.Sprintf("%s; sleep 100 & echo $! > '%s/child'; sleep 100", o.Stage.Stop, e.scratch)
		}, func(t *testing.T, e *env, v2 string, err error) {
			wantIs(t, err, deploy.ErrCommandTimeout)
			wantSays(t, err, "stop command did not finish within 1s", "started again")
			e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "v1\n"}, audit: deploy.OutcomeFailed, reason: "stop command timed out after 1s"})
			if got := serving(e); got != "v1\n" {
				t.Errorf("after the stop timed out the host serves %q, want the old version started again", got)
			}
			waitDead(t, readPID(t, filepath.Join(e.scratch, "child")))
		}},
		{"start-hangs", func(e *env, o *deploy.DeployOptions) {
			o.StartTimeout = time.Second
			o.Stage.Start = fmt.Sprintf("if grep -q v2 index.html; then sleep 100 & echo $! > '%s/child'; sleep 100; fi; %s", e.scratch, o.Stage.Start)
		}, func(t *testing.T, e *env, v2 string, err error) {
			wantIs(t, err, deploy.ErrCommandTimeout)
			wantSays(t, err, "start command did not finish within 1s")
			e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "v1\n"}, audit: deploy.OutcomeRolledBack})
			if log := e.audit(t); !hasResult(log, deploy.OutcomeFailed, "start command timed out after 1s") {
				t.Errorf("the audit log does not record the timed out start: %+v", log)
			}
			if got := serving(e); got != "v1\n" {
				t.Errorf("after the rollback the host serves %q", got)
			}
			waitDead(t, readPID(t, filepath.Join(e.scratch, "child")))
		}},
		{"check-hangs", func(e *env, o *deploy.DeployOptions) {
			o.CheckTimeout = 2 * time.Second
			o.Stage.Check = fmt.Sprintf("grep -q v1 index.html || { sleep 100 & echo $! > '%s/child'; sleep 100; }", e.scratch)
		}, func(t *testing.T, e *env, v2 string, err error) {
			wantIs(t, err, deploy.ErrCommandTimeout)
			wantSays(t, err, "health check did not pass within 2s")
			e.expect(t, host{head: e.v1, audit: deploy.OutcomeRolledBack})
			if got := serving(e); got != "v1\n" {
				t.Errorf("after the rollback the host serves %q", got)
			}
			waitDead(t, readPID(t, filepath.Join(e.scratch, "child")))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, l.login(t, nil), "")
			if _, err := e.run(service(e)); err != nil {
				t.Fatal(err)
			}
			v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			o := service(e)
			tt.tweak(e, &o)
			t.Cleanup(func() { killPIDFiles(e.scratch) })
			begin := time.Now()
			_, err := e.run(o)
			if took := time.Since(begin); took > 30*time.Second {
				t.Errorf("the deploy took %v, want it to end within 30s", took)
			}
			t.Logf("deploy: %v", err)
			tt.check(t, e, v2, err)
		})
	}
}

func readPID(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// waitDead waits up to 10s for a process to be gone: what a command that
// was killed at its timeout had started.
func waitDead(t *testing.T, pid int) {
	t.Helper()
	for range 100 {
		if syscall.Kill(pid, 0) != nil || zombie(pid) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	t.Errorf("process %d, started by the timed out command, still runs: %q %q", pid, stat, cmd)
}

func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z")
}

// killPIDFiles kills the processes whose ids the test's commands wrote
// into files of dir (daemons and hung children it made).
func killPIDFiles(dir string) {
	for _, f := range []string{"daemon1", "daemon2", "child"} {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
}

// Item 2: a shallow clone is refused with the fix, unless the host's
// commit is inside its history; a partial clone is refused.
func TestShallowAndPartialClones(t *testing.T) {
	t.Parallel()
	l := newLab(t, sshdtest.Options{FastShell: true})
	tests := []struct {
		name  string
		clone []string // git clone arguments
		host  int      // the host is on v<host> (0: empty)
		ok    bool
		says  []string
	}{
		{"depth-1-host-behind", []string{"--depth", "1"}, 2, false, []string{"git fetch --unshallow", "fetch-depth: 0", "not inside the local (shallow) history"}},
		{"depth-1-host-empty", []string{"--depth", "1"}, 0, false, []string{"git fetch --unshallow", "the host is empty"}},
		{"depth-2-host-inside", []string{"--depth", "2"}, 2, true, nil},
		{"depth-1-host-on-it", []string{"--depth", "1"}, 3, true, nil},
		{"partial-blobless", []string{"--filter=blob:none"}, 2, false, []string{"partial clone", "git fetch --refetch"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, l.login(t, nil), "")
			vs := []string{"", e.v1}
			for i := 2; i <= 3; i++ {
				vs = append(vs, e.src.Commit(t, fmt.Sprintf("v%d", i), map[string]string{"index.html": fmt.Sprintf("v%d\n", i)}))
			}
			if tt.host > 0 {
				opts := e.options()
				opts.Rev = vs[tt.host]
				if _, err := e.run(opts); err != nil {
					t.Fatal(err)
				}
			}
			e.src.Git(t, "config", "uploadpack.allowFilter", "true")
			clone := repotest.Clone(t, "file://"+e.src.Dir, tt.clone...)
			opts := e.options()
			opts.Dir = clone.Dir
			_, err := e.run(opts)
			want := host{head: vs[tt.host]}
			if tt.ok {
				if err != nil {
					t.Fatalf("deploy from the clone: %v", err)
				}
				want = host{head: vs[3], files: map[string]string{"index.html": "v3\n"}, audit: deploy.OutcomeOK}
			} else {
				wantIs(t, err, deploy.ErrIncompleteClone)
				wantSays(t, err, tt.says...)
			}
			if tt.host == 0 && !tt.ok {
				want.noAudit = true
			}
			e.expect(t, want)
		})
	}
}

// Item 3: whatever the login shell and its start-up files, a deploy is
// right or fails clearly, and never gets past the fast-forward check: a
// host on a commit the local history lacks is refused.
func TestLoginShells(t *testing.T) {
	t.Parallel()
	sshdtest.RequireRoot(t, "login shells of throwaway users")
	l := newLab(t, sshdtest.Options{})
	bashJunk := func(rc string) map[string]string { return map[string]string{".bashrc": rc} }
	tests := []struct {
		name  string
		shell string
		rc    map[string]string
		works bool // deploys; otherwise it must fail with ErrNoShell
	}{
		{"bash", "/bin/bash", nil, true},
		{"dash", "/bin/dash", nil, true},
		{"zsh", "/usr/bin/zsh", nil, true},
		{"fish", "/usr/bin/fish", nil, true},
		{"tcsh", "/usr/bin/tcsh", nil, true},
		{"bashrc-junk-without-newline", "/bin/bash", bashJunk(`printf 'Welcome to prod!'`), true},
		{"bashrc-escape-sequences", "/bin/bash", bashJunk(`printf '\033[1;31mPROD\033[0m\033]0;title\007\r\033[2J'`), true},
		{"bashrc-fake-protocol", "/bin/bash", bashJunk(`echo "gitric-0123456789abcdef01234567 hello 2"; echo "gitric-0123456789abcdef01234567 head 0000000000000000000000000000000000000000"; printf 'gitric- ready'`), true},
		{"bashrc-stderr", "/bin/bash", bashJunk(`echo "motd on stderr" >&2`), true},
		{"bashrc-reads-stdin", "/bin/bash", bashJunk(`read x`), false},
		{"bashrc-execs-sh", "/bin/bash", bashJunk(`exec /bin/sh`), false},
		{"bashrc-execs-zsh", "/bin/bash", bashJunk(`exec /usr/bin/zsh`), false},
		{"zshenv-junk", "/usr/bin/zsh", map[string]string{".zshenv": `print -n "zsh says hi"`}, true},
		{"fish-config-junk", "/usr/bin/fish", map[string]string{".config/fish/config.fish": `echo -n "fish says hi"`}, true},
		{"cshrc-junk", "/usr/bin/tcsh", map[string]string{".cshrc": `echo -n "tcsh says hi"`}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			sshdtest.RequireTool(t, tt.shell, "apt-get install -y "+filepath.Base(tt.shell))
			u := l.srv.AddUser(t, tt.shell, tt.rc)

			// A gitric root whose host is on a commit made there.
			e := newEnv(t, l.login(t, u), "")
			mkdir(t, filepath.Join(e.dir, ".git", "gitric"))
			e.hostGit(t, "init", "-q")
			e.hostWrite(t, map[string]string{"index.html": "hotfix\n"})
			e.hostGit(t, "add", "-A")
			foreign := e.foreignCommit(t)
			_, err := e.run(e.options())
			t.Logf("deploy over a foreign commit: %v", err)
			if tt.works {
				wantIs(t, err, deploy.ErrNonFastForward)
			} else {
				wantIs(t, err, deploy.ErrNoShell)
			}
			e.expect(t, host{head: foreign, files: map[string]string{"index.html": "hotfix\n"}})

			// A fresh path: deploys (and redeploys) right, or fails clearly.
			f := newEnv(t, l.login(t, u), "")
			f.setPath("app")
			_, err = f.run(f.options())
			if !tt.works {
				t.Logf("deploy: %v", err)
				wantIs(t, err, deploy.ErrNoShell)
				f.untouched(t)
				return
			}
			if err != nil {
				t.Fatalf("deploy: %v", err)
			}
			f.expect(t, host{head: f.v1, audit: deploy.OutcomeOK})
			v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			f.deploy(t)
			f.expect(t, host{head: v2, files: map[string]string{"index.html": "v2\n"}, audit: deploy.OutcomeOK})
		})
	}
}

// Item 3: a host that gives no shell fails with ErrNoShell, saying what
// it printed, and is left untouched.
func TestNoShell(t *testing.T) {
	t.Parallel()
	sshdtest.RequireRoot(t, "login users without a shell")
	forcedKey, forced := sshdtest.WriteKey(t, t.TempDir())
	l := newLab(t, sshdtest.Options{FastShell: true, AuthorizedKeys: []string{`command="echo hi; echo forced >&2" ` + authorized(forced.PublicKey())}})
	tests := []struct {
		name   string
		shell  string // a throwaway user with this login shell; "": forced command
		prints string
	}{
		{"bin-false", "/bin/false", "nothing"},
		{"nologin", "/usr/sbin/nologin", "This account is currently not available."},
		{"forced-command", "", "hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var lg *login
			if tt.shell != "" {
				sshdtest.RequireTool(t, tt.shell, "apt-get install -y login")
				lg = l.login(t, l.srv.AddUser(t, tt.shell, nil))
			} else {
				lg = l.login(t, nil, "IdentityFile "+forcedKey)
			}
			e := newEnv(t, lg, "")
			begin := time.Now()
			_, err := e.run(e.options())
			t.Logf("deploy: %v", err)
			wantIs(t, err, deploy.ErrNoShell)
			wantSays(t, err, "It printed: "+tt.prints)
			if took := time.Since(begin); took > 30*time.Second {
				t.Errorf("took %v to fail", took)
			}
			e.untouched(t)
		})
	}
}

// Item 4: a full disk during the checkout leaves the host on the old
// commit (or says it is mixed, and does not start the service); once
// there is room, the deploy goes through.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	sshdtest.RequireRoot(t, "a full disk")
	l := newLab(t, sshdtest.Options{FastShell: true})
	for _, mode := range []deploy.Mode{deploy.ModeInPlace, deploy.ModeRelease} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			disk := mountTmpfs(t, 1<<20)
			e := newEnv(t, l.login(t, nil), mode)
			e.setPath(filepath.Join(disk, "app"))
			serving := filepath.Join(e.scratch, "serving")
			opts := e.options()
			opts.Stage.Stop = "rm -f '" + serving + "'"
			opts.Stage.Start = "cat index.html > '" + serving + "'"
			if _, err := e.run(opts); err != nil {
				t.Fatal(err)
			}
			// 3 MiB of one letter: a tiny pack, a checkout that does not
			// fit (zeros would not do: git writes them as a sparse file).
			v2 := e.src.Commit(t, "big", map[string]string{"index.html": "v2\n", "big.txt": strings.Repeat("a", 3<<20)})
			_, err := e.run(opts)
			t.Logf("deploy onto a full disk: %v", err)
			if err == nil {
				t.Fatal("the deploy onto a full disk succeeded")
			}
			served, _ := os.ReadFile(serving)
			switch {
			case errors.Is(err, deploy.ErrMixed):
				if len(served) > 0 {
					t.Errorf("the working copy is mixed, yet the service was started: %q", served)
				}
			case mode == deploy.ModeRelease:
				wantSays(t, err, "service was not stopped")
				e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "v1\n"}, audit: deploy.OutcomeFailed, reason: "not stopped"})
				if rels, _ := filepath.Glob(filepath.Join(e.dir, "releases", "*")); len(rels) != 1 {
					t.Errorf("releases %v, want the live one alone (the failed one removed)", rels)
				}
				if string(served) != "v1\n" {
					t.Errorf("the host serves %q, want v1 not stopped", served)
				}
			default:
				wantSays(t, err, "put back on the old commit")
				e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "v1\n"}, audit: deploy.OutcomeFailed, reason: "back on the old commit"})
				if string(served) != "v1\n" {
					t.Errorf("the host serves %q, want v1 started again", served)
				}
				if st, _ := repotest.Git(e.dir, "status", "--porcelain"); st != "" {
					t.Errorf("the working copy is not clean on the old commit: %q", st)
				}
			}
			// Room again: the same deploy goes through.
			if out, err := exec.Command("mount", "-o", "remount,size=16m", disk).CombinedOutput(); err != nil {
				t.Fatalf("remount: %v: %s", err, out)
			}
			if _, err := e.run(opts); err != nil {
				t.Fatalf("deploy once there is room: %v", err)
			}
			e.expect(t, host{head: v2, files: map[string]string{"index.html": "v2\n"}, audit: deploy.OutcomeOK})
		})
	}
}

// Item 4: a host script killed (SIGKILL: nothing it can trap) in the
// middle of a cutover leaves its mark. Killed after the switch and before
// the start, the host is on the new commit with its service stopped: the
// next deploy of that commit does not take it for done, but cuts over
// again, and status says so meanwhile. Killed in the middle of the switch,
// the files it left are refused as edits, with what happened and the fix.
func TestCutoverKilled(t *testing.T) {
	t.Parallel()
	l := newLab(t, sshdtest.Options{FastShell: true})
	t.Run("before the start", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, l.login(t, nil), deploy.ModeInPlace)
		serving, once := filepath.Join(e.scratch, "serving"), filepath.Join(e.scratch, "killed")
		opts := e.options()
		opts.Stage.Stop = "rm -f '" + serving + "'"
		// $$ is the host script's shell: the first start kills it.
		opts.Stage.Start = fmt.Sprintf(`[ -f '%s' ] || { : > '%s'; kill -9 $$; exit 1; }; cat index.html > '%s'`, once, once, serving)
		if _, err := e.run(opts); err == nil {
			t.Fatal("the deploy whose host script was killed succeeded")
		}
		if b, _ := os.ReadFile(serving); len(b) > 0 {
			t.Fatalf("serving %q before the deploy after the kill", b)
		}
		rep, err := deploy.Status(context.Background(), statusOptions(e.options()))
		if !errors.Is(err, deploy.ErrCutShort) || rep.Hosts[0].CutShort != e.v1 || !strings.Contains(rep.Verdict, "1 host(s) with a cutover cut short") {
			t.Errorf("status after the kill: %+v, %q, %v; want the cutover to %.7s cut short, and ErrCutShort", rep.Hosts, rep.Verdict, err, e.v1)
		}
		wantSays(t, err, e.v1[:7], "deploy again to finish it")
		p, err := deploy.MakePlan(context.Background(), opts)
		if err != nil || p.Hosts[0].Already || p.Hosts[0].CutShort != e.v1 {
			t.Errorf("plan after the kill: %+v, %v; want the cutover done again", p, err)
		}
		e.out.Reset()
		if _, err := e.run(opts); err != nil {
			t.Fatalf("the deploy after the kill: %v", err)
		}
		if out := e.out.String(); !strings.Contains(out, "was cut short (killed): it is done again") {
			t.Errorf("the deploy after the kill does not say it finishes the cutover:\n%s", out)
		}
		if b, _ := os.ReadFile(serving); string(b) != "v1\n" {
			t.Errorf("serving %q after the deploy after the kill, want v1", b)
		}
		rep, err = deploy.Status(context.Background(), statusOptions(e.options()))
		if err != nil || rep.Hosts[0].CutShort != "" {
			t.Errorf("status once it is done: %+v, %v; want nothing cut short", rep.Hosts, err)
		}
	})
	t.Run("in the switch", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, l.login(t, nil), deploy.ModeInPlace)
		if _, err := e.run(e.options()); err != nil {
			t.Fatal(err)
		}
		// What a kill in git reset leaves: some files of v2, HEAD on v1,
		// the mark.
		v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
		writeFile(t, e.dir, "index.html", "v2\n")
		writeFile(t, filepath.Join(e.dir, ".git", "gitric"), "cutover", v2+"\n")
		_, err := e.run(e.options())
		var se *deploy.ServerEditsError
		if !errors.As(err, &se) || se.CutShort != v2 {
			t.Fatalf("deploy over a cut-short switch = %v, want ServerEditsError naming the cutover", err)
		}
		wantSays(t, err, "was cut short", "set DiscardEdits")
		opts := e.options()
		opts.DiscardEdits = true
		if _, err := e.run(opts); err != nil {
			t.Fatalf("the deploy that finishes it: %v", err)
		}
		e.expect(t, host{head: v2, files: map[string]string{"index.html": "v2\n"}, audit: deploy.OutcomeOK})
	})
}

// Item 4: a disk with no inode left cannot hold the deploy lock: the
// deploy says so (not "locked by an unknown deploy"), and changes nothing.
func TestDiskFullLock(t *testing.T) {
	t.Parallel()
	sshdtest.RequireRoot(t, "a full disk")
	e := newEnv(t, newLab(t, sshdtest.Options{FastShell: true}).login(t, nil), deploy.ModeInPlace)
	disk := mountTmpfs(t, 16<<20, "nr_inodes=500")
	e.setPath(filepath.Join(disk, "app"))
	if _, err := e.run(e.options()); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		f, err := os.Create(filepath.Join(disk, fmt.Sprintf("fill-%d", i)))
		if err != nil {
			break
		}
		f.Close()
	}
	e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	_, err := e.run(e.options())
	t.Logf("deploy onto a disk with no inode left: %v", err)
	wantScript(t, err, "path")
	wantSays(t, err, "cannot create the deploy lock", "out of inodes")
	e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "v1\n"}, audit: deploy.OutcomeOK})
}

// Item 4: a first deploy that does not fit on the disk (in blue/green,
// the second working copy) leaves nothing half-made in the way: once
// there is room, the deploy goes through.
func TestDiskFullFirstDeploy(t *testing.T) {
	t.Parallel()
	sshdtest.RequireRoot(t, "a full disk")
	l := newLab(t, sshdtest.Options{FastShell: true})
	for _, mode := range []deploy.Mode{deploy.ModeInPlace, deploy.ModeRelease, deploy.ModeBlueGreen} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			disk := mountTmpfs(t, 1<<20)
			e := newEnv(t, l.login(t, nil), mode)
			e.setPath(filepath.Join(disk, "app"))
			size := 3 << 20
			if mode == deploy.ModeBlueGreen {
				size = 600 << 10 // room for one working copy, not two
			}
			v2 := e.src.Commit(t, "big", map[string]string{"big.txt": strings.Repeat("b", size)})
			_, err := e.run(e.options())
			t.Logf("first deploy onto a small disk: %v", err)
			if err == nil {
				t.Fatal("the first deploy onto a full disk succeeded")
			}
			for _, link := range []string{"live", "next", "current"} {
				if _, err := os.Lstat(filepath.Join(e.dir, link)); err == nil {
					t.Errorf("%s exists after a failed first deploy", link)
				}
			}
			if out, err := exec.Command("mount", "-o", "remount,size=16m", disk).CombinedOutput(); err != nil {
				t.Fatalf("remount: %v: %s", err, out)
			}
			if _, err := e.run(e.options()); err != nil {
				t.Fatalf("deploy once there is room: %v", err)
			}
			e.expect(t, host{head: v2, audit: deploy.OutcomeOK})
		})
	}
}

// Item 4: a release directory that a crash left without its completion
// marker is removed, never reused.
func TestHalfWrittenRelease(t *testing.T) {
	t.Parallel()
	l := newLab(t, sshdtest.Options{FastShell: true})
	for _, tt := range []struct {
		name   string
		break_ func(t *testing.T, dir string)
	}{
		{"files-missing", func(t *testing.T, dir string) { _ = os.Remove(filepath.Join(dir, "index.html")) }},
		{"looks-whole", func(t *testing.T, dir string) {}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, l.login(t, nil), deploy.ModeRelease)
			e.deploy(t)
			v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n", "more.txt": "more\n"})
			// What a crash in "git worktree add" leaves: v2's objects
			// and a release directory of v2 without the marker.
			e.src.Git(t, "push", "-q", e.gitDir(), v2+":refs/gitric/seed")
			half := filepath.Join(e.dir, "releases", "20000101T000000Z-"+v2[:7])
			if _, err := repotest.Git(e.dir, "--git-dir="+e.gitDir(), "worktree", "add", "-q", "--detach", half, v2); err != nil {
				t.Fatal(err)
			}
			tt.break_(t, half)
			e.deploy(t)
			live, _ := os.Readlink(filepath.Join(e.dir, "current"))
			if strings.Contains(live, "20000101T000000Z") {
				t.Fatalf("current is the half-written release %s", live)
			}
			if _, err := os.Stat(half); err == nil {
				t.Errorf("the half-written release %s is still there", half)
			}
			e.expect(t, host{head: v2, files: map[string]string{"index.html": "v2\n", "more.txt": "more\n"}, audit: deploy.OutcomeOK})
			if wt, _ := repotest.Git(e.dir, "--git-dir="+e.gitDir(), "worktree", "list"); strings.Contains(wt, "20000101T000000Z") {
				t.Errorf("git still lists the half-written release: %s", wt)
			}
		})
	}
}

// Item 5: the client is killed (kill -9) while a slow start command runs:
// the host finishes the cutover, writes its real outcome to the audit log
// and releases the lock by itself.
func TestClientKilledMidCutover(t *testing.T) {
	t.Parallel()
	l := newLab(t, sshdtest.Options{FastShell: true})
	for _, tt := range []struct {
		name   string
		exit   string
		result deploy.Outcome
		reason string
	}{
		{"start-succeeds", "", deploy.OutcomeOK, ""},
		{"start-fails", "; exit 3", deploy.OutcomeFailed, "start command failed (exit status 3)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, l.login(t, nil), "")
			e.deploy(t)
			v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			starting, serving := filepath.Join(e.scratch, "starting"), filepath.Join(e.scratch, "serving")
			spec, _ := json.Marshal(helperSpec{Path: e.path, Dir: e.src.Dir, Config: e.config,
				Start: fmt.Sprintf("touch '%s'; sleep 2; cat index.html > '%s'%s", starting, serving, tt.exit)})
			client := exec.Command(os.Args[0], "-test.run=^$")
			client.Env = append(os.Environ(), helperEnv+"="+string(spec))
			var out bytes.Buffer
			client.Stdout, client.Stderr = &out, &out
			if err := client.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- client.Wait() }()
			t.Cleanup(func() { _ = client.Process.Kill(); <-done })
			waitFile(t, starting)
			if err := client.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err == nil {
				t.Fatalf("the client ended by itself before it was killed:\n%s", out.String())
			}
			done <- nil
			t.Logf("the client said before it was killed:\n%s", out.String())
			// The host finishes by itself: the audit line comes, then
			// the lock goes (expect waits for that).
			e.expect(t, host{head: v2, files: map[string]string{"index.html": "v2\n"}, audit: tt.result, reason: tt.reason})
			if b, _ := os.ReadFile(serving); string(b) != "v2\n" {
				t.Errorf("the host serves %q, want the start command to have run to its end", b)
			}
			if last := e.audit(t); last[len(last)-1].To != v2 || last[len(last)-1].Who != "helper@e2e" {
				t.Errorf("last audit line %+v, want the killed client's deploy of v2", last[len(last)-1])
			}
		})
	}
}

// Item 7: one machine reached twice (two aliases, two users, alias and
// address) is refused before any connection is made.
func TestSameHostTwiceUpFront(t *testing.T) {
	t.Parallel()
	l := newLab(t, sshdtest.Options{FastShell: true})
	lg := l.login(t, nil)
	cfg := writeFile(t, t.TempDir(), "ssh_config", fmt.Sprintf("Include %s\nHost web db\n  HostName 127.0.0.1\n  Port %d\n", lg.config, l.srv.Port))
	for _, hosts := range [][]string{
		{"web", "db"},
		{"alice@web", "bob@web"},
		{"target", fmt.Sprintf("127.0.0.1:%d", l.srv.Port)},
		{"web", "target", "WEB"},
	} {
		e := newEnv(t, lg, "")
		opts := e.options()
		opts.Stage.Hosts = hosts
		opts.SSH.ConfigFile = cfg
		_, err := e.run(opts)
		wantIs(t, err, deploy.ErrDuplicateHost)
		e.untouched(t)
	}
	if n := sshdtest.CountLines(l.srv.Log(), "Accepted publickey"); n != 0 {
		t.Errorf("%d logins: the duplicate was found after connecting", n)
	}
}

// Item 7: first deploys at once into an empty path: exactly one creates
// the repository and deploys; every other one is refused as locked.
func TestFirstDeploysAtOnce(t *testing.T) {
	t.Parallel()
	l := newLab(t, sshdtest.Options{FastShell: true})
	for _, mode := range []deploy.Mode{deploy.ModeInPlace, deploy.ModeRelease, deploy.ModeBlueGreen} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, l.login(t, nil), mode)
			opts := e.options()
			opts.Stage.Start = e.gate()
			errs := parallelDeploys(e, opts, 3)
			oneWins(t, errs)
			e.expect(t, host{head: e.v1, files: map[string]string{"index.html": "v1\n"}})
			var ok, refused int
			for _, a := range e.audit(t) {
				switch a.Result {
				case deploy.OutcomeOK:
					ok++
				case deploy.OutcomeRefused:
					refused++
				}
			}
			if ok != 1 || refused != 2 {
				t.Errorf("audit log %+v, want one deploy and two refusals", e.audit(t))
			}
		})
	}
}

// Item 7: a repository gitric did not create is refused, in every mode,
// unless TakeOver; status says it is foreign.
func TestForeignRepository(t *testing.T) {
	t.Parallel()
	l := newLab(t, sshdtest.Options{FastShell: true})
	for _, mode := range []deploy.Mode{deploy.ModeInPlace, deploy.ModeRelease} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, l.login(t, nil), mode)
			// Someone's clone of the project, by hand.
			args := []string{"clone", "-q", e.src.Dir, e.dir}
			if mode == deploy.ModeRelease {
				args = []string{"clone", "-q", "--bare", e.src.Dir, e.gitDir()}
			}
			if _, err := repotest.Git("/", args...); err != nil {
				t.Fatal(err)
			}
			before := repotest.Snapshot(t, e.dir)
			ctx, cancel := context.WithTimeout(context.Background(), deployBound)
			defer cancel()
			rep, err := deploy.Status(ctx, statusOptions(e.options()))
			if err != nil || len(rep.Hosts) != 1 || !rep.Hosts[0].Foreign {
				t.Errorf("status of a foreign repository: %+v %v", rep, err)
			}
			_, err = e.run(e.options())
			wantScript(t, err, "foreign")
			wantSays(t, err, "did not create", "unless told")
			if after := repotest.Snapshot(t, e.dir); after != before {
				t.Errorf("the refused deploy changed the foreign repository")
			}
			if _, err := os.Stat(filepath.Join(e.gitDir(), "gitric")); err == nil {
				t.Errorf("the refused deploy marked the repository as gitric's")
			}
			v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			opts := e.options()
			opts.TakeOver = true
			if _, err := e.run(opts); err != nil {
				t.Fatalf("deploy with TakeOver: %v", err)
			}
			e.expect(t, host{head: v2, files: map[string]string{"index.html": "v2\n"}, audit: deploy.OutcomeOK})
			// Now it is gitric's: no TakeOver needed.
			v3 := e.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
			e.deploy(t)
			e.expect(t, host{head: v3, audit: deploy.OutcomeOK})
		})
	}
}

// busyboxLab is a lab whose sshd puts busybox's applets (mv, awk, sed,
// sort, date...) first on the PATH of every session, and the directory
// of their links.
func busyboxLab(t *testing.T) (*lab, string) {
	t.Helper()
	sshdtest.RequireTool(t, "/bin/busybox", "apt-get install -y busybox")
	bin := t.TempDir()
	if err := os.Chmod(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, applet := range []string{"mv", "ln", "readlink", "ps", "awk", "sed", "sort", "date", "head", "tail", "cat", "rm", "rmdir",
		"mkdir", "basename", "ls", "sleep", "id", "tr", "touch", "cp", "grep", "kill", "sysctl"} {
		if err := os.Symlink("/bin/busybox", filepath.Join(bin, applet)); err != nil {
			t.Fatal(err)
		}
	}
	return newLab(t, sshdtest.Options{FastShell: true, ExtraConfig: []string{"SetEnv PATH=" + bin + ":/usr/bin:/bin"}}), bin
}

// Item 9: busybox's applets first on the PATH (mv, ln, readlink, ps, awk,
// sed, sort, date...): release and blue/green deploys still swap their
// symlinks atomically, and a hanging command is still killed with what
// it started.
func TestBusyboxApplets(t *testing.T) {
	t.Parallel()
	l, bin := busyboxLab(t)
	for _, mode := range []deploy.Mode{deploy.ModeRelease, deploy.ModeBlueGreen} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, l.login(t, nil), mode)
			big := func(v int) map[string]string {
				return map[string]string{"index.html": strings.Repeat(fmt.Sprintf("v%d\n", v), 2000)}
			}
			e.src.Commit(t, "v0", big(0))
			opts := e.options()
			opts.Stage.Start = "command -v mv > which-mv"
			if _, err := e.run(opts); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(e.read("which-mv")); got != filepath.Join(bin, "mv") {
				t.Fatalf("the host's mv is %q, want busybox's in %s", got, bin)
			}
			link := "current"
			if mode == deploy.ModeBlueGreen {
				link = "live"
			}
			// A reader through the live link all along.
			stop := make(chan struct{})
			var reads, bad atomic.Int64
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
					b, err := os.ReadFile(filepath.Join(e.dir, link, "index.html"))
					reads.Add(1)
					lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
					ok := err == nil && len(lines) == 2000
					for _, ln := range lines {
						ok = ok && ln == lines[0]
					}
					if !ok {
						bad.Add(1)
					}
					time.Sleep(time.Millisecond)
				}
			}()
			var last string
			for v := 1; v <= 3; v++ {
				last = e.src.Commit(t, fmt.Sprintf("v%d", v), big(v))
				if _, err := e.run(opts); err != nil {
					t.Fatal(err)
				}
				if mode == deploy.ModeBlueGreen {
					ctx, cancel := context.WithTimeout(context.Background(), deployBound)
					_, err := deploy.Swap(ctx, swapOptions(opts))
					cancel()
					if err != nil {
						t.Fatalf("swap: %v", err)
					}
				}
			}
			close(stop)
			wg.Wait()
			if bad.Load() > 0 || reads.Load() < 10 {
				t.Errorf("%d of %d reads through %s saw a missing or torn file", bad.Load(), reads.Load(), link)
			}
			if got, _ := repotest.Git(filepath.Join(e.dir, link), "rev-parse", "HEAD"); got != last {
				t.Errorf("%s is on %s, want %s", link, got, last)
			}
			for _, junk := range []string{link + ".gitric-new", "next.gitric-new"} {
				if _, err := os.Lstat(filepath.Join(e.dir, junk)); err == nil {
					t.Errorf("%s left behind", junk)
				}
			}
			e.expect(t, host{audit: deploy.OutcomeOK, head: e.head()})

			// A start that hangs, with a child, is killed at its timeout.
			e.src.Commit(t, "v4", big(4))
			opts.StartTimeout = time.Second
			opts.Stage.Start = fmt.Sprintf("sleep 100 & echo $! > '%s/child'; sleep 100", e.scratch)
			t.Cleanup(func() { killPIDFiles(e.scratch) })
			_, err := e.run(opts)
			wantIs(t, err, deploy.ErrCommandTimeout)
			waitDead(t, readPID(t, filepath.Join(e.scratch, "child")))
		})
	}
}
