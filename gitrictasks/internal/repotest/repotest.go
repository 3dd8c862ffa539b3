// Package repotest makes throwaway git repositories for tests, with the
// real git command line.
package repotest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Repo is a working copy under a test's temporary directory.
type Repo struct {
	Dir string
}

// Env is the environment every git command of this package runs with:
// fixed identities and dates, and no user or system configuration. Any
// repository may be read, also one that belongs to another user (a test
// host's, made by a throwaway login user).
func Env() []string {
	return append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
	)
}

// RequireGit skips the test when the git command line is not installed,
// or, when the environment variable CI is "true", fails it: CI must never
// silently skip.
func RequireGit(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("git is required in CI: %v", err)
		}
		t.Skipf("git not installed: %v", err)
	}
}

// New initialises an empty repository (branch main) in a new directory.
func New(t testing.TB) *Repo {
	t.Helper()
	r := &Repo{Dir: t.TempDir()}
	r.Git(t, "init", "-q", "-b", "main")
	return r
}

// NewBare initialises an empty bare repository in a new directory, as a
// push target.
func NewBare(t testing.TB) *Repo {
	t.Helper()
	r := &Repo{Dir: t.TempDir()}
	r.Git(t, "init", "-q", "--bare", "-b", "main")
	return r
}

// AllowFileProtocol is the git option that lets submodules be cloned from
// local paths, which git refuses by default since 2.38.1.
const AllowFileProtocol = "protocol.file.allow=always"

// Clone clones src (a path) into a new directory, with extra git clone
// arguments such as "--recurse-submodules"; submodules may come from local
// paths.
func Clone(t testing.TB, src string, args ...string) *Repo {
	t.Helper()
	r := &Repo{Dir: t.TempDir()}
	args = append([]string{"-c", AllowFileProtocol, "clone", "-q"}, args...)
	if _, err := Git(r.Dir, append(args, src, ".")...); err != nil {
		t.Fatal(err)
	}
	return r
}

// AddSubmodule adds the repository at url (a local path will do) as a
// submodule named name, checked out at path, and stages it; commit it with
// Commit.
func (r *Repo) AddSubmodule(t testing.TB, name, url, path string) {
	t.Helper()
	r.Submodule(t, "add", "-q", "--name", name, url, path)
}

// Submodule runs git submodule with args ("update", "--init",
// "--recursive", say), allowing submodules from local paths.
func (r *Repo) Submodule(t testing.TB, args ...string) string {
	t.Helper()
	return r.Git(t, append([]string{"-c", AllowFileProtocol, "submodule"}, args...)...)
}

// Git runs git in the repository and returns its trimmed standard output;
// a failure fails the test with git's own message.
func (r *Repo) Git(t testing.TB, args ...string) string {
	t.Helper()
	out, err := Git(r.Dir, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Git runs git in dir.
func Git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = Env()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s in %s: %v: %s", strings.Join(args, " "), dir, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Write writes files (path relative to the repository: content).
func (r *Repo) Write(t testing.TB, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(r.Dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Commit writes files, stages everything and commits; it returns the new
// commit's hash.
func (r *Repo) Commit(t testing.TB, msg string, files map[string]string) string {
	t.Helper()
	r.Write(t, files)
	r.Git(t, "add", "-A")
	r.Git(t, "commit", "-q", "--allow-empty", "-m", msg)
	return r.Git(t, "rev-parse", "HEAD")
}

// Head is the hash HEAD points at.
func (r *Repo) Head(t testing.TB) string {
	t.Helper()
	return r.Git(t, "rev-parse", "HEAD")
}

// History appends n commits to branch main in one git fast-import run, each
// changing one of files files (file i%files gets a new line), so that a long
// history costs a fraction of a second to make. Every file is present from
// the first commit on.
func (r *Repo) History(t testing.TB, n, files int) {
	t.Helper()
	var in bytes.Buffer
	parent := ""
	if out, err := Git(r.Dir, "rev-parse", "-q", "--verify", "refs/heads/main"); err == nil {
		parent = out
	}
	contents := make([]string, files)
	for i := range contents {
		contents[i] = fmt.Sprintf("file %d\n%s", i, strings.Repeat(fmt.Sprintf("line of file %d\n", i), 20))
	}
	for c := 0; c < n; c++ {
		fmt.Fprintf(&in, "commit refs/heads/main\nmark :%d\n", c+1)
		fmt.Fprintf(&in, "committer Test <test@example.com> %d +0000\n", 1700000000+c)
		msg := fmt.Sprintf("commit %d", c)
		fmt.Fprintf(&in, "data %d\n%s\n", len(msg), msg)
		switch {
		case c > 0:
			fmt.Fprintf(&in, "from :%d\n", c)
		case parent != "":
			fmt.Fprintf(&in, "from %s\n", parent)
		}
		if c == 0 {
			for i, body := range contents {
				writeFile(&in, i, body)
			}
			continue
		}
		i := c % files
		contents[i] += fmt.Sprintf("change %d\n", c)
		writeFile(&in, i, contents[i])
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = r.Dir
	cmd.Env = Env()
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git fast-import: %v: %s", err, out)
	}
	r.Git(t, "reset", "-q", "--hard", "main")
}

func writeFile(in *bytes.Buffer, i int, body string) {
	fmt.Fprintf(in, "M 100644 inline %s\ndata %d\n%s\n", filePath(i), len(body), body)
}

// filePath spreads files over a few directories, as real trees are.
func filePath(i int) string {
	return fmt.Sprintf("dir%02d/sub%d/file%04d.txt", i%16, i%3, i)
}

// Snapshot describes a deploy target's whole state: HEAD, its branch,
// every ref, the status, and each working copy file with its content. Two
// equal snapshots mean nothing a deploy could change has changed.
func Snapshot(t testing.TB, dir string) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"rev-parse", "HEAD"}, {"symbolic-ref", "HEAD"}, {"status", "--porcelain", "--ignored"},
		{"for-each-ref", "--format=%(refname) %(objectname)"},
	} {
		out, _ := Git(dir, args...)
		b.WriteString(out + "|")
	}
	_ = filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && !strings.Contains(p, "/.git/") {
			c, _ := os.ReadFile(p)
			b.WriteString(p + "=" + string(c) + "|")
		}
		return nil
	})
	return b.String()
}

// ReceivePack starts a real git receive-pack on dir. Write the push to in,
// read its answers from out; wait closes in and waits for it to end.
func ReceivePack(t testing.TB, dir string) (in io.WriteCloser, out io.Reader, wait func() error) {
	t.Helper()
	cmd := exec.Command("git", "receive-pack", dir)
	cmd.Env = Env()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err = cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return in, out, func() error {
		in.Close()
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("git receive-pack: %v: %s", err, stderr.String())
		}
		return nil
	}
}
