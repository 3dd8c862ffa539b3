// Package localrepo is the local side of a deploy: the git repository on the
// machine that runs gitric. It resolves what to deploy, tells whether the
// working copy is clean, decides whether a push would lose history, finds
// the submodules of a commit, derives deploy commits (build outputs added,
// a monorepo's subdirectory taken) and clean checkouts to build in, and
// writes the pack that carries the new objects, the submodules' included,
// to a target.
//
// It reads the repository with go-git, its objects through a reader of its
// own (see objectSource) and its index with another, for the dirty check
// (see status.go); it never shells out to git. The only things it
// writes into the repository are objects and refs under refs/gitric/:
// never the working copy, the index, HEAD or a branch.
package localrepo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"
)

var (
	// ErrNotRepository means the directory is not inside a git working copy.
	ErrNotRepository = errors.New("not inside a git repository")
	// ErrUnknownRevision means a ref, tag or hash does not name a commit.
	ErrUnknownRevision = errors.New("unknown revision")
)

// Repo is an opened local repository with a working copy, or a submodule's
// repository (see OpenSubmodule), which is only read for objects.
type Repo struct {
	git  *git.Repository
	root string // top of the working copy; for a submodule, where it would be checked out
	// gitdir is the repository's own git directory (.git, or for a linked
	// worktree .git/worktrees/<name>); common is where the objects, refs
	// and configuration live (the same unless gitdir is a linked worktree's).
	gitdir, common string
	// sub is, for a submodule's repository, its path from the top of the
	// superproject's working copy; empty for the repository Open returns.
	sub string
	// src is the repository's objects, which go-git reads too (see
	// withAlternates); made by source when the Repo was made without.
	src     *objectSource
	srcOnce sync.Once
}

// source is r's objectSource.
func (r *Repo) source() *objectSource {
	r.srcOnce.Do(func() {
		if r.src == nil {
			r.src = &objectSource{common: r.common}
		}
	})
	return r.src
}

// Open finds the repository that contains dir (dir itself or a parent).
func Open(dir string) (*Repo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open repository at %s: %w", dir, err)
	}
	r, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if errors.Is(err, git.ErrRepositoryNotExists) {
		return nil, fmt.Errorf("%s: %w (run gitric from inside the working copy you want to deploy)", abs, ErrNotRepository)
	}
	if err != nil {
		return nil, fmt.Errorf("open repository at %s: %w", abs, err)
	}
	wt, err := r.Worktree()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: a bare repository has no working copy to deploy from", abs, ErrNotRepository)
	}
	root := wt.Filesystem.Root()
	gitdir, common := gitDirs(root)
	r, src, err := withAlternates(r, gitdir, common, wt.Filesystem)
	if err != nil {
		return nil, fmt.Errorf("open repository at %s: %w", abs, err)
	}
	return &Repo{git: r, root: root, gitdir: gitdir, common: common, src: src}, nil
}

// objectCache is the size of go-git's cache of objects read (its default
// is 96 MiB). go-git reads objects through objStorage, which has a cache
// of its own, so this one only serves what go-git still reads by itself
// (abbreviated hashes, say).
const objectCache = 1 * cache.MiByte

// withAlternates reopens g, whose git directory is gitdir (common for a
// linked worktree's), on a storage that reaches the alternates of its
// object store (git clone --shared or --reference: go-git reads them only
// through a filesystem that reaches them, which the one PlainOpen gives
// does not) and keeps a few packfiles open rather than opening the pack
// again for every object it reads; its object reads are served by the
// objectSource it returns (see objStorage).
func withAlternates(g *git.Repository, gitdir, common string, worktree billy.Filesystem) (*git.Repository, *objectSource, error) {
	var fs billy.Filesystem = osfs.New(gitdir)
	if common != gitdir {
		fs = dotgit.NewRepositoryFilesystem(fs, osfs.New(common))
	}
	st := filesystem.NewStorageWithOptions(fs, cache.NewObjectLRU(objectCache), filesystem.Options{
		AlternatesFS:       osfs.New("/"),
		MaxOpenDescriptors: 16,
	})
	src := &objectSource{common: common}
	g, err := git.Open(&objStorage{Storage: st, src: src}, worktree)
	return g, src, err
}

// Root is the top directory of the working copy.
func (r *Repo) Root() string { return r.root }

// Commit is a resolved commit.
type Commit struct {
	Hash    plumbing.Hash
	Subject string
	When    time.Time
}

// Short is the abbreviated hash, as git prints it.
func (c Commit) Short() string { return c.Hash.String()[:7] }

func (c Commit) String() string { return c.Short() + " " + c.Subject }

// Resolve turns a revision (empty for HEAD, a branch, a tag, a full or
// abbreviated hash, or any expression go-git understands such as HEAD~2)
// into the commit it names.
func (r *Repo) Resolve(rev string) (Commit, error) {
	if rev == "" {
		rev = "HEAD"
	}
	h, err := r.git.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		if rev == "HEAD" && errors.Is(err, plumbing.ErrReferenceNotFound) {
			return Commit{}, fmt.Errorf("HEAD: %w: the repository has no commits yet; commit something first", ErrUnknownRevision)
		}
		return Commit{}, fmt.Errorf("%q: %w in %s (try a branch, tag or commit hash that `git log` shows)", rev, ErrUnknownRevision, r.root)
	}
	c, err := r.git.CommitObject(*h)
	if err != nil {
		return Commit{}, fmt.Errorf("%q: %w: %s is not a commit", rev, ErrUnknownRevision, h)
	}
	return commitOf(c), nil
}

// Lookup returns the commit with the given hash, if the local repository
// has it.
func (r *Repo) Lookup(h plumbing.Hash) (Commit, bool) {
	c, err := r.git.CommitObject(h)
	if err != nil {
		return Commit{}, false
	}
	return commitOf(c), true
}

func commitOf(c *object.Commit) Commit {
	subject, _, _ := strings.Cut(strings.TrimSpace(c.Message), "\n")
	return Commit{Hash: c.Hash, Subject: subject, When: c.Committer.When}
}

// StatusOptions tunes the dirty check.
type StatusOptions struct {
	// IgnoreUntracked leaves untracked files out (ignored files are always
	// left out).
	IgnoreUntracked bool
}

// Changes lists the paths that make the working copy dirty, as git status
// sees them: staged (HEAD and the index differ), modified or deleted (the
// index and the working copy differ; a conflict or an intent-to-add entry
// counts), and (unless opts.IgnoreUntracked) untracked files that
// .gitignore, .git/info/exclude and core.excludesFile do not ignore. The
// paths are slash-separated and sorted; an untracked file is listed by its
// own path, in an untracked directory too, and an untracked directory that
// holds a repository of its own as "dir/". An empty list means the working
// copy matches HEAD. It reads the repository only (see status.go).
func (r *Repo) Changes(opts StatusOptions) ([]string, error) {
	paths, _, err := r.changes(opts)
	return paths, err
}

// globalExcludes reads the user's core.excludesFile, falling back to git's
// default of $XDG_CONFIG_HOME/git/ignore.
func globalExcludes() ([]gitignore.Pattern, error) {
	root := osfs.New("/")
	ps, err := gitignore.LoadGlobalPatterns(root)
	if err != nil || len(ps) > 0 {
		return ps, err
	}
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, err
		}
		cfg = filepath.Join(home, ".config")
	}
	return readPatterns(filepath.Join(cfg, "git", "ignore")), nil
}

// readPatterns reads a gitignore-style file; a missing file has none.
func readPatterns(path string) []gitignore.Pattern {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var ps []gitignore.Pattern
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		ps = append(ps, gitignore.ParsePattern(line, nil))
	}
	return ps
}

// gitDir is the repository's common git directory: .git itself, or for a
// linked worktree (a .git file) the main repository's.
func (r *Repo) gitDir() string { return r.common }

// gitDirs finds the git directory of the working copy at root, and the
// common directory it shares with the other worktrees of its repository.
// A .git file ("gitdir: <dir>", as linked worktrees and submodules have) is
// followed; anything unreadable is used as is.
func gitDirs(root string) (gitdir, common string) {
	dot := filepath.Join(root, ".git")
	gitdir, ok := readGitFile(dot)
	if !ok {
		gitdir = dot // a directory, or nothing we can read: use it as is
	}
	return gitdir, commonDir(gitdir)
}

// readGitFile reads a .git file ("gitdir: <dir>") and returns the directory
// it names, relative paths taken from the file's own directory. ok is false
// when dot is not such a file (a directory, say, or nothing at all).
func readGitFile(dot string) (dir string, ok bool) {
	data, err := os.ReadFile(dot)
	if err != nil {
		return "", false
	}
	dir, ok = strings.CutPrefix(strings.TrimSpace(string(data)), "gitdir: ")
	if !ok || dir == "" {
		return "", false
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(filepath.Dir(dot), dir)
	}
	return filepath.Clean(dir), true
}

// commonDir is the directory a git directory's commondir file points to,
// or the git directory itself when it has none.
func commonDir(gitdir string) string {
	data, err := os.ReadFile(filepath.Join(gitdir, "commondir"))
	if err != nil {
		return gitdir
	}
	c := strings.TrimSpace(string(data))
	if !filepath.IsAbs(c) {
		c = filepath.Join(gitdir, c)
	}
	return filepath.Clean(c)
}

// IsAncestor reports whether commit a is reachable from commit b (a commit
// is its own ancestor). A commit the local repository does not have is never
// an ancestor of one it has, so the answer is false rather than an error. In
// a shallow clone, when a is not found above the shallow boundary, the
// answer is not known: the error wraps ErrShallow.
func (r *Repo) IsAncestor(a, b plumbing.Hash) (bool, error) {
	if a == b {
		return true, nil
	}
	rd := r.source()
	if _, err := rd.commit(a); err != nil {
		return false, nil
	}
	shallow, err := r.shallowSet()
	if err != nil {
		return false, err
	}
	var cut []plumbing.Hash // shallow commits the walk reached
	seen := map[plumbing.Hash]bool{b: true}
	queue := []plumbing.Hash{b}
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		if shallow[h] {
			cut = append(cut, h)
			continue
		}
		c, err := rd.commit(h)
		if err != nil {
			return false, fmt.Errorf("read commit %s: %w", h, err)
		}
		for _, p := range c.parents {
			if p == a {
				return true, nil
			}
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	if len(cut) > 0 {
		return false, fmt.Errorf("is %s an ancestor of %s? the history below %s is not in this clone: %w (run `git fetch --unshallow`)",
			a.String()[:7], b.String()[:7], cut[0].String()[:7], ErrShallow)
	}
	return false, nil
}

// Tracks reports whether the commit's tree has path (a file, link or
// directory; slash-separated).
func (r *Repo) Tracks(commit plumbing.Hash, path string) bool {
	c, err := r.git.CommitObject(commit)
	if err != nil {
		return false
	}
	t, err := c.Tree()
	if err != nil {
		return false
	}
	_, err = t.FindEntry(strings.Trim(path, "/"))
	return err == nil
}

// TreeOf is a commit's tree.
func (r *Repo) TreeOf(commit plumbing.Hash) (plumbing.Hash, error) {
	c, err := r.git.CommitObject(commit)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("read commit %s: %w", commit, err)
	}
	return c.TreeHash, nil
}
