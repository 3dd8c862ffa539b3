// Package example_test runs the README's walk-through for real: the
// example's magefile, through the mage pinned in go.mod, deploying to the
// embedded local host.
package example_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

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

// mage runs `go tool mage args...` in dir, as the README does.
func mage(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("go", append([]string{"tool", "mage"}, args...)...)
	cmd.Dir = dir
	cmd.Env = env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
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

	contains(run(true, "-l"), "allowDirty", "deploy", "forcePush", "local", "prod", "ref")

	head, _ := git(repo, "rev-parse", "--short", "HEAD")
	out := run(true, "local", "deploy")
	contains(out, "HEAD is now at "+head+" Initial commit", "hello started", "downtime")
	if _, err := os.Stat(filepath.Join(target, "example", "run", "hello.pid")); err != nil {
		t.Errorf("the example service was not started: %v", err)
	}
	contains(run(true, "local", "deploy"), "already on "+head)

	os.WriteFile(filepath.Join(repo, "dirty_working_copy"), nil, 0o644)
	contains(run(false, "local", "deploy"), "Working copy is dirty", "mage allowDirty local deploy")
	contains(run(true, "allowDirty", "local", "deploy"), "already on "+head)
	os.Remove(filepath.Join(repo, "dirty_working_copy"))

	// Amend the deployed commit: the push would lose history.
	os.WriteFile(filepath.Join(repo, "README.md"), []byte("# amended\n"), 0o644)
	git(repo, "add", "README.md")
	git(repo, "commit", "-q", "--amend", "-m", "Initial commit, amended")
	amended, _ := git(repo, "rev-parse", "HEAD")
	out = run(false, "local", "deploy")
	contains(out, amended+" is a non-fast-forward push", "mage forcePush local deploy")
	if got, _ := git(target, "rev-parse", "--short", "HEAD"); got != head {
		t.Errorf("the refused deploy moved the target to %s", got)
	}
	out = run(true, "forcePush", "local", "deploy")
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
