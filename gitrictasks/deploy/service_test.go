package deploy_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// The end-to-end tests of a deployed service: Build, Shared, Env, HostEnv,
// Secrets, Once, Overlap and the HTTP check, against real sshd.

// deployTimeout turns a deploy that hangs into a failure (go test -timeout
// is the bound of the whole run).
const deployTimeout = 90 * time.Second

// runDeploy is deploy.Run bounded by deployTimeout.
func runDeploy(t *testing.T, opts deploy.DeployOptions) (*deploy.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deployTimeout)
	defer cancel()
	return deploy.Run(ctx, opts)
}

func mustDeploy(t *testing.T, opts deploy.DeployOptions) *deploy.Result {
	t.Helper()
	res, err := runDeploy(t, opts)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	return res
}

// liveHead is the commit a release-mode root's current link serves, or "".
func liveHead(root string) string {
	out, err := repotest.Git(filepath.Join(root, "current"), "rev-parse", "-q", "--verify", "HEAD")
	if err != nil {
		return ""
	}
	return out
}

// releases are the release directories under a release-mode root, sorted.
func releases(root string) []string {
	rels, _ := filepath.Glob(filepath.Join(root, "releases", "*"))
	sort.Strings(rels)
	return rels
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

// journal reads "word nanoseconds ..." lines that service commands append.
type journalLine struct {
	word string
	ns   int64
	rest string
}

func readJournal(t *testing.T, path string) []journalLine {
	t.Helper()
	var out []journalLine
	for _, l := range strings.Split(strings.TrimSpace(readFile(t, path)), "\n") {
		if l == "" {
			continue
		}
		f := strings.SplitN(l, " ", 3)
		if len(f) < 2 {
			t.Fatalf("%s: journal line %q", path, l)
		}
		ns, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			t.Fatalf("%s: journal line %q: %v", path, l, err)
		}
		jl := journalLine{word: f[0], ns: ns}
		if len(f) == 3 {
			jl.rest = f[2]
		}
		out = append(out, jl)
	}
	return out
}

func words(lines []journalLine) []string {
	var w []string
	for _, l := range lines {
		w = append(w, l.word)
	}
	return w
}

// note is a shell command that appends "WORD <ns> [REST]" to $HOME/journal.
func note(word, rest string) string {
	return `echo "` + word + ` $(date +%s%N) ` + rest + `" >> "$HOME/journal"`
}

// TestServiceReleaseFleet drives one release-mode fleet of three hosts
// through builds, a failing build, run-once and a missing shared file.
func TestServiceReleaseFleet(t *testing.T) {
	f := newFleet(t, 3)
	opts := f.options()
	opts.Stage.Mode = deploy.ModeRelease
	// The build fails on a host with $HOME/broken, and leaves an output.
	opts.Stage.Build = `if [ -f "$HOME/broken" ]; then echo "compiler says no on $HOME" >&2; exit 7; fi; ` +
		note("build", "$PWD") + `; echo built > built.txt`
	opts.Stage.Once = `test -f built.txt && ` + note("once", "$PWD")
	opts.Stage.Stop = note("stop", "$PWD") + `; rm -f running`
	opts.Stage.Start = note("start", "$PWD") + `; cp index.html running`
	journal := func(i int) string { return filepath.Join(f.Homes[i], "journal") }
	clear := func() {
		for i := range f.hosts {
			os.Remove(journal(i))
		}
	}
	mustDeploy(t, opts)
	v1 := f.src.Head(t)

	t.Run("build before stop, once between", func(t *testing.T) {
		clear()
		v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
		mustDeploy(t, opts)
		var lastBuild, firstStop, once int64
		onceHosts := 0
		for i := range f.hosts {
			root := f.target(i)
			if liveHead(root) != v2 {
				t.Errorf("host %d serves %.7s, want %.7s", i, liveHead(root), v2)
			}
			lines := readJournal(t, journal(i))
			want := []string{"build", "stop", "start"}
			if i == 0 {
				want = []string{"build", "once", "stop", "start"}
			}
			if got := words(lines); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("host %d ran %v, want %v", i, got, want)
			}
			live, _ := filepath.EvalSymlinks(filepath.Join(root, "current"))
			for _, l := range lines {
				switch l.word {
				case "build":
					lastBuild = max(lastBuild, l.ns)
					if l.rest != live {
						t.Errorf("host %d built in %s, not in the new release %s", i, l.rest, live)
					}
				case "stop":
					if firstStop == 0 || l.ns < firstStop {
						firstStop = l.ns
					}
					if l.rest == live {
						t.Errorf("host %d stopped in the new release", i)
					}
				case "once":
					once = l.ns
					onceHosts++
					if l.rest != live {
						t.Errorf("run-once ran in %s, not in the new release %s", l.rest, live)
					}
				}
			}
			if got := readFile(t, filepath.Join(root, "current", "built.txt")); got != "built\n" {
				t.Errorf("host %d: the live release lacks the build's output: %q", i, got)
			}
		}
		// One clock: the hosts are one machine.
		if !(lastBuild < once && once < firstStop) {
			t.Errorf("the last build (%d), run-once (%d) and first stop (%d) are out of order", lastBuild, once, firstStop)
		}
		if onceHosts != 1 {
			t.Errorf("run-once ran on %d hosts", onceHosts)
		}
		v1 = v2
	})

	t.Run("failing build on one host changes none", func(t *testing.T) {
		clear()
		before := make([][]string, len(f.hosts))
		for i := range f.hosts {
			before[i] = releases(f.target(i))
		}
		f.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
		f.failBuildOnHost1(t, opts)
		for i := range f.hosts {
			root := f.target(i)
			if h := liveHead(root); h != v1 {
				t.Errorf("host %d serves %.7s, want %.7s", i, h, v1)
			}
			if after := releases(root); strings.Join(after, " ") != strings.Join(before[i], " ") {
				t.Errorf("host %d releases %v, before %v: a prepared release was left behind", i, after, before[i])
			}
			for _, l := range readJournal(t, journal(i)) {
				if l.word != "build" {
					t.Errorf("host %d ran %s during a deploy whose build failed", i, l.word)
				}
			}
			if got := readFile(t, filepath.Join(root, "current", "running")); got != "v2\n" {
				t.Errorf("host %d serves %q", i, got)
			}
		}
	})

	t.Run("missing shared file refused before any cutover", func(t *testing.T) {
		clear()
		opts := opts
		opts.Stage.Shared = []string{".env", "data/"}
		for _, i := range []int{0, 2} {
			os.MkdirAll(filepath.Join(f.target(i), "shared"), 0o755)
			os.WriteFile(filepath.Join(f.target(i), "shared", ".env"), []byte("A=1\n"), 0o600)
		}
		before := make([][]string, len(f.hosts))
		for i := range f.hosts {
			before[i] = releases(f.target(i))
		}
		_, err := runDeploy(t, opts)
		if !errors.Is(err, deploy.ErrSharedMissing) {
			t.Fatalf("deploy with a shared file missing on host 1 = %v", err)
		}
		for _, want := range []string{f.hosts[1].Addr, ".env", "mkdir -p", "shared"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("the refusal does not say %q: %v", want, err)
			}
		}
		for i := range f.hosts {
			root := f.target(i)
			if h := liveHead(root); h != v1 {
				t.Errorf("host %d serves %.7s, want %.7s", i, h, v1)
			}
			if after := releases(root); strings.Join(after, " ") != strings.Join(before[i], " ") {
				t.Errorf("host %d releases %v, before %v", i, after, before[i])
			}
			if lines := readJournal(t, journal(i)); len(lines) > 0 && i == 1 {
				t.Errorf("host 1 (refused) ran %v", words(lines))
			}
			for _, l := range readJournal(t, journal(i)) {
				if l.word != "build" {
					t.Errorf("host %d ran %s during a refused deploy", i, l.word)
				}
			}
		}
		// Created as the refusal says, the deploy goes through.
		os.MkdirAll(filepath.Join(f.target(1), "shared"), 0o755)
		os.WriteFile(filepath.Join(f.target(1), "shared", ".env"), []byte("A=1\n"), 0o600)
		mustDeploy(t, opts)
		for i := range f.hosts {
			if got := readFile(t, filepath.Join(f.target(i), "current", ".env")); got != "A=1\n" {
				t.Errorf("host %d: current/.env = %q", i, got)
			}
			if fi, err := os.Stat(filepath.Join(f.target(i), "shared", "data")); err != nil || !fi.IsDir() {
				t.Errorf("host %d: shared/data/ was not created: %v", i, err)
			}
		}
	})
}

// TestServiceSharedSurvives deploys four times with Keep 2, shared paths
// written by the service, a build output and a commit that tracks a shared
// path, then rolls back: the shared data is there throughout.
func TestServiceSharedSurvives(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	root := f.target
	// The shared file exists before the first deploy, as it must.
	if err := os.MkdirAll(filepath.Join(root, "shared"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "shared", ".env"), []byte("KEY=kept\n"), 0o600)
	opts := f.options()
	opts.Stage.Mode = deploy.ModeRelease
	opts.Stage.Keep = 2
	opts.Stage.Shared = []string{".env", "data/"}
	opts.Stage.Build = "echo build > build.out" // an untracked output
	opts.Stage.Start = "cat index.html >> data/starts && cat .env >> data/env"
	var heads []string
	var starts string
	for i := 1; i <= 4; i++ {
		files := map[string]string{"index.html": fmt.Sprintf("v%d\n", i)}
		if i == 3 {
			files[".env"] = "KEY=tracked\n" // replaced by the link
		}
		heads = append(heads, f.src.Commit(t, fmt.Sprintf("v%d", i), files))
		mustDeploy(t, opts)
		starts += fmt.Sprintf("v%d\n", i)
		if got := liveHead(root); got != heads[i-1] {
			t.Fatalf("deploy %d: current on %.7s, want %.7s", i, got, heads[i-1])
		}
		if got := readFile(t, filepath.Join(root, "current", "data", "starts")); got != starts {
			t.Errorf("deploy %d: data/starts = %q, want %q", i, got, starts)
		}
		if got := readFile(t, filepath.Join(root, "current", ".env")); got != "KEY=kept\n" {
			t.Errorf("deploy %d: current/.env = %q", i, got)
		}
		if n := len(releases(root)); n > 2 {
			t.Errorf("deploy %d: %d releases kept, want at most 2", i, n)
		}
	}
	if !strings.Contains(f.out.String(), "warning: .env is tracked") {
		t.Errorf("no warning for the tracked shared path:\n%s", f.out)
	}
	if got := readFile(t, filepath.Join(root, "shared", "data", "env")); got != strings.Repeat("KEY=kept\n", 4) {
		t.Errorf("the service saw .env as %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deployTimeout)
	defer cancel()
	if _, err := deploy.Rollback(ctx, rollbackOptions(opts)); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if got := liveHead(root); got != heads[2] {
		t.Fatalf("after the rollback current is on %.7s, want %.7s", got, heads[2])
	}
	if got := readFile(t, filepath.Join(root, "current", "data", "starts")); got != starts+"v3\n" {
		t.Errorf("after the rollback data/starts = %q", got)
	}
	if got := readFile(t, filepath.Join(root, "current", ".env")); got != "KEY=kept\n" {
		t.Errorf("after the rollback current/.env = %q", got)
	}
	for _, p := range []string{".env", "data"} {
		if target, err := os.Readlink(filepath.Join(root, "current", p)); err != nil || target != filepath.Join(root, "shared", p) {
			t.Errorf("current/%s links to %q (%v)", p, target, err)
		}
	}
}

// TestServiceEnv checks that Env and HostEnv reach every command gitric
// runs on the hosts, the host's entry winning.
func TestServiceEnv(t *testing.T) {
	f := newFleet(t, 2)
	opts := f.options()
	opts.Stage.Env = map[string]string{"GREETING": "hello world", "WHO": "stage", "QUOTE": `it's "$HOME"`}
	opts.Stage.HostEnv = map[string]map[string]string{opts.Stage.Hosts[0]: {"WHO": "host0"}}
	rec := func(name string) string {
		return `printf '%s|%s|%s|%s\n' ` + name + ` "$GREETING" "$WHO" "$QUOTE" >> "$HOME/env.log"`
	}
	opts.Stage.Build = rec("build")
	opts.Stage.Once = rec("once")
	opts.Stage.Stop = rec("stop")
	opts.Stage.Start = rec("start")
	opts.Stage.Check = rec("check")
	mustDeploy(t, opts)
	f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	mustDeploy(t, opts)
	if !regexp.MustCompile(`downtime .*, build [0-9.]+m?s, start`).MatchString(f.out.String()) {
		t.Errorf("the in-place downtime line does not show the build:\n%s", f.out)
	}
	for i, who := range []string{"host0", "stage"} {
		got := readFile(t, filepath.Join(f.Homes[i], "env.log"))
		seen := map[string]bool{}
		for _, l := range strings.Split(strings.TrimSpace(got), "\n") {
			name, vals, _ := strings.Cut(l, "|")
			seen[name] = true
			if want := `hello world|` + who + `|it's "$HOME"`; vals != want {
				t.Errorf("host %d: %s saw %q, want %q", i, name, vals, want)
			}
		}
		want := []string{"build", "check", "start", "stop"}
		if i == 0 {
			want = []string{"build", "check", "once", "start", "stop"}
		}
		var names []string
		for n := range seen {
			names = append(names, n)
		}
		sort.Strings(names)
		if strings.Join(names, " ") != strings.Join(want, " ") {
			t.Errorf("host %d: commands that recorded their environment: %v, want %v", i, names, want)
		}
	}
}

// TestServiceSharedInPlace: in place, a shared path must be untracked,
// and is left as it is.
func TestServiceSharedInPlace(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	opts := f.options()
	opts.Stage.Shared = []string{"uploads/", "app.log"} // app.log: ignored (*.log)
	f.deploy(t, opts)
	os.MkdirAll(filepath.Join(f.target, "uploads"), 0o755)
	os.WriteFile(filepath.Join(f.target, "uploads", "photo.jpg"), []byte("jpeg"), 0o644)
	os.WriteFile(filepath.Join(f.target, "app.log"), []byte("log"), 0o644)
	v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	f.deploy(t, opts)
	if f.targetHead(t) != v2 || f.targetFile(t, "uploads/photo.jpg") != "jpeg" || f.targetFile(t, "app.log") != "log" {
		t.Errorf("the untracked shared paths did not survive the in-place deploy")
	}
	if fi, err := os.Lstat(filepath.Join(f.target, "uploads")); err != nil || fi.Mode()&os.ModeSymlink != 0 {
		t.Errorf("uploads/ was replaced in place: %v", err)
	}

	opts.Stage.Shared = []string{"index.html"}
	f.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
	_, err := runDeploy(t, opts)
	if !errors.Is(err, deploy.ErrInvalidOptions) || !strings.Contains(err.Error(), "index.html") {
		t.Fatalf("in place, a tracked shared path = %v", err)
	}
	if f.targetHead(t) != v2 {
		t.Errorf("the refused deploy moved the host")
	}
}

// randomHex is a value no other test or process has.
func randomHex(t *testing.T) string {
	t.Helper()
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// setSecret sets a uniquely named local environment variable for the test
// (t.Setenv is not allowed in parallel tests; the name is the test's own).
func setSecret(t *testing.T, value string) string {
	t.Helper()
	name := "GITRIC_TEST_SECRET_" + strings.ToUpper(randomHex(t))
	os.Setenv(name, value)
	t.Cleanup(func() { os.Unsetenv(name) })
	return name
}

func TestServiceSecrets(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	value := "s3cr3t-" + randomHex(t)
	name := setSecret(t, value)
	opts := f.options()
	opts.Stage.Secrets = []string{name}
	opts.Message = "with a secret"
	opts.Stage.Start = `echo "the token is $` + name + `" >&2; printf '%s' "$` + name + `" > secret.out; sleep 1`

	// Sample every process's command line while the deploy runs.
	ctx, cancel := context.WithTimeout(context.Background(), deployTimeout)
	defer cancel()
	var samples, sawSleep atomic.Int64
	var leak atomic.Value
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			out, err := exec.CommandContext(ctx, "ps", "-eo", "args").Output()
			if err == nil {
				samples.Add(1)
				for _, l := range strings.Split(string(out), "\n") {
					if strings.Contains(l, value) {
						leak.CompareAndSwap(nil, l)
					}
					if strings.TrimSpace(l) == "sleep 1" {
						sawSleep.Add(1)
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	_, err := deploy.Run(ctx, opts)
	cancel()
	<-sampled
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	if got := f.targetFile(t, "secret.out"); got != value {
		t.Errorf("the start command saw the secret as %q", got)
	}
	if l := leak.Load(); l != nil {
		t.Errorf("the secret is on a command line: %q", l)
	}
	if sawSleep.Load() == 0 || samples.Load() < 10 {
		t.Errorf("%d ps samples, %d of them during the start command: the sampling missed the deploy", samples.Load(), sawSleep.Load())
	}
	out := f.out.String()
	if strings.Contains(out, value) || !strings.Contains(out, "the token is ***") {
		t.Errorf("the deploy output does not mask the secret:\n%s", out)
	}
	audit := readFile(t, filepath.Join(f.target, ".git", "gitric", "audit.log"))
	if audit == "" || strings.Contains(audit, value) {
		t.Errorf("audit log holds the secret (or nothing): %q", audit)
	}
	// Nothing under gitric's directory keeps it either (the start log).
	filepath.Walk(filepath.Join(f.target, ".git", "gitric"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && strings.Contains(readFile(t, p), value) {
			t.Errorf("%s holds the secret", p)
		}
		return nil
	})

	// A rollback starts the service too: with the secret, masked again.
	if err := os.Remove(filepath.Join(f.target, "secret.out")); err != nil {
		t.Fatal(err)
	}
	f.src.Commit(t, "second", map[string]string{"index.html": "v2\n"})
	opts.Message = ""
	f.deploy(t, opts)
	f.out.Reset()
	if _, err := deploy.Rollback(context.Background(), rollbackOptions(opts)); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	if got := f.targetFile(t, "secret.out"); got != value {
		t.Errorf("the start command of the rollback saw the secret as %q", got)
	}
	if out := f.out.String(); strings.Contains(out, value) || !strings.Contains(out, "the token is ***") {
		t.Errorf("the rollback output does not mask the secret:\n%s", out)
	}

	t.Run("missing secret", func(t *testing.T) {
		opts := f.options()
		opts.Stage.Path = filepath.Join(t.TempDir(), "never")
		// Contacting this host would fail with ErrUnreachable instead.
		opts.Stage.Hosts = []string{"root@" + sshdtest.ClosedPort(t)}
		opts.Stage.Secrets = []string{name, "GITRIC_TEST_UNSET_" + strings.ToUpper(randomHex(t))}
		_, err := runDeploy(t, opts)
		if !errors.Is(err, deploy.ErrSecretMissing) || errors.Is(err, deploy.ErrUnreachable) {
			t.Fatalf("deploy with an unset secret = %v", err)
		}
		if !strings.Contains(err.Error(), opts.Stage.Secrets[1]) || strings.Contains(err.Error(), name) {
			t.Errorf("the refusal does not name just the missing secret: %v", err)
		}
	})
}

// TestServiceOnce runs the run-once command of in-place deploys on a fleet
// of three: on the first host, or the first of the primary role; its
// failure cuts no host over.
func TestServiceOnce(t *testing.T) {
	f := newFleet(t, 3)
	base := f.options()
	base.Stage.Once = `git rev-parse HEAD >> "$HOME/once.log"`
	mustDeploy(t, base)
	tests := []struct {
		name  string
		roles map[string][]string
		want  int
	}{
		{"first host", nil, 0},
		{"first host of the primary role", map[string][]string{"web": base.Stage.Hosts[:2], "primary": {base.Stage.Hosts[2], base.Stage.Hosts[1]}}, 2},
		{"other roles only", map[string][]string{"worker": base.Stage.Hosts[1:]}, 0},
	}
	for n, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range f.hosts {
				os.Remove(filepath.Join(f.Homes[i], "once.log"))
			}
			opts := base
			opts.Stage.Roles = tt.roles
			v := f.src.Commit(t, tt.name, map[string]string{"index.html": fmt.Sprintf("v%d\n", n+2)})
			mustDeploy(t, opts)
			for i := range f.hosts {
				want := ""
				if i == tt.want {
					want = v + "\n"
				}
				if got := readFile(t, filepath.Join(f.Homes[i], "once.log")); got != want {
					t.Errorf("host %d: run-once log %q, want %q", i, got, want)
				}
				if _, err := os.Stat(filepath.Join(f.target(i), ".git", "gitric", "once")); !os.IsNotExist(err) {
					t.Errorf("host %d: the run-once scratch checkout was left behind (%v)", i, err)
				}
			}
		})
	}

	t.Run("failure cuts no host over", func(t *testing.T) {
		opts := base
		opts.Stage.Once = `echo "migration 42 failed" >&2; exit 4`
		heads := make([]string, len(f.hosts))
		for i := range f.hosts {
			heads[i] = f.head(t, i)
		}
		served := f.running(0)
		never := f.src.Commit(t, "v-once-fails", map[string]string{"index.html": "never\n"})
		_, err := runDeploy(t, opts)
		var he *deploy.HostError
		if !errors.As(err, &he) || he.Step != "once" || !strings.Contains(err.Error(), "exit status 4") {
			t.Fatalf("deploy with a failing run-once = %v", err)
		}
		if !strings.Contains(f.out.String(), "migration 42 failed") {
			t.Errorf("output lacks the run-once command's last lines")
		}
		for i := range f.hosts {
			if h := f.head(t, i); h != heads[i] {
				t.Errorf("host %d moved to %.7s", i, h)
			}
			if got := f.running(i); got != served {
				t.Errorf("host %d serves %q, want %q: a service command ran", i, got, served)
			}
			for _, e := range f.audit(t, i) {
				if e.To == never && e.Result == deploy.OutcomeOK {
					t.Errorf("host %d audit records the deploy as done: %+v", i, e)
				}
			}
		}
		f.unlocked(t)
	})
}

// ---- the HTTP service ---------------------------------------------------

var serverBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// TestMain removes the test server's binary after the run.
func TestMain(m *testing.M) {
	code := m.Run()
	if serverBinary.dir != "" {
		os.RemoveAll(serverBinary.dir)
	}
	os.Exit(code)
}

// buildServer compiles testdata/server once per test run.
func buildServer(t *testing.T) string {
	t.Helper()
	serverBinary.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			serverBinary.err = err
			return
		}
		if serverBinary.dir, err = os.MkdirTemp("", "gitric-server-"); err != nil {
			serverBinary.err = err
			return
		}
		serverBinary.path = filepath.Join(serverBinary.dir, "server")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goTool, "build", "-o", serverBinary.path, "./testdata/server")
		if out, err := cmd.CombinedOutput(); err != nil {
			serverBinary.err = fmt.Errorf("go build ./testdata/server: %v\n%s", err, out)
		}
	})
	if serverBinary.err != nil {
		t.Fatal(serverBinary.err)
	}
	return serverBinary.path
}

// withServer makes opts deploy the test server: built (copied) into the
// working copy, started in the background, stopped by its pid file, and
// checked over HTTP. It returns the URL, and kills every server left
// under root when the test ends.
func withServer(t *testing.T, opts *deploy.DeployOptions, root string) string {
	t.Helper()
	bin := buildServer(t)
	addr := sshdtest.ClosedPort(t)
	_, port, _ := net.SplitHostPort(addr)
	url := "http://" + addr + "/"
	opts.Stage.Env = map[string]string{"PORT": port, "SERVER_BIN": bin}
	opts.Stage.Build = `cp "$SERVER_BIN" server`
	opts.Stage.Start = `nohup ./server >>server.log 2>&1 & ` +
		// Up when it has written its pid file.
		`i=0; while [ ! -f server.pid ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; test -f server.pid`
	opts.Stage.Stop = `[ ! -f server.pid ] || { kill "$(cat server.pid)"; ` +
		`i=0; while [ -f server.pid ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; test ! -f server.pid; }`
	opts.Stage.HTTPCheck = url
	opts.Stage.HTTPCheckVersion = true
	opts.CheckTimeout = 3 * time.Second
	t.Cleanup(func() {
		filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Name() == "server.pid" {
				if pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, p))); err == nil {
					if proc, err := os.FindProcess(pid); err == nil {
						proc.Kill()
					}
				}
			}
			return nil
		})
	})
	return url
}

// get is one request with a connection of its own; it returns the body.
func get(client *http.Client, url string) (string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", resp.Status, b)
	}
	return string(b), nil
}

func newClient() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

// TestServiceOverlap deploys a real HTTP service (SO_REUSEPORT, graceful
// stop) in overlap mode several times while a client requests it: not one
// request fails.
func TestServiceOverlap(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	root := f.target
	opts := f.options()
	opts.Stage.Mode = deploy.ModeRelease
	opts.Stage.Overlap = true
	opts.Stage.Keep = 3
	url := withServer(t, &opts, root)
	f.src.Commit(t, "ignore the service's files", map[string]string{".gitignore": "*.log\nserver\nserver.pid*\n"})
	mustDeploy(t, opts)
	client := newClient()
	if body, err := get(client, url); err != nil || body != "version "+f.src.Head(t)[:7]+"\n" {
		t.Fatalf("the first deploy serves %q (%v)", body, err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), deployTimeout)
	defer cancel()
	var ok, failed atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 50000 && ctx.Err() == nil; i++ {
			if _, err := get(client, url); err != nil {
				failed.Add(1)
				firstFailure.CompareAndSwap(nil, err.Error())
			} else {
				ok.Add(1)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	const deploys = 6
	var last string
	for i := range deploys {
		last = f.src.Commit(t, fmt.Sprintf("v%d", i+2), map[string]string{"index.html": fmt.Sprintf("v%d\n", i+2)})
		res := mustDeploy(t, opts)
		if d := res.Hosts[0].Downtime; d != 0 {
			t.Errorf("deploy %d: downtime %v in overlap mode", i+2, d)
		}
		if body, err := get(client, url); err != nil || body != "version "+last[:7]+"\n" {
			t.Errorf("deploy %d: the service answers %q (%v), want the new version", i+2, body, err)
		}
	}
	cancel()
	wg.Wait()
	if failed.Load() > 0 || ok.Load() < 100 {
		t.Errorf("%d of %d requests failed during %d overlap deploys (first: %v)", failed.Load(), failed.Load()+ok.Load(), deploys, firstFailure.Load())
	}
	if got := liveHead(root); got != last {
		t.Errorf("current on %.7s, want %.7s", got, last)
	}
	// Only the live release's server runs: each old one was stopped.
	pids, _ := filepath.Glob(filepath.Join(root, "releases", "*", "server.pid"))
	live, _ := filepath.EvalSymlinks(filepath.Join(root, "current"))
	if len(pids) != 1 || filepath.Dir(pids[0]) != live {
		t.Errorf("servers running: %v; want only the live one in %s", pids, live)
	}
	audit := readFile(t, filepath.Join(root, "repo", "gitric", "audit.log"))
	lines := strings.Split(strings.TrimSpace(audit), "\n")
	if len(lines) != deploys+1 {
		t.Fatalf("%d audit lines, want %d", len(lines), deploys+1)
	}
	for _, l := range lines[1:] {
		if !strings.Contains(l, `"cutover":"overlap"`) || !strings.Contains(l, `"downtime_ms":0}`) || !strings.Contains(l, `"result":"ok"`) {
			t.Errorf("audit line %s", l)
		}
	}
	if !strings.Contains(f.out.String(), "overlap: no downtime") {
		t.Errorf("output does not report the overlap")
	}

	t.Run("a new version failing its HTTP check is stopped; the old one serves on", func(t *testing.T) {
		// (Without the client: this server steers new connections to the
		// new listener, whose accept queue its stop may then reset.)
		bad := f.src.Commit(t, "stale", map[string]string{"broken": "x"})
		res, err := runDeploy(t, opts)
		if err == nil || !strings.Contains(err.Error(), "HTTP check failed") || !strings.Contains(err.Error(), bad[:7]) {
			t.Fatalf("overlap deploy of a version that answers as another = %v", err)
		}
		if got := res.Hosts[0].Outcome; got != deploy.OutcomeFailed {
			t.Errorf("outcome %q", got)
		}
		if got := liveHead(root); got != last {
			t.Errorf("current moved to %.7s", got)
		}
		if body, err := get(client, url); err != nil || body != "version "+last[:7]+"\n" {
			t.Errorf("the service answers %q (%v), want the old version", body, err)
		}
		if pids, _ := filepath.Glob(filepath.Join(root, "releases", "*", "server.pid")); len(pids) != 1 || filepath.Dir(pids[0]) != live {
			t.Errorf("servers running: %v; want only the old one in %s", pids, live)
		}
		if !strings.Contains(readFile(t, filepath.Join(root, "repo", "gitric", "audit.log")), "the old release kept serving") {
			t.Errorf("the audit log does not say the old release kept serving")
		}
	})
}

// TestServiceHTTPCheckRollsBack deploys a version whose service answers
// with another version: the HTTP check refuses it and the host rolls back,
// serving the old version again.
func TestServiceHTTPCheckRollsBack(t *testing.T) {
	for _, mode := range []deploy.Mode{deploy.ModeInPlace, deploy.ModeRelease} {
		t.Run(string(mode), func(t *testing.T) {
			f := newFixture(t, sshdtest.Options{})
			root := f.target
			opts := f.options()
			opts.Stage.Mode = mode
			url := withServer(t, &opts, root)
			v1 := f.src.Head(t)
			mustDeploy(t, opts)
			client := newClient()
			if body, err := get(client, url); err != nil || body != "version "+v1[:7]+"\n" {
				t.Fatalf("the first deploy serves %q (%v)", body, err)
			}
			// broken makes the new version answer "version stale".
			v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n", "broken": "x"})
			res, err := runDeploy(t, opts)
			if !errors.Is(err, deploy.ErrRolledBack) || !strings.Contains(err.Error(), "HTTP check failed") {
				t.Fatalf("deploy of a version that answers as another = %v", err)
			}
			if !strings.Contains(err.Error(), v2[:7]) {
				t.Errorf("the error does not name the sha it wanted: %v", err)
			}
			if got := res.Hosts[0].Outcome; got != deploy.OutcomeRolledBack {
				t.Errorf("outcome %q", got)
			}
			head := f.targetHead(t)
			if mode == deploy.ModeRelease {
				head = liveHead(root)
			}
			if head != v1 {
				t.Errorf("the host is on %.7s after the rollback, want %.7s", head, v1)
			}
			if body, err := get(client, url); err != nil || body != "version "+v1[:7]+"\n" {
				t.Errorf("after the rollback the service answers %q (%v), want %s", body, err, v1[:7])
			}
		})
	}
}
