// Package example_test runs the README's walk-through for real: the
// example's magefile, through the mage pinned in go.mod, deploying to the
// embedded local host.
package example_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mageCache is where this test process's mage keeps the magefiles it
// compiles: mage names a compiled magefile after the hash of the magefile
// alone, not of the packages it imports, so a shared cache would run a
// binary built from older gitrictasks code.
var mageCache string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gitric-mage-cache")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mageCache = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// git runs git in dir with a fixed identity and no user configuration.
func git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = env()
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		err = fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
	}
	return strings.TrimSpace(string(out)), err
}

func env() []string {
	return append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
		"MAGEFILE_CACHE="+mageCache,
	)
}

// workingCopy copies the module as it is now (tracked and untracked files
// that are not ignored) into a fresh repository with one commit, so the test
// deploys the code under test and never touches the developer's tree.
func workingCopy(t *testing.T) string {
	t.Helper()
	top, err := git(".", "rev-parse", "--show-toplevel")
	if err != nil {
		t.Fatal(err)
	}
	files, err := git(top, "ls-files", "-co", "--exclude-standard", "-z")
	if err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	for _, name := range strings.Split(files, "\x00") {
		if name == "" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(top, name))
		if os.IsNotExist(err) {
			continue // deleted in the working tree
		}
		if err != nil {
			t.Fatal(err)
		}
		info, _ := os.Stat(filepath.Join(top, name))
		p := filepath.Join(dst, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "Initial commit"}} {
		if _, err := git(dst, args...); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// mage runs `go tool mage args...` in dir, as the README does, and
// returns its output, stdout and stderr together.
func mage(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := mageTo(t, dir, nil, &out, &out, args...)
	return out.String(), err
}

// mageTo runs `go tool mage args...` in dir with more environment, and
// fails the test if it takes longer than a few minutes (the first run
// compiles the magefile).
func mageTo(t *testing.T, dir string, environ []string, stdout, stderr io.Writer, args ...string) error {
	t.Helper()
	return mageWithin(t, 3*time.Minute, dir, environ, stdout, stderr, args...)
}

// mageWithin is mageTo with its own bound.
func mageWithin(t *testing.T, timeout time.Duration, dir string, environ []string, stdout, stderr io.Writer, args ...string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", append([]string{"tool", "mage"}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(env(), environ...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("mage %s did not finish in time", strings.Join(args, " "))
	}
	return err
}

func TestReadmeWalkthrough(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example's magefile")
	}
	repo := workingCopy(t)
	example := filepath.Join(repo, "example")
	target := filepath.Join(repo, ".gitric", "local", "hello")
	port := servicePort(t)
	stopService(t, target)
	run := func(wantOK bool, args ...string) string {
		t.Helper()
		out, err := mage(t, example, args...)
		if (err == nil) != wantOK {
			t.Fatalf("mage %s: err %v, want success %v; output:\n%s", strings.Join(args, " "), err, wantOK, out)
		}
		return out
	}
	contains := func(out string, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
	}

	contains(run(true, "-l"), "demo", "gitric:allowDirty", "gitric:deploy", "gitric:forcePush", "gitric:local", "gitric:prod", "gitric:ref")
	contains(run(true, "-h", "gitric:deploy"), "GITRIC_HOSTS", "GITRIC_BATCH", "GITRIC_OUTPUT", "mage gitric:prod gitric:deploy\n")

	head, _ := git(repo, "rev-parse", "--short", "HEAD")
	out := run(true, "gitric:local", "gitric:deploy")
	contains(out, "built bin/hello locally", "hello started", "downtime", "current is now releases/", head+" Initial commit")
	if _, err := os.Stat(filepath.Join(target, "current", "hello.pid")); err != nil {
		t.Errorf("the example service was not started: %v", err)
	}
	if body, err := health(port); err != nil || !strings.Contains(body, head) {
		t.Errorf("the example service answers /health with %q, %v; want %s", body, err, head)
	}
	contains(run(true, "gitric:local", "gitric:deploy"), "already on "+head)

	os.WriteFile(filepath.Join(repo, "dirty_working_copy"), nil, 0o644)
	contains(run(false, "gitric:local", "gitric:deploy"), "Working copy is dirty", "mage gitric:allowDirty gitric:local gitric:deploy")
	contains(run(false, "gitric:local", "gitric:deploy", "gitric:allowDirty"), "put it before gitric:deploy: mage gitric:allowDirty gitric:local gitric:deploy")
	contains(run(true, "gitric:allowDirty", "gitric:local", "gitric:deploy"), "already on "+head)
	os.Remove(filepath.Join(repo, "dirty_working_copy"))

	// Amend the deployed commit: the push would lose history.
	os.WriteFile(filepath.Join(repo, "README.md"), []byte("# amended\n"), 0o644)
	git(repo, "add", "README.md")
	git(repo, "commit", "-q", "--amend", "-m", "Initial commit, amended")
	amended, _ := git(repo, "rev-parse", "HEAD")
	out = run(false, "gitric:local", "gitric:deploy")
	contains(out, amended+" is a non-fast-forward push", "mage gitric:forcePush gitric:local gitric:deploy")
	// The live release runs gitric's deploy commit of head (with the binary).
	if got, _ := git(filepath.Join(target, "current"), "log", "-1", "--format=%s"); !strings.Contains(got, "gitric deploy of "+head) {
		t.Errorf("the refused deploy moved the live release to %s", got)
	}
	out = run(true, "gitric:forcePush", "gitric:local", "gitric:deploy")
	contains(out, "hello started", "hello stopped", "overlap: no downtime", "current is now releases/", amended[:7]+" Initial commit, amended")
	// The HTTP check passed, so the new version answers already.
	if body, err := health(port); err != nil || !strings.Contains(body, amended[:7]) {
		t.Errorf("the example service answers /health with %q, %v; want %s", body, err, amended[:7])
	}
	contains(run(true, "gitric:local", "gitric:status"), "matches local "+amended[:7], "no drift")
}

// TestRootImport imports gitrictasks with no namespace, as the README
// mentions: the targets and every hint lose the gitric: prefix.
func TestRootImport(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example's magefile")
	}
	repo := workingCopy(t)
	example := filepath.Join(repo, "example")
	mf := filepath.Join(example, "magefile.go")
	b, err := os.ReadFile(mf)
	if err != nil {
		t.Fatal(err)
	}
	root := strings.Replace(string(b), "//mage:import gitric\n", "//mage:import\n", 1)
	if root == string(b) {
		t.Fatal("the example's magefile no longer imports gitrictasks as gitric")
	}
	os.WriteFile(mf, []byte(root), 0o644)
	git(repo, "commit", "-q", "-a", "-m", "Root import")
	servicePort(t)
	stopService(t, filepath.Join(repo, ".gitric", "local", "hello"))
	os.WriteFile(filepath.Join(repo, "dirty_working_copy"), nil, 0o644)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"local", "deploy"}, "anyway, leaving these out: mage allowDirty local deploy"},
		{[]string{"local", "deploy", "allowDirty"}, "put it before deploy: mage allowDirty local deploy"},
		{[]string{"deploy", "local"}, "put it before deploy: mage local deploy"},
	} {
		out, err := mage(t, example, tt.args...)
		if err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("mage %s: err %v, want a refusal that says %q:\n%s", strings.Join(tt.args, " "), err, tt.want, out)
		}
	}
}

// TestJSONOutput checks that with GITRIC_OUTPUT=json every line on stdout
// is a JSON object, for a deploy and for a refusal, whose error is a JSON
// line too (mage prints it on stderr as well, and exits non-zero).
func TestJSONOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example's magefile")
	}
	repo := workingCopy(t)
	example := filepath.Join(repo, "example")
	servicePort(t)
	stopService(t, filepath.Join(repo, ".gitric", "local", "hello"))
	jsonEnv := []string{"GITRIC_OUTPUT=json"}
	lines := func(stdout string) []map[string]any {
		t.Helper()
		var objs []map[string]any
		for _, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
			var v map[string]any
			if err := json.Unmarshal([]byte(line), &v); err != nil {
				t.Errorf("stdout line is not JSON: %q (%v)", line, err)
			}
			objs = append(objs, v)
		}
		return objs
	}
	var stdout, stderr bytes.Buffer
	if err := mageTo(t, example, jsonEnv, &stdout, &stderr, "gitric:local", "gitric:deploy"); err != nil {
		t.Fatalf("deploy: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	objs := lines(stdout.String())
	if len(objs) < 3 || !strings.HasPrefix(fmt.Sprint(objs[0]["msg"]), "local host: SSH server on") || objs[len(objs)-1]["summary"] != true {
		t.Errorf("unexpected deploy output:\n%s", stdout.String())
	}

	os.WriteFile(filepath.Join(repo, "dirty_working_copy"), nil, 0o644)
	for _, args := range [][]string{{"gitric:local", "gitric:deploy"}, {"gitric:local", "gitric:deploy", "gitric:forcePush"}} {
		stdout.Reset()
		stderr.Reset()
		err := mageTo(t, example, jsonEnv, &stdout, &stderr, args...)
		if code := exitCode(err); code != 10 { // gitrictasks.ExitRefused
			t.Errorf("mage %s: exit code %d, want 10 (refused)", strings.Join(args, " "), code)
		}
		objs := lines(stdout.String())
		last := objs[len(objs)-1]
		if last["level"] != "error" || !strings.Contains(fmt.Sprint(last["msg"]), "mage gitric:") {
			t.Errorf("mage %s: the last line is not the error: %v\n%s", strings.Join(args, " "), last, stdout.String())
		}
		if !strings.Contains(stderr.String(), "Error: ") {
			t.Errorf("mage %s: mage did not report the error on stderr: %q", strings.Join(args, " "), stderr.String())
		}
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// servicePort gives the example service a free port of its own for this
// test (HELLO_PORT, which the magefile reads), so that tests and a
// developer's running example never share one, and returns it.
func servicePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	ln.Close()
	t.Setenv("HELLO_PORT", port)
	return port
}

// stopService stops the example service that serves the release current
// of the local stage's target, as the stage's Stop does, when the test
// ends: it sends SIGTERM to the pid in hello.pid and waits (bounded) until
// the service removed it.
func stopService(t *testing.T, target string) {
	t.Cleanup(func() {
		pidFile := filepath.Join(target, "current", "hello.pid")
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return
		}
		syscall.Kill(pid, syscall.SIGTERM)
		for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if _, err := os.Stat(pidFile); err != nil {
				return
			}
		}
		t.Errorf("the example service (pid %d) did not stop within 15s", pid)
	})
}

// health is the body of the example service's /health on port, or the
// error.
func health(port string) (string, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get("http://127.0.0.1:" + port + "/health")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s", resp.Status)
	}
	return string(b), err
}

// demoRow is a line of the demo's table: "  <version> <requests> <first>..<last>".
var demoRow = regexp.MustCompile(`(?m)^  ([0-9a-f]{7}) +(\d+)  (\d+)\.\.(\d+)$`)

// TestDemo runs go tool mage demo, whose output the README shows: three
// deploys under a client loop that never fails, sees the version change,
// and a counter that goes on across deploys.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the example's magefile and deploys three times")
	}
	repo := workingCopy(t)
	var out bytes.Buffer
	if err := mageWithin(t, 8*time.Minute, filepath.Join(repo, "example"), nil, &out, &out, "demo"); err != nil {
		t.Fatalf("mage demo: %v\n%s", err, out.String())
	}
	s := out.String()
	m := regexp.MustCompile(`client: (\d+) requests in \S+, (\d+) failed`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("the demo printed no client summary:\n%s", s)
	}
	if requests, _ := strconv.Atoi(m[1]); m[2] != "0" || requests < 10 {
		t.Errorf("the client made %s requests, %s failed; want some, none failed:\n%s", m[1], m[2], s)
	}
	rows := demoRow.FindAllStringSubmatch(s, -1)
	if len(rows) < 2 {
		t.Fatalf("the client saw %d version(s), want 2 or more:\n%s", len(rows), s)
	}
	var last int64
	seen := map[string]bool{}
	for _, r := range rows {
		first, _ := strconv.ParseInt(r[3], 10, 64)
		end, _ := strconv.ParseInt(r[4], 10, 64)
		if first != last+1 || end < first || seen[r[1]] {
			t.Errorf("version %s answered with counter %d..%d after %d: want the counter to go on by one, each version once:\n%s", r[1], first, end, last, s)
		}
		seen[r[1]] = true
		last = end
	}
	if strings.Count(s, "overlap: no downtime") != 2 || !strings.Contains(s, "removed the clone") {
		t.Errorf("want two overlapping deploys and a clean end:\n%s", s)
	}
}
