package localrepo

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing/format/index"

	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

// gitChanges is what git status says is dirty in dir, in Changes' shape:
// each path named (both of a rename), sorted. It runs without optional
// locks, so that git does not refresh the index, and ignores changes
// inside submodules, which Changes does not look for.
func gitChanges(t *testing.T, dir string, opts StatusOptions) []string {
	t.Helper()
	untracked := "--untracked-files=all"
	if opts.IgnoreUntracked {
		untracked = "--untracked-files=no"
	}
	cmd := exec.Command("git", "--no-optional-locks", "status", "--porcelain=v1", "-z", "--ignore-submodules=dirty", untracked)
	cmd.Dir, cmd.Env = dir, repotest.Env()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git status in %s: %v", dir, err)
	}
	var paths []string
	recs := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	for i := 0; i < len(recs); i++ {
		if recs[i] == "" {
			continue
		}
		paths = append(paths, recs[i][3:])
		if recs[i][0] == 'R' || recs[i][0] == 'C' { // the original path follows
			i++
			paths = append(paths, recs[i])
		}
	}
	slices.Sort(paths)
	return slices.Compact(paths)
}

// settle makes the working copy's files an hour old and has git refresh
// the index, so that no entry is racily clean: the state of a checkout
// made a while ago, which Changes answers from stat data alone.
func settle(t testing.TB, src *repotest.Repo) {
	t.Helper()
	old := time.Now().Add(-time.Hour)
	err := filepath.WalkDir(src.Dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			return os.Chtimes(p, old, old)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	repotest.Git(src.Dir, "update-index", "-q", "--refresh") // exits 1 when something is modified
}

// rewrite changes a file's content, keeping its size and mtime (only the
// ctime tells).
func rewrite(t *testing.T, path, content string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// racyRewrite leaves a.txt's index entry racy: its stat data refreshed
// with the file's mtime at at (core.trustctime off, so that only git's racy
// check can tell), then content written with that mtime restored, and the
// index's own mtime set to indexAt.
func racyRewrite(t *testing.T, src *repotest.Repo, at, indexAt time.Time, content string) {
	t.Helper()
	src.Git(t, "config", "core.trustctime", "false")
	a := filepath.Join(src.Dir, "a.txt")
	os.Chtimes(a, at, at)
	src.Git(t, "update-index", "-q", "--refresh")
	rewrite(t, a, content)
	os.Chtimes(filepath.Join(src.Dir, ".git", "index"), indexAt, indexAt)
}

// dropCacheTree rewrites the index of src without its extensions (go-git
// writes none), so without a cache-tree.
func dropCacheTree(t *testing.T, src *repotest.Repo) {
	t.Helper()
	p := filepath.Join(src.Dir, ".git", "index")
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var idx index.Index
	if err := index.NewDecoder(bytes.NewReader(data)).Decode(&idx); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := index.NewEncoder(&buf).Encode(&idx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if ix, err := readIndex(p); err != nil || ix.tree != nil {
		t.Fatalf("index still has a cache-tree (%v)", err)
	}
}

// addSubmodule adds a submodule at libs/s to src, commits it and settles.
func addSubmodule(t *testing.T, src *repotest.Repo) {
	t.Helper()
	sub := repotest.New(t)
	sub.Commit(t, "sub", map[string]string{"s.txt": "s\n"})
	src.AddSubmodule(t, "s", sub.Dir, "libs/s")
	src.Commit(t, "add s", nil)
	settle(t, src)
}

func TestChangesMatchGit(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no configuration or excludes from the machine
	t.Setenv("XDG_CONFIG_HOME", "")
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	untracked, tracked := StatusOptions{}, StatusOptions{IgnoreUntracked: true}
	write := func(t *testing.T, src *repotest.Repo, files map[string]string) { src.Write(t, files) }
	path := func(src *repotest.Repo, p string) string { return filepath.Join(src.Dir, filepath.FromSlash(p)) }
	tests := []struct {
		name string
		// change makes the state from the base repository (settled); it
		// returns the directory to open, "" for src's.
		change   func(t *testing.T, src *repotest.Repo) string
		opts     StatusOptions
		want     []string
		fallback bool // go-git's Status makes the answer
	}{
		{"clean", func(*testing.T, *repotest.Repo) string { return "" }, untracked, nil, false},
		{"clean, every entry racy", func(t *testing.T, src *repotest.Repo) string {
			os.Chtimes(filepath.Join(src.Dir, ".git", "index"), time.Now().Add(-2*time.Hour), time.Now().Add(-2*time.Hour))
			return ""
		}, untracked, nil, false},
		{"modified, same size", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"a.txt": "2\n"})
			return ""
		}, untracked, []string{"a.txt"}, false},
		{"modified, other size", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"dir/b.txt": "longer\n"})
			return ""
		}, untracked, []string{"dir/b.txt"}, false},
		{"modified, mtime restored (ctime tells)", func(t *testing.T, src *repotest.Repo) string {
			time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(time.Second + 50*time.Millisecond))) // git compares ctime by the second (the margin: file times lag the clock)
			rewrite(t, path(src, "a.txt"), "2\n")
			return ""
		}, untracked, []string{"a.txt"}, false},
		{"modified, mtime restored, racy: same second as the index", func(t *testing.T, src *repotest.Repo) string {
			at := time.Now().Add(-10 * time.Minute).Truncate(time.Second).Add(200 * time.Millisecond)
			racyRewrite(t, src, at, at.Add(500*time.Millisecond), "2\n")
			return ""
		}, untracked, []string{"a.txt"}, false},
		{"modified, mtime restored, racy: index mtime equals the file's", func(t *testing.T, src *repotest.Repo) string {
			at := time.Now().Add(-10 * time.Minute)
			racyRewrite(t, src, at, at, "2\n")
			return ""
		}, untracked, []string{"a.txt"}, false},
		{"racy but clean", func(t *testing.T, src *repotest.Repo) string {
			at := time.Now().Add(-10 * time.Minute)
			racyRewrite(t, src, at, at, "1\n")
			return ""
		}, untracked, nil, false},
		{"touched only", func(t *testing.T, src *repotest.Repo) string {
			os.Chtimes(path(src, "a.txt"), time.Now(), time.Now())
			return ""
		}, untracked, nil, false},
		{"core.trustctime false, chmod and back", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "config", "core.trustctime", "false")
			os.Chmod(path(src, "a.txt"), 0o600)
			os.Chmod(path(src, "a.txt"), 0o644)
			return ""
		}, untracked, nil, false},
		{"core.checkStat minimal, touched", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "config", "core.checkStat", "minimal")
			os.Chtimes(path(src, "a.txt"), time.Now(), time.Now())
			return ""
		}, untracked, nil, false},
		{"deleted", func(t *testing.T, src *repotest.Repo) string {
			os.Remove(path(src, "dir/sub/c.txt"))
			return ""
		}, untracked, []string{"dir/sub/c.txt"}, false},
		{"directory replaced by a file", func(t *testing.T, src *repotest.Repo) string {
			os.RemoveAll(path(src, "dir/sub"))
			write(t, src, map[string]string{"dir/sub": "x"})
			return ""
		}, untracked, []string{"dir/sub", "dir/sub/c.txt"}, false},
		{"file replaced by a directory", func(t *testing.T, src *repotest.Repo) string {
			os.Remove(path(src, "a.txt"))
			write(t, src, map[string]string{"a.txt/inner": "x"})
			return ""
		}, untracked, []string{"a.txt", "a.txt/inner"}, false},
		{"directory replaced by a symlink to its copy", func(t *testing.T, src *repotest.Repo) string {
			os.Rename(path(src, "dir/sub"), path(src, "elsewhere"))
			os.Symlink("../elsewhere", path(src, "dir/sub"))
			src.Write(t, map[string]string{".git/info/exclude": "elsewhere/\n"})
			return ""
		}, untracked, []string{"dir/sub", "dir/sub/c.txt"}, false},
		{"staged new file", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"new.txt": "n"})
			src.Git(t, "add", "new.txt")
			return ""
		}, tracked, []string{"new.txt"}, false},
		{"staged deletion (rm --cached)", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "rm", "-q", "--cached", "dir/b.txt")
			return ""
		}, tracked, []string{"dir/b.txt"}, false},
		{"staged deletion, file kept untracked", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "rm", "-q", "--cached", "dir/b.txt")
			return ""
		}, untracked, []string{"dir/b.txt"}, false},
		{"staged modification reverted in the working copy", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"a.txt": "9\n"})
			src.Git(t, "add", "a.txt")
			write(t, src, map[string]string{"a.txt": "1\n"})
			return ""
		}, untracked, []string{"a.txt"}, false},
		{"staged rename", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "mv", "dir/b.txt", "dir/renamed.txt")
			return ""
		}, untracked, []string{"dir/b.txt", "dir/renamed.txt"}, false},
		{"chmod +x", func(t *testing.T, src *repotest.Repo) string {
			os.Chmod(path(src, "a.txt"), 0o755)
			return ""
		}, untracked, []string{"a.txt"}, false},
		{"chmod +x, core.filemode false", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "config", "core.filemode", "false")
			os.Chmod(path(src, "a.txt"), 0o755)
			return ""
		}, untracked, nil, false},
		{"file replaced by a symlink", func(t *testing.T, src *repotest.Repo) string {
			os.Remove(path(src, "a.txt"))
			os.Symlink("dir/b.txt", path(src, "a.txt"))
			return ""
		}, untracked, []string{"a.txt"}, false},
		{"symlink target changed", func(t *testing.T, src *repotest.Repo) string {
			os.Remove(path(src, "link"))
			os.Symlink("dir/sub", path(src, "link"))
			return ""
		}, untracked, []string{"link"}, false},
		{"symlink replaced by a file", func(t *testing.T, src *repotest.Repo) string {
			os.Remove(path(src, "link"))
			write(t, src, map[string]string{"link": "a.txt"})
			return ""
		}, untracked, []string{"link"}, false},
		{"conflict", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "checkout", "-q", "-b", "side")
			src.Commit(t, "side", map[string]string{"a.txt": "side\n", "dir/b.txt": "side b\n"})
			src.Git(t, "checkout", "-q", "main")
			src.Commit(t, "main", map[string]string{"a.txt": "main\n"})
			repotest.Git(src.Dir, "merge", "-q", "side") // fails: a.txt conflicts; dir/b.txt is merged, staged
			return ""
		}, untracked, []string{"a.txt", "dir/b.txt"}, false},
		{"intent to add", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"ita.txt": "i"})
			src.Git(t, "add", "-N", "ita.txt")
			return ""
		}, tracked, []string{"ita.txt"}, false},
		{"skip-worktree, file edited and another deleted", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "update-index", "--skip-worktree", "a.txt", "dir/b.txt")
			write(t, src, map[string]string{"a.txt": "edited\n"})
			os.Remove(path(src, "dir/b.txt"))
			return ""
		}, untracked, nil, false},
		{"assume-unchanged, file edited", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "update-index", "--assume-unchanged", "a.txt")
			write(t, src, map[string]string{"a.txt": "edited\n"})
			return ""
		}, untracked, nil, false},
		{"index version 4, clean", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "update-index", "--index-version", "4")
			return ""
		}, untracked, nil, false},
		{"index version 4, changes", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "update-index", "--index-version", "4")
			write(t, src, map[string]string{"dir/sub/c.txt": "changed\n", "dir/new.txt": "n"})
			src.Git(t, "add", "dir/new.txt")
			return ""
		}, untracked, []string{"dir/new.txt", "dir/sub/c.txt"}, false},
		{"no cache-tree, clean", func(t *testing.T, src *repotest.Repo) string {
			dropCacheTree(t, src)
			return ""
		}, untracked, nil, false},
		{"no cache-tree, staged", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"dir/sub/c.txt": "staged\n"})
			src.Git(t, "add", "dir/sub/c.txt")
			src.Git(t, "rm", "-q", "--cached", "a-b")
			dropCacheTree(t, src)
			return ""
		}, tracked, []string{"a-b", "dir/sub/c.txt"}, false},
		{"cache-tree valid but for the root", func(t *testing.T, src *repotest.Repo) string {
			h := src.Git(t, "rev-parse", "HEAD:a.txt")
			src.Git(t, "update-index", "--force-remove", "a.txt")
			src.Git(t, "update-index", "--add", "--cacheinfo", "100644,"+h+",a.txt")
			return ""
		}, untracked, nil, false},
		{"paths in git's order: a-b, a.b, a/b all staged, no cache-tree", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"a-b": "x", "a.b": "x", "a/b": "x", "a/c": "new"})
			src.Git(t, "add", "-A")
			dropCacheTree(t, src)
			return ""
		}, untracked, []string{"a-b", "a.b", "a/b", "a/c"}, false},
		{"paths in git's order: a/ gone, a-b and a.b kept", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "rm", "-q", "-r", "--cached", "a")
			return ""
		}, tracked, []string{"a/b"}, false},
		{"unborn HEAD, staged files", func(t *testing.T, _ *repotest.Repo) string {
			r := repotest.New(t)
			r.Write(t, map[string]string{"one.txt": "1", "d/two.txt": "2", "untracked.txt": "u"})
			r.Git(t, "add", "one.txt", "d/two.txt")
			return r.Dir
		}, untracked, []string{"d/two.txt", "one.txt", "untracked.txt"}, false},
		{"unborn HEAD, empty index", func(t *testing.T, _ *repotest.Repo) string {
			return repotest.New(t).Dir
		}, untracked, nil, false},
		{"untracked in nested directories", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"new/x/y.txt": "n", "new/z.txt": "n", "dir/sub/deep/q.txt": "q"})
			os.MkdirAll(path(src, "empty/empty"), 0o755)
			return ""
		}, untracked, []string{"dir/sub/deep/q.txt", "new/x/y.txt", "new/z.txt"}, false},
		{"ignored directory with files, and a log ignored everywhere", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"build/out.bin": "x", "build/deep/more.bin": "x", "dir/debug.log": "x", "only-ignored/x.log": "x"})
			return ""
		}, untracked, nil, false},
		{"negated ignore pattern", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"x.log": "x", "keep.log": "k", "dir/keep.log": "k"})
			return ""
		}, untracked, []string{"dir/keep.log", "keep.log"}, false},
		{"nested .gitignore", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"dir/.gitignore": "*.tmp\n/local\n", "dir/x.tmp": "x", "x.tmp": "x",
				"dir/local/f": "f", "dir/sub/local/f": "f", "dir/sub/y.tmp": "y"})
			return ""
		}, untracked, []string{"dir/.gitignore", "dir/sub/local/f", "x.tmp"}, false},
		{".gitignore in an untracked directory", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"new/.gitignore": "*.o\n", "new/a.o": "x", "new/a.c": "x"})
			return ""
		}, untracked, []string{"new/.gitignore", "new/a.c"}, false},
		{"info/exclude, and .gitignore's negation wins over it", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{".git/info/exclude": "secret.txt\n*.bak\n", "secret.txt": "s", "a.bak": "b",
				"dir/.gitignore": "!*.bak\n", "dir/b.bak": "b"})
			return ""
		}, untracked, []string{"dir/.gitignore", "dir/b.bak"}, false},
		{"tracked file in an ignored directory, untracked one beside it", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"build/tracked.txt": "t"})
			src.Git(t, "add", "-f", "build/tracked.txt")
			src.Git(t, "commit", "-qm", "forced")
			settle(t, src)
			write(t, src, map[string]string{"build/untracked.txt": "u", "build/tracked.txt": "changed"})
			return ""
		}, untracked, []string{"build/tracked.txt"}, false},
		{"untracked nested repository", func(t *testing.T, src *repotest.Repo) string {
			repotest.Git(src.Dir, "init", "-q", "nested")
			write(t, src, map[string]string{"nested/f.txt": "f", "plain/.git/not-a-repo": "x", "plain/g.txt": "g"})
			return ""
		}, untracked, []string{"nested/", "plain/g.txt"}, false},
		{"untracked nested repository, ignored", func(t *testing.T, src *repotest.Repo) string {
			repotest.Git(src.Dir, "init", "-q", "build/nested")
			repotest.Git(src.Dir, "init", "-q", "dir/nested")
			write(t, src, map[string]string{"dir/.gitignore": "nested\n"})
			return ""
		}, tracked, nil, false},
		{"untracked cache in the index", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "update-index", "--untracked-cache")
			src.Git(t, "status", "--porcelain")
			write(t, src, map[string]string{"dir/new.txt": "n"})
			return ""
		}, untracked, []string{"dir/new.txt"}, false},
		{"file named with spaces and unicode", func(t *testing.T, src *repotest.Repo) string {
			write(t, src, map[string]string{"dir/ünï cödé.txt": "changed", "new file ✓.txt": "n"})
			return ""
		}, untracked, []string{"dir/ünï cödé.txt", "new file ✓.txt"}, false},
		{"linked worktree, clean", func(t *testing.T, src *repotest.Repo) string {
			wt := filepath.Join(t.TempDir(), "wt")
			src.Git(t, "worktree", "add", "-q", "-b", "wt", wt)
			return wt
		}, untracked, nil, false},
		{"linked worktree, changes, info/exclude of the repository", func(t *testing.T, src *repotest.Repo) string {
			wt := filepath.Join(t.TempDir(), "wt")
			src.Git(t, "worktree", "add", "-q", "-b", "wt", wt)
			src.Write(t, map[string]string{".git/info/exclude": "excluded.txt\n"})
			w := &repotest.Repo{Dir: wt}
			w.Write(t, map[string]string{"a.txt": "wt\n", "new.txt": "n", "excluded.txt": "x"})
			w.Git(t, "rm", "-q", "--cached", "dir/b.txt")
			return wt
		}, untracked, []string{"a.txt", "dir/b.txt", "new.txt"}, false},
		{"linked worktree inside the main one", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "worktree", "add", "-q", "-b", "wt", "inner")
			return ""
		}, untracked, []string{"inner/"}, false},
		{"submodule checked out, clean", func(t *testing.T, src *repotest.Repo) string {
			addSubmodule(t, src)
			return ""
		}, untracked, nil, false},
		{"submodule at a new commit", func(t *testing.T, src *repotest.Repo) string {
			addSubmodule(t, src)
			src.Git(t, "-C", "libs/s", "commit", "-q", "--allow-empty", "-m", "new")
			return ""
		}, untracked, []string{"libs/s"}, false},
		{"submodule with changes inside (not looked for)", func(t *testing.T, src *repotest.Repo) string {
			addSubmodule(t, src)
			write(t, src, map[string]string{"libs/s/s.txt": "changed\n", "libs/s/new.txt": "n"})
			return ""
		}, untracked, nil, false},
		{"submodule not initialised", func(t *testing.T, src *repotest.Repo) string {
			addSubmodule(t, src)
			c := repotest.Clone(t, src.Dir)
			settle(t, c)
			write(t, c, map[string]string{"libs/s/stray.txt": "x"})
			return c.Dir
		}, untracked, nil, false},
		{"submodule directory gone", func(t *testing.T, src *repotest.Repo) string {
			addSubmodule(t, src)
			os.RemoveAll(path(src, "libs/s"))
			return ""
		}, untracked, []string{"libs/s"}, false},
		{"submodule replaced by a file", func(t *testing.T, src *repotest.Repo) string {
			addSubmodule(t, src)
			os.RemoveAll(path(src, "libs/s"))
			write(t, src, map[string]string{"libs/s": "file"})
			return ""
		}, untracked, []string{"libs/s"}, false},
		{"core.autocrlf: falls back to go-git", func(t *testing.T, src *repotest.Repo) string {
			src.Git(t, "config", "core.autocrlf", "true")
			write(t, src, map[string]string{"a.txt": "2\n"})
			return ""
		}, untracked, []string{"a.txt"}, true},
		{".gitattributes text: falls back to go-git", func(t *testing.T, src *repotest.Repo) string {
			src.Commit(t, "attributes", map[string]string{".gitattributes": "*.txt text eol=lf\n"})
			settle(t, src)
			write(t, src, map[string]string{"a.txt": "2\n"})
			return ""
		}, untracked, []string{"a.txt"}, true},
		{".gitattributes text, stat changed, content the same: no fallback", func(t *testing.T, src *repotest.Repo) string {
			src.Commit(t, "attributes", map[string]string{".gitattributes": "*.txt text\n"})
			settle(t, src)
			os.Chtimes(path(src, "a.txt"), time.Now(), time.Now())
			return ""
		}, untracked, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := repotest.New(t)
			src.Commit(t, "base", map[string]string{
				"a.txt": "1\n", "dir/b.txt": "b\n", "dir/sub/c.txt": "c\n", "dir/ünï cödé.txt": "u",
				"a-b": "1", "a.b": "1", "a/b": "1", ".gitignore": "build/\n*.log\n!keep.log\n",
			})
			if err := os.Symlink("a.txt", filepath.Join(src.Dir, "link")); err != nil {
				t.Fatal(err)
			}
			src.Commit(t, "link", nil)
			settle(t, src)
			dir := tt.change(t, src)
			if dir == "" {
				dir = src.Dir
			}
			r, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			indexPath := filepath.Join(r.gitdir, "index")
			before, _ := os.ReadFile(indexPath)
			beforeFi, _ := os.Stat(indexPath)
			got, fallback, err := r.changes(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if after, _ := os.ReadFile(indexPath); !bytes.Equal(before, after) {
				t.Error("Changes wrote the index")
			}
			if afterFi, _ := os.Stat(indexPath); beforeFi != nil && !afterFi.ModTime().Equal(beforeFi.ModTime()) {
				t.Error("Changes touched the index")
			}
			if old, err := r.changesGoGit(tt.opts); err != nil || !slices.Equal(old, got) {
				t.Logf("go-git's Status said %q (%v)", old, err)
			}
			git := gitChanges(t, dir, tt.opts)
			if !slices.Equal(got, git) || !slices.Equal(got, tt.want) {
				t.Errorf("Changes() = %q; git status says %q; want %q", got, git, tt.want)
			}
			if (fallback != "") != tt.fallback {
				t.Errorf("fallback to go-git: %q, want %v", fallback, tt.fallback)
			}
		})
	}
}

// TestChangesUnreadIndex checks the fallback for an index this package
// does not read: to go-git, which does not read these either, so that the
// answer is go-git's error, as before.
func TestChangesUnreadIndex(t *testing.T) {
	tests := []struct{ name, ext string }{
		{"split index", "link"},
		{"sparse index", "sdir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := repotest.New(t)
			src.Commit(t, "base", map[string]string{"a/x.txt": "1\n", "b/y.txt": "2\n"})
			if tt.ext == "link" {
				src.Git(t, "update-index", "--split-index")
			} else {
				src.Git(t, "sparse-checkout", "set", "--cone", "--sparse-index", "a")
				src.Git(t, "config", "--unset", "extensions.worktreeConfig") // or go-git will not open it
			}
			r, err := Open(src.Dir)
			if err != nil {
				t.Fatal(err)
			}
			_, fallback, err := r.changes(StatusOptions{})
			if !strings.Contains(fallback, `"`+tt.ext+`"`) || err == nil || !strings.Contains(err.Error(), tt.name) {
				t.Errorf("fallback %q, error %v; want the %s extension and go-git's error", fallback, err, tt.ext)
			}
		})
	}
}

// BenchmarkChanges compares Changes with go-git's Worktree.Status (as
// Changes used it) on a clean checkout of 1,000 files in 48 directories,
// settled (no entry racily clean).
func BenchmarkChanges(b *testing.B) {
	b.Setenv("HOME", b.TempDir())
	b.Setenv("XDG_CONFIG_HOME", "")
	src := repotest.New(b)
	src.History(b, 1, 1000)
	settle(b, src)
	r, err := Open(src.Dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, bm := range []struct {
		name    string
		changes func(StatusOptions) ([]string, error)
	}{{"localrepo", r.Changes}, {"go-git", r.changesGoGit}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if paths, err := bm.changes(StatusOptions{}); err != nil || len(paths) != 0 {
					b.Fatalf("%q, %v; want a clean checkout", paths, err)
				}
			}
		})
	}
}

// BenchmarkReadIndex compares readIndex with go-git's index decoder on
// the index of 1,000 files BenchmarkChanges reads.
func BenchmarkReadIndex(b *testing.B) {
	src := repotest.New(b)
	src.History(b, 1, 1000)
	p := filepath.Join(src.Dir, ".git", "index")
	b.Run("localrepo", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := readIndex(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("go-git", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			f, err := os.Open(p)
			if err != nil {
				b.Fatal(err)
			}
			var idx index.Index
			err = index.NewDecoder(f).Decode(&idx)
			f.Close()
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
