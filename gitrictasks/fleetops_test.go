//go:build linux

package gitrictasks_test

import (
	"bytes"
	"context"
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

	"github.com/gitric/gitric/gitrictasks"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// mageBound bounds one `go tool mage` call (the first compiles the
// magefile): a hang is a failure.
const mageBound = 3 * time.Minute

// mageFleet is a repository, a fleet and the environment that points the
// signal tests' magefile (stage prod: Path app, Start GITRIC_TEST_START)
// at them.
type mageFleet struct {
	repo  *repotest.Repo
	fleet *sshdtest.Fleet
	env   []string
}

func newMageFleet(t *testing.T, hosts int, start string) *mageFleet {
	t.Helper()
	if testing.Short() {
		t.Skip("builds a magefile")
	}
	sshdtest.Require(t)
	t.Parallel()
	compileMagefile(t)
	m := &mageFleet{repo: repotest.New(t), fleet: sshdtest.StartFleet(t, hosts)}
	m.repo.Commit(t, "v1", map[string]string{"index.html": "v1\n"})
	m.env = append(mageEnv(), "GITRIC_TEST_START="+start,
		"GITRIC_HOSTS="+strings.Join(m.fleet.Addresses(hosts), ","), "GITRIC_BATCH=1",
		"GITRIC_IDENTITY="+m.fleet.ClientKeyFile, "GITRIC_KNOWN_HOSTS="+m.fleet.KnownHostsFile, "GITRIC_SSH_CONFIG=none")
	return m
}

func signalsMagefile(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("testdata", "signals"))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// mageEnv is the environment of every go tool mage call: mage's cache of
// this test process, and MAGEFILE_HASHFAST, which has mage run the binary
// it compiled there instead of compiling the magefile again on each call
// (in the magefile's directory: calls at once would trip over each other).
func mageEnv() []string {
	return append(repotest.Env(), "MAGEFILE_CACHE="+mageCache, "MAGEFILE_HASHFAST=1")
}

var compiled struct {
	once sync.Once
	err  error
}

// compileMagefile has mage compile the magefile into mageCache once,
// before the parallel tests call it: a call without a stage compiles it,
// then is refused.
func compileMagefile(t *testing.T) {
	t.Helper()
	compiled.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), mageBound)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "tool", "mage", "-d", signalsMagefile(t), "-w", t.TempDir(), "gitric:status")
		cmd.Env = mageEnv()
		if out, err := cmd.CombinedOutput(); !strings.Contains(string(out), "no stage chosen") {
			compiled.err = fmt.Errorf("%v: %s", err, out)
		}
	})
	if compiled.err != nil {
		t.Fatalf("compiling the magefile: %v", compiled.err)
	}
}

// mageCall is one `go tool mage` run in its own process group.
type mageCall struct {
	cmd            *exec.Cmd
	stdout, stderr bytes.Buffer
	done           chan struct{}
	err            error
}

// start runs go tool mage with the targets, in the repository, with env
// added to the fleet's.
func (m *mageFleet) start(t *testing.T, env []string, targets ...string) *mageCall {
	t.Helper()
	c := &mageCall{done: make(chan struct{})}
	c.cmd = exec.Command("go", append([]string{"tool", "mage", "-d", signalsMagefile(t), "-w", m.repo.Dir}, targets...)...)
	c.cmd.Env = append(m.env, env...) // the last value of a name counts
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.cmd.Stdout, c.cmd.Stderr = &c.stdout, &c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := c.cmd.Process.Pid
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-c.done
	})
	return c
}

// wait waits for the call to end, failing the test after mageBound, and
// returns its exit status.
func (c *mageCall) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(mageBound):
		t.Fatalf("mage still runs after %v:\n%s%s", mageBound, c.stdout.String(), c.stderr.String())
	}
	var ee *exec.ExitError
	switch {
	case c.err == nil:
		return 0
	case errors.As(c.err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("mage: %v", c.err)
	return -1
}

func (c *mageCall) output() string { return c.stdout.String() + c.stderr.String() }

// run runs go tool mage to its end and returns its exit status.
func (m *mageFleet) run(t *testing.T, env []string, targets ...string) (int, string) {
	t.Helper()
	c := m.start(t, env, targets...)
	status := c.wait(t)
	return status, c.output()
}

// magefileProcess is the compiled magefile that go tool mage runs (via
// mage), found among the descendants of pid by its executable, which
// lives in mageCache.
func magefileProcess(pid int) (int, bool) {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if exe, err := os.Readlink("/proc/" + strconv.Itoa(p) + "/exe"); err == nil && strings.HasPrefix(exe, mageCache+"/") {
			return p, true
		}
		queue = append(queue, children[p]...)
	}
	return 0, false
}

func (m *mageFleet) head(t *testing.T, i int) string {
	t.Helper()
	out, _ := repotest.Git(filepath.Join(m.fleet.Homes[i], "app"), "rev-parse", "-q", "--verify", "HEAD")
	return out
}

func (m *mageFleet) lock(i int) string {
	return filepath.Join(m.fleet.Homes[i], "app", ".git", "gitric", "lock")
}

func (m *mageFleet) audit(t *testing.T, i int) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(m.fleet.Homes[i], "app", ".git", "gitric", "audit.log"))
	return string(b)
}

// waitFile waits for path to exist, failing when call ends first or
// after mageBound.
func waitFile(t *testing.T, c *mageCall, path string) {
	t.Helper()
	deadline := time.After(mageBound)
	for {
		if _, err := os.Lstat(path); err == nil {
			return
		}
		select {
		case <-c.done:
			t.Fatalf("mage ended before %s appeared:\n%s", path, c.output())
		case <-deadline:
			t.Fatalf("%s did not appear:\n%s", path, c.output())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestFleetOpsKilledMage kills the compiled magefile (SIGKILL: no
// cleanup of its own) in the middle of a deploy, during the seed and
// during a cutover, and deploys again at once.
//
// The host script of the killed deploy outlives its connection: it
// finishes the host step under way (the seed's git receive-pack fails,
// a cutover runs to its end), writes its audit line and releases its
// lock by itself, a few seconds later. So the lock is still live when
// the next deploy comes, which waits for it (GITRIC_LOCK_WAIT). A lock
// whose holder on the host is dead too (the host process was killed) is
// taken over at once, without waiting.
func TestFleetOpsKilledMage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// seed: the step held is the seed (a pre-receive hook on host 0
		// sleeps), else the cutover (v2's start command sleeps).
		seed bool
		// holder: kill the host script that holds host 0's lock too.
		holder bool
		env    []string // of the deploy after the kill
	}{
		{"during the seed", true, false, []string{"GITRIC_LOCK_WAIT=30s"}},
		{"during the cutover", false, false, []string{"GITRIC_LOCK_WAIT=30s"}},
		{"during the seed, with the host script", true, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mark := filepath.Join(t.TempDir(), "holding")
			hold := "if ! test -f " + mark + "; then touch " + mark + "; sleep 3; fi"
			start := "cp index.html running"
			if !tt.seed {
				start = "if grep -q v2 index.html; then " + hold + "; fi; " + start
			}
			m := newMageFleet(t, 2, start)
			if status, out := m.run(t, nil, "gitric:prod", "gitric:deploy"); status != 0 {
				t.Fatalf("first deploy exited %d:\n%s", status, out)
			}
			if tt.seed {
				hook := filepath.Join(m.fleet.Homes[0], "app", ".git", "hooks", "pre-receive")
				if err := os.WriteFile(hook, []byte("#!/bin/sh\ncat >/dev/null\n"+hold+"\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			v2 := m.repo.Commit(t, "v2", map[string]string{"index.html": "v2\n"})

			c := m.start(t, nil, "gitric:prod", "gitric:deploy")
			waitFile(t, c, mark)
			pid, ok := magefileProcess(c.cmd.Process.Pid)
			if !ok {
				t.Fatalf("no compiled magefile under process %d", c.cmd.Process.Pid)
			}
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if status := c.wait(t); status == 0 {
				t.Fatalf("the killed deploy exited 0:\n%s", c.output())
			}
			if tt.holder {
				owner, err := os.Readlink(m.lock(0))
				if err != nil {
					t.Fatalf("host 0 has no lock: %v", err)
				}
				holder, err := strconv.Atoi(strings.Fields(strings.TrimPrefix(owner, "pid="))[0])
				if err != nil {
					t.Fatalf("lock %q: %v", owner, err)
				}
				if err := syscall.Kill(holder, syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
				for syscall.Kill(holder, 0) == nil {
					time.Sleep(10 * time.Millisecond) // a zombie until sshd reaps it
				}
			}

			status, out := m.run(t, tt.env, "gitric:prod", "gitric:deploy")
			if status != 0 {
				t.Fatalf("the deploy after the kill exited %d:\n%s", status, out)
			}
			for i := range m.fleet.Servers {
				if h := m.head(t, i); h != v2 {
					t.Errorf("host %d on %.7s, want v2 %.7s", i, h, v2)
				}
				if b, _ := os.ReadFile(filepath.Join(m.fleet.Homes[i], "app", "running")); string(b) != "v2\n" {
					t.Errorf("host %d serves %q", i, b)
				}
				if exists(m.lock(i)) {
					t.Errorf("host %d is still locked", i)
				}
			}
			tookOver := strings.Contains(out, "took over the lock of a deploy that is gone")
			if tookOver != tt.holder || strings.Contains(m.audit(t, 0), `"took-over"`) != tt.holder {
				t.Errorf("took over the lock: %v, want %v:\n%s\naudit:\n%s", tookOver, tt.holder, out, m.audit(t, 0))
			}
		})
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// bootID is what the host script records in its locks.
func bootID(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestFleetOpsExitStatus calls go tool mage as CI does and checks the
// exit status of each kind of failure, from deploy, from plan (which
// exits with the status the deploy would have; it cannot foresee a
// failing start) and from status (which fails only for a host it cannot
// reach: the rest is what it reports).
func TestFleetOpsExitStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		setup                func(t *testing.T, m *mageFleet) (env []string)
		plan, deploy, status int
		says                 string
	}{
		{"ok", func(t *testing.T, m *mageFleet) []string {
			m.repo.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			return nil
		}, 0, 0, 0, ""},
		{"dirty working copy", func(t *testing.T, m *mageFleet) []string {
			m.repo.Write(t, map[string]string{"index.html": "uncommitted\n"})
			return nil
		}, gitrictasks.ExitRefused, gitrictasks.ExitRefused, 0, "mage gitric:allowDirty gitric:prod"},
		{"locked", func(t *testing.T, m *mageFleet) []string {
			m.repo.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			// A live holder: this test process, on this boot.
			owner := fmt.Sprintf("pid=%d boot=%s someone@else since 2026-01-01T00:00:00Z (deploy 1234567)", os.Getpid(), bootID(t))
			if err := os.Symlink(owner, m.lock(0)); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(m.lock(0)) })
			return nil
		}, gitrictasks.ExitLocked, gitrictasks.ExitLocked, 0, "locked by someone@else"},
		{"failing start", func(t *testing.T, m *mageFleet) []string {
			m.repo.Commit(t, "v2", map[string]string{"index.html": "broken\n"})
			return nil
		}, 0, gitrictasks.ExitRolledBack, 0, "rolled back"},
		{"unreachable", func(t *testing.T, m *mageFleet) []string {
			m.repo.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			return []string{"GITRIC_HOSTS=root@" + sshdtest.ClosedPort(t)}
		}, gitrictasks.ExitUnreachable, gitrictasks.ExitUnreachable, gitrictasks.ExitUnreachable, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A broken version fails to start.
			m := newMageFleet(t, 1, "! grep -q broken index.html && cp index.html running")
			if status, out := m.run(t, nil, "gitric:prod", "gitric:deploy"); status != 0 {
				t.Fatalf("first deploy exited %d:\n%s", status, out)
			}
			v1 := m.head(t, 0)
			env := tt.setup(t, m)
			for _, c := range []struct {
				action string
				want   int
			}{{"gitric:plan", tt.plan}, {"gitric:status", tt.status}, {"gitric:deploy", tt.deploy}} {
				status, out := m.run(t, env, "gitric:prod", c.action)
				if status != c.want {
					t.Errorf("%s exited %d, want %d:\n%s", c.action, status, c.want, out)
				}
				if c.want != 0 && !strings.Contains(out, tt.says) {
					t.Errorf("%s does not say %q:\n%s", c.action, tt.says, out)
				}
			}
			if want := m.repo.Head(t); tt.deploy != 0 && m.head(t, 0) != v1 || tt.deploy == 0 && m.head(t, 0) != want {
				t.Errorf("host on %.7s after the deploy", m.head(t, 0))
			}
		})
	}
}
