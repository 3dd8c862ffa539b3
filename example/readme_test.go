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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
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
	t.Cleanup(func() {
		stop := exec.Command("sh", "example/hello.sh", "stop")
		stop.Dir = target
		stop.Run()
	})
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

	contains(run(true, "-l"), "gitric:allowDirty", "gitric:deploy", "gitric:forcePush", "gitric:local", "gitric:prod", "gitric:ref")
	contains(run(true, "-h", "gitric:deploy"), "GITRIC_HOSTS", "GITRIC_BATCH", "GITRIC_OUTPUT", "mage gitric:prod gitric:deploy\n")

	head, _ := git(repo, "rev-parse", "--short", "HEAD")
	out := run(true, "gitric:local", "gitric:deploy")
	contains(out, "HEAD is now at "+head+" Initial commit", "hello started", "downtime")
	if _, err := os.Stat(filepath.Join(target, "example", "run", "hello.pid")); err != nil {
		t.Errorf("the example service was not started: %v", err)
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
	if got, _ := git(target, "rev-parse", "--short", "HEAD"); got != head {
		t.Errorf("the refused deploy moved the target to %s", got)
	}
	out = run(true, "gitric:forcePush", "gitric:local", "gitric:deploy")
	contains(out, "hello stopped", "HEAD is now at "+amended[:7], "hello started")

	// Give the service a moment to write its first line from the new commit.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(filepath.Join(target, "example", "run", "hello.log")); strings.Contains(string(b), "hello from "+amended[:7]) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("the example service does not serve %s", amended[:7])
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
	t.Cleanup(func() {
		stop := exec.Command("sh", "example/hello.sh", "stop")
		stop.Dir = filepath.Join(repo, ".gitric", "local", "hello")
		stop.Run()
	})
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
	t.Cleanup(func() {
		stop := exec.Command("sh", "example/hello.sh", "stop")
		stop.Dir = filepath.Join(repo, ".gitric", "local", "hello")
		stop.Run()
	})
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
