// Package localrepo is the local side of a deploy: the git repository on the
// machine that runs gitric. It resolves what to deploy, tells whether the
// working copy is clean, decides whether a push would lose history, and
// writes the pack that carries the new objects to a target.
//
// It reads the repository with go-git and never shells out to git.
package localrepo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
	"github.com/go-git/go-git/v5/plumbing/object"
)

var (
	// ErrNotRepository means the directory is not inside a git working copy.
	ErrNotRepository = errors.New("not inside a git repository")
	// ErrUnknownRevision means a ref, tag or hash does not name a commit.
	ErrUnknownRevision = errors.New("unknown revision")
)

// Repo is an opened local repository with a working copy.
type Repo struct {
	git  *git.Repository
	root string
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
	return &Repo{git: r, root: wt.Filesystem.Root()}, nil
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

// Changes lists the paths that make the working copy dirty: modified,
// staged, deleted, and (unless opts.IgnoreUntracked) untracked files that
// .gitignore, .git/info/exclude and core.excludesFile do not ignore. An empty
// list means the working copy matches HEAD.
func (r *Repo) Changes(opts StatusOptions) ([]string, error) {
	wt, err := r.git.Worktree()
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", r.root, err)
	}
	// go-git reads .gitignore files itself, but its worktree filesystem
	// will not open paths inside .git, so info/exclude is read here.
	wt.Excludes = append(wt.Excludes, readPatterns(filepath.Join(r.gitDir(), "info", "exclude"))...)
	if global, err := globalExcludes(); err == nil {
		wt.Excludes = append(wt.Excludes, global...)
	}
	st, err := wt.Status()
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", r.root, err)
	}
	var paths []string
	for path, s := range st {
		untracked := s.Worktree == git.Untracked && s.Staging == git.Untracked
		if untracked && opts.IgnoreUntracked {
			continue
		}
		if s.Worktree == git.Unmodified && s.Staging == git.Unmodified {
			continue
		}
		paths = append(paths, path)
	}
	sort.Strings(paths)
	return paths, nil
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
func (r *Repo) gitDir() string {
	dot := filepath.Join(r.root, ".git")
	data, err := os.ReadFile(dot)
	if err != nil {
		return dot // a directory, or nothing we can read: use it as is
	}
	dir, ok := strings.CutPrefix(strings.TrimSpace(string(data)), "gitdir: ")
	if !ok {
		return dot
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(r.root, dir)
	}
	if common, err := os.ReadFile(filepath.Join(dir, "commondir")); err == nil {
		c := strings.TrimSpace(string(common))
		if !filepath.IsAbs(c) {
			c = filepath.Join(dir, c)
		}
		return filepath.Clean(c)
	}
	return dir
}

// IsAncestor reports whether commit a is reachable from commit b (a commit
// is its own ancestor). A commit the local repository does not have is never
// an ancestor of one it has, so the answer is false rather than an error.
func (r *Repo) IsAncestor(a, b plumbing.Hash) (bool, error) {
	if a == b {
		return true, nil
	}
	if _, err := r.git.CommitObject(a); err != nil {
		return false, nil
	}
	seen := map[plumbing.Hash]bool{b: true}
	queue := []plumbing.Hash{b}
	for len(queue) > 0 {
		h := queue[0]
		queue = queue[1:]
		c, err := r.git.CommitObject(h)
		if err != nil {
			return false, fmt.Errorf("read commit %s: %w", h, err)
		}
		for _, p := range c.ParentHashes {
			if p == a {
				return true, nil
			}
			if !seen[p] {
				seen[p] = true
				queue = append(queue, p)
			}
		}
	}
	return false, nil
}
