package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/remote"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

// localLink runs a host's commands under a local /bin/sh, as sshd would
// run them for a login whose home is home: the host script is started by
// its fixed bootstrap and read from standard input, so it runs here as it
// runs over SSH, against the real git. A stage's relative Path lands in
// home.
//
// kill is harsher than a closed SSH channel (which only closes the
// script's streams): it also kills the script's process group, so a test
// through this link never leaves a script running behind it.
type localLink struct {
	name string // the host's name, for errors
	home string
}

var _ link = localLink{}
var _ dialer = localLink{}

func (l localLink) start(ctx context.Context, cmd string) (*process, error) {
	c := exec.Command("/bin/sh", "-c", cmd)
	c.Dir = l.home
	c.Env = hostEnviron(l.home)
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := c.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := c.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := c.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("%s: start /bin/sh: %w", l.name, err)
	}
	var once sync.Once
	kill := func() {
		once.Do(func() {
			_ = stdin.Close()
			_ = stdout.Close()
			_ = stderr.Close()
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		})
	}
	wait := func() error {
		err := c.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			e := &remote.ExitError{Host: l.name, Cmd: "gitric host script", Status: ee.ExitCode()}
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				e.Status, e.Signal = -1, ws.Signal().String()
			}
			return e
		}
		return err
	}
	return &process{stdin: stdin, stdout: stdout, stderr: stderr, wait: wait, kill: kill}, nil
}

func (l localLink) close() {}

// dialContext opens TCP connections from the "host": this machine.
func (l localLink) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, network, addr)
}

// hostEnviron is this process's environment as a fresh login of a host
// would see it: HOME is the host's, and no git setting of the test's
// environment (nor the user's or system's git configuration) leaks in.
func hostEnviron(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GIT_") || k == "HOME" || k == "XDG_CONFIG_HOME" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "GIT_CONFIG_NOSYSTEM=1")
}

// localFleet is a set of local "hosts": each host address of a stage gets
// a home directory of its own, made when it is first dialled, so that a
// multi-host flow runs for real against git and sh, without sshd.
type localFleet struct {
	t     testing.TB
	mu    sync.Mutex
	homes map[string]string
	// down makes dialling a host fail with its error.
	down map[string]error
}

func newLocalFleet(t testing.TB) *localFleet {
	t.Helper()
	repotest.RequireGit(t)
	return &localFleet{t: t, homes: map[string]string{}, down: map[string]error{}}
}

// home is the home directory of the host named name.
func (f *localFleet) home(name string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	h, ok := f.homes[name]
	if !ok {
		h = filepath.Join(f.t.TempDir(), name)
		if err := os.Mkdir(h, 0o755); err != nil {
			f.t.Error(err) // maybe not the test's goroutine: no Fatal
		}
		f.homes[name] = h
	}
	return h
}

func (f *localFleet) dial(ctx context.Context, a remote.Address, logf func(string, ...any)) (link, error) {
	f.mu.Lock()
	err := f.down[a.Name()]
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return localLink{name: a.Name(), home: f.home(a.Name())}, nil
}

// unitFleet is a local repository and n local hosts h1..hn to deploy it
// to, with a "service" that is a file existing while it runs.
type unitFleet struct {
	*localFleet
	src   *repotest.Repo
	names []string
	out   *syncBuffer
}

func newUnitFleet(t *testing.T, n int) *unitFleet {
	t.Helper()
	f := &unitFleet{localFleet: newLocalFleet(t), src: repotest.New(t), out: &syncBuffer{}}
	for i := range n {
		f.names = append(f.names, fmt.Sprintf("h%d", i+1))
		f.home(f.names[i])
	}
	f.src.Commit(t, "v1", map[string]string{"index.html": "v1\n"})
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("UNIT_SHOW") != "" {
			t.Logf("deploy output:\n%s", f.out.String())
		}
	})
	return f
}

func (f *unitFleet) options() DeployOptions {
	return DeployOptions{Options: Options{
		Stage: Stage{
			Name: "unit", Hosts: f.names, Path: "app",
			Stop:  "rm -f running",
			Start: "cp index.html running",
		},
		Dir:  f.src.Dir,
		Out:  f.out,
		Who:  "tester@unit",
		dial: f.dial,
	}}
}

// target is host i's deploy root (i from 0).
func (f *unitFleet) target(i int) string { return filepath.Join(f.home(f.names[i]), "app") }

// head is the commit host i's working copy is on, "" for none.
func (f *unitFleet) head(t *testing.T, i int, mode Mode) string {
	t.Helper()
	dir := f.target(i)
	switch mode {
	case ModeRelease:
		dir = filepath.Join(dir, "current")
	case ModeBlueGreen:
		dir = filepath.Join(dir, "next")
	}
	out, err := repotest.Git(dir, "rev-parse", "-q", "--verify", "HEAD")
	if err != nil {
		return ""
	}
	return out
}

// running is what host i's "service" serves (in place), "" when stopped.
func (f *unitFleet) running(i int) string {
	b, _ := os.ReadFile(filepath.Join(f.target(i), "running"))
	return string(b)
}

// audit is host i's audit log.
func (f *unitFleet) audit(t *testing.T, i int, mode Mode) []AuditEntry {
	t.Helper()
	gd := ".git"
	if mode == ModeRelease || mode == ModeBlueGreen {
		gd = "repo"
	}
	b, err := os.ReadFile(filepath.Join(f.target(i), gd, "gitric", "audit.log"))
	if err != nil {
		return nil
	}
	var out []AuditEntry
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e AuditEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("host %d: audit line %q: %v", i+1, line, err)
		}
		out = append(out, e)
	}
	return out
}

// syncBuffer is an output many goroutines write to.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestUnitLocalLinkDeploy deploys twice to two local hosts through the
// local link: the engine, the host script and git, without sshd.
func TestUnitLocalLinkDeploy(t *testing.T) {
	t.Parallel()
	f := newUnitFleet(t, 2)
	v1 := f.src.Head(t)
	if _, err := Run(context.Background(), f.options()); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	// The HTTP check goes through the link's dialContext.
	var checks atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		checks.Add(1)
		fmt.Fprintf(w, "version %.7s\n", v2)
	}))
	t.Cleanup(srv.Close)
	opts := f.options()
	opts.Stage.HTTPCheck, opts.Stage.HTTPCheckVersion = srv.URL+"/health", true
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatalf("second deploy: %v", err)
	}
	for i := range f.names {
		if got := f.head(t, i, ModeInPlace); got != v2 {
			t.Errorf("host %d is on %q, want %s", i+1, got, v2)
		}
		if got := f.running(i); got != "v2\n" {
			t.Errorf("host %d serves %q", i+1, got)
		}
		if h := res.Hosts[i]; h.Outcome != OutcomeOK || h.From != v1 || h.To != v2 {
			t.Errorf("host %d: %+v", i+1, h)
		}
		if log := f.audit(t, i, ModeInPlace); len(log) != 2 || log[1].Result != OutcomeOK || log[1].To != v2 {
			t.Errorf("host %d audit log: %+v", i+1, log)
		}
	}
	if n := checks.Load(); n != 2 {
		t.Errorf("the HTTP check was requested %d times, want once per host", n)
	}
}

// TestUnitHTTPCheck requests URLs through a local link's dialContext.
func TestUnitHTTPCheck(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
			fmt.Fprintln(w, "version abc1234")
		case "/moved":
			http.Redirect(w, r, "http://example.com/", http.StatusFound)
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		path, version, in string // in: the error holds it; "" for none
	}{
		{path: "/ok"},
		{path: "/ok", version: "abc1234"},
		{path: "/ok", version: "def5678", in: "the old version may still be answering"},
		{path: "/down", in: "503 Service Unavailable"},
		{path: "/moved", in: "302 Found"}, // never followed off the host
	} {
		t.Run(strings.TrimPrefix(c.path, "/")+c.version, func(t *testing.T) {
			t.Parallel()
			err := httpCheck(context.Background(), localLink{name: "h1"}, srv.URL+c.path, c.version, 400*time.Millisecond)
			switch {
			case c.in == "" && err != nil:
				t.Errorf("%v", err)
			case c.in != "" && (err == nil || !strings.Contains(err.Error(), c.in)):
				t.Errorf("error %v, want one with %q", err, c.in)
			}
		})
	}
}
