package localrepo

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

var (
	// ErrSubmoduleMissing means a submodule of the deployed commit cannot be
	// read locally: its repository is not checked out, or it does not have
	// the commit the superproject records.
	ErrSubmoduleMissing = errors.New("submodule not available locally")
	// ErrNoGitmodulesEntry means a tree holds a gitlink (a submodule's
	// commit) that the .gitmodules file of the same commit does not name.
	ErrNoGitmodulesEntry = errors.New("gitlink without a .gitmodules entry")
)

// Submodule is a submodule of a deployed commit, at any depth.
type Submodule struct {
	// Name is the submodule's name in the .gitmodules file of the commit
	// that records it (the superproject's, or for a nested submodule its
	// parent submodule's).
	Name string
	// Path is where the submodule is checked out, relative to the top of
	// the superproject's working copy, with slashes; a nested submodule's
	// path runs from the top too ("libs/a/vendor/b").
	Path string
	// GitDir is where `git submodule update --init --recursive` keeps the
	// submodule's repository, relative to the top of the superproject's
	// working copy: ".git/modules/<name>", and for a nested submodule
	// inside its parent's, ".git/modules/<name>/modules/<subname>". It is
	// the layout a checkout follows; the local repository Submodules read
	// may live elsewhere (a <path>/.git directory, say).
	GitDir string
	// Commit is the commit the gitlink records.
	Commit plumbing.Hash

	repo *Repo // the local repository that holds Commit
}

// Submodules lists the submodules of commit, recursively: every gitlink in
// the commit's tree, named through the .gitmodules file of that commit (not
// of the working copy), then the submodules of each submodule's recorded
// commit, and so on. A submodule comes before the submodules nested in it;
// siblings come in the order of their trees (by path).
//
// Every submodule must be readable locally, with its recorded commit: the
// result is what a deploy of commit needs to send. A submodule whose
// repository is not checked out, or lacks the commit, is an error wrapping
// ErrSubmoduleMissing; a gitlink that .gitmodules does not name is an error
// wrapping ErrNoGitmodulesEntry. A submodule's repository is looked for
// where git keeps it (modules/<name> in the git directory of the repository
// that records it), then at <path>/.git, a directory or a file naming one.
func (r *Repo) Submodules(commit plumbing.Hash) ([]Submodule, error) {
	var out []Submodule
	if err := r.submodules(commit, "", ".git", r.root, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// OpenSubmodule returns the local repository of s, for WritePacks or to
// look at its history. For a Submodule from Submodules it is the repository
// Submodules read, already open; otherwise s is looked up again: at GitDir
// in r's git directory, then at Path/.git in r's working copy. The
// repository returned is read only for objects: it has no working copy for
// Changes.
func (r *Repo) OpenSubmodule(s Submodule) (*Repo, error) {
	if s.repo != nil {
		return s.repo, nil
	}
	if !filepath.IsLocal(filepath.FromSlash(s.Path)) {
		return nil, fmt.Errorf("submodule %q: the path is not inside the working copy", s.Path)
	}
	rel := path.Clean(s.GitDir)
	if rel == ".git" || !strings.HasPrefix(rel, ".git/") {
		return nil, fmt.Errorf("submodule %s: git directory %q is not inside .git", s.Path, s.GitDir)
	}
	var dirs []string
	for _, d := range uniqueDirs(r.common, r.gitdir) {
		dirs = append(dirs, filepath.Join(d, filepath.FromSlash(strings.TrimPrefix(rel, ".git/"))))
	}
	return findSubmodule(dirs, s.Path, filepath.Join(r.root, filepath.FromSlash(s.Path)), r.root, s.Commit)
}

// submodules appends to out the submodules of commit in r, recursively.
// prefix is r's path from the top of the superproject's working copy ("" or
// ending in a slash); gitDir is where a checkout keeps r's git directory,
// relative to that top; top is that top on this machine.
func (r *Repo) submodules(commit plumbing.Hash, prefix, gitDir, top string, out *[]Submodule) error {
	c, err := r.git.CommitObject(commit)
	if err != nil {
		return r.describe(fmt.Errorf("read commit %s: %w", commit, err))
	}
	root, err := c.Tree()
	if err != nil {
		return r.describe(fmt.Errorf("read tree of commit %s: %w", commit, err))
	}
	var links []gitlink
	if err := r.gitlinks(root, "", &links); err != nil {
		return r.describe(err)
	}
	if len(links) == 0 {
		return nil
	}
	names, err := gitmodules(root)
	if err != nil {
		return r.describe(fmt.Errorf("commit %s: %w", commit, err))
	}
	gitCmd := "git"
	if prefix != "" {
		gitCmd = "git -C " + strings.TrimSuffix(prefix, "/")
	}
	for _, l := range links {
		full := prefix + l.path
		name, ok := names[l.path]
		if !ok {
			return fmt.Errorf("submodule %s: %w at commit %s (register it with `%s submodule add <url> %s`, or drop the gitlink with `%s rm --cached %s`)",
				full, ErrNoGitmodulesEntry, commit, gitCmd, l.path, gitCmd, l.path)
		}
		var dirs []string
		for _, d := range uniqueDirs(r.common, r.gitdir) {
			dirs = append(dirs, filepath.Join(d, "modules", filepath.FromSlash(name)))
		}
		sub, err := findSubmodule(dirs, full, filepath.Join(r.root, filepath.FromSlash(l.path)), top, l.hash)
		if err != nil {
			return err
		}
		s := Submodule{Name: name, Path: full, GitDir: gitDir + "/modules/" + name, Commit: l.hash, repo: sub}
		*out = append(*out, s)
		if err := sub.submodules(s.Commit, full+"/", s.GitDir, top, out); err != nil {
			return err
		}
	}
	return nil
}

// gitlink is a submodule entry of a tree: path from the tree's top, and the
// commit it records.
type gitlink struct {
	path string
	hash plumbing.Hash
}

// gitlinks appends the gitlinks in t and its subtrees to out, in path order.
func (r *Repo) gitlinks(t *object.Tree, dir string, out *[]gitlink) error {
	for _, e := range t.Entries {
		switch e.Mode {
		case filemode.Submodule:
			*out = append(*out, gitlink{path: dir + e.Name, hash: e.Hash})
		case filemode.Dir:
			sub, err := r.git.TreeObject(e.Hash)
			if err != nil {
				return fmt.Errorf("read tree %s (%s%s): %w", e.Hash, dir, e.Name, err)
			}
			if err := r.gitlinks(sub, dir+e.Name+"/", out); err != nil {
				return err
			}
		}
	}
	return nil
}

// gitmodules reads the .gitmodules file at the top of root and maps each
// submodule path it names to the submodule's name. Entries git itself
// would refuse (a name or path with a ".." component) are left out. When
// two names claim a path, the first in name order wins.
func gitmodules(root *object.Tree) (map[string]string, error) {
	names := make(map[string]string)
	e, err := root.FindEntry(".gitmodules")
	if errors.Is(err, object.ErrEntryNotFound) || err == nil && !e.Mode.IsFile() {
		return names, nil // a symlinked .gitmodules is ignored, as git does
	}
	if err != nil {
		return nil, fmt.Errorf("read .gitmodules: %w", err)
	}
	f, err := root.TreeEntryFile(e)
	if err != nil {
		return nil, fmt.Errorf("read .gitmodules: %w", err)
	}
	rd, err := f.Reader()
	if err != nil {
		return nil, fmt.Errorf("read .gitmodules: %w", err)
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		return nil, fmt.Errorf("read .gitmodules: %w", err)
	}
	m := config.NewModules()
	if err := m.Unmarshal(data); err != nil {
		return nil, fmt.Errorf("parse .gitmodules: %w", err)
	}
	var sorted []string
	for name := range m.Submodules {
		sorted = append(sorted, name)
	}
	sort.Strings(sorted)
	for _, name := range sorted {
		p := m.Submodules[name].Path
		if p == "" {
			continue
		}
		p = path.Clean(p)
		if _, dup := names[p]; !dup {
			names[p] = name
		}
	}
	return names, nil
}

// findSubmodule opens the local repository of the submodule at subPath
// (from top, the top of the superproject's working copy) that holds
// commit: the first of dirs (git directories) that does, else the one its
// working copy's .git leads to.
func findSubmodule(dirs []string, subPath, worktree, top string, commit plumbing.Hash) (*Repo, error) {
	if dir, ok := readGitFile(filepath.Join(worktree, ".git")); ok {
		dirs = append(dirs, dir)
	} else {
		dirs = append(dirs, filepath.Join(worktree, ".git"))
	}
	var found []string
	seen := make(map[string]bool)
	for _, dir := range dirs {
		if seen[dir] {
			continue
		}
		seen[dir] = true
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			continue
		}
		g, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{EnableDotGitCommonDir: true})
		if errors.Is(err, git.ErrRepositoryNotExists) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("submodule %s: open repository %s: %w", subPath, dir, err)
		}
		found = append(found, dir)
		_, err = g.CommitObject(commit)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("submodule %s: read commit %s in %s: %w", subPath, commit, dir, err)
		}
		g, src, err := withAlternates(g, dir, commonDir(dir), nil)
		if err != nil {
			return nil, fmt.Errorf("submodule %s: open repository %s: %w", subPath, dir, err)
		}
		return &Repo{git: g, root: worktree, gitdir: dir, common: commonDir(dir), sub: subPath, src: src}, nil
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("submodule %s is not checked out in %s: %w (run `git submodule update --init --recursive`)",
			subPath, top, ErrSubmoduleMissing)
	}
	return nil, fmt.Errorf("submodule %s does not have commit %s locally (looked in %s): %w (fetch it in %s: `git -C %s fetch`, or run `git submodule update --init --recursive`)",
		subPath, commit, strings.Join(found, ", "), ErrSubmoduleMissing, subPath, subPath)
}

// uniqueDirs returns dirs without repeats, in order.
func uniqueDirs(dirs ...string) []string {
	var out []string
	for _, d := range dirs {
		if d != "" && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}
