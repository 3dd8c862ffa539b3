package localrepo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

// license is one file in all three repositories of a fixture: the same blob
// in each, which a pack must carry once.
const license = "Permission is granted, free of charge.\n"

// subFixture is a superproject with a submodule (name "a", at libs/a) that
// has a submodule of its own (name "b", at vendor/b, so libs/a/vendor/b from
// the top), all cloned from local source repositories.
type subFixture struct {
	leaf, mid, super *repotest.Repo
	// Commits: b1 of leaf; a1 of mid, recording b1; s0 of super, with no
	// submodule, and s1, recording a1.
	b1, a1, s0, s1 string
}

func newSubFixture(t *testing.T) *subFixture {
	t.Helper()
	f := &subFixture{leaf: repotest.New(t), mid: repotest.New(t), super: repotest.New(t)}
	f.b1 = f.leaf.Commit(t, "leaf", map[string]string{"leaf.txt": "leaf 1\n", "LICENSE": license})
	f.mid.Commit(t, "mid", map[string]string{"mid.txt": "mid 1\n", "LICENSE": license})
	f.mid.AddSubmodule(t, "b", f.leaf.Dir, "vendor/b")
	f.a1 = f.mid.Commit(t, "add b", nil)
	f.s0 = f.super.Commit(t, "super", map[string]string{"app/main.txt": "app 1\n", "LICENSE": license})
	f.super.AddSubmodule(t, "a", f.mid.Dir, "libs/a")
	f.s1 = f.super.Commit(t, "add a", nil)
	f.super.Submodule(t, "update", "--init", "--recursive", "-q")
	return f
}

// moveSubmodules makes new commits in leaf and mid (b2, then a2 recording
// b2), moves the superproject's checkout to them and commits s2.
func (f *subFixture) moveSubmodules(t *testing.T) (b2, a2, s2 string) {
	t.Helper()
	b2 = f.leaf.Commit(t, "leaf 2", map[string]string{"leaf.txt": "leaf 2\n"})
	f.mid.Git(t, "-C", "vendor/b", "fetch", "-q")
	f.mid.Git(t, "-C", "vendor/b", "checkout", "-q", b2)
	a2 = f.mid.Commit(t, "move b", map[string]string{"mid.txt": "mid 2\n"})
	f.super.Git(t, "-C", "libs/a", "fetch", "-q")
	f.super.Git(t, "-C", "libs/a", "checkout", "-q", a2)
	f.super.Git(t, "-C", "libs/a", "-c", repotest.AllowFileProtocol, "submodule", "update", "--init", "--recursive", "-q")
	s2 = f.super.Commit(t, "move a", nil)
	return b2, a2, s2
}

// brief is what a test compares of a Submodule: everything but the
// repository handle.
func brief(subs []Submodule) string {
	var b strings.Builder
	for _, s := range subs {
		fmt.Fprintf(&b, "%s %s %s %s\n", s.Name, s.Path, s.GitDir, s.Commit)
	}
	return b.String()
}

func TestSubmodules(t *testing.T) {
	t.Parallel()
	f := newSubFixture(t)
	b2, a2, s2 := f.moveSubmodules(t)
	// Submodules reads .gitmodules from the commit, never the working copy.
	f.super.Write(t, map[string]string{".gitmodules": "[submodule \"zzz\"]\n\tpath = libs/a\n"})
	r, err := Open(f.super.Dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, commit, want string
	}{
		{"no submodules", f.s0, ""},
		{"nested", f.s1, "a libs/a .git/modules/a " + f.a1 + "\n" +
			"b libs/a/vendor/b .git/modules/a/modules/b " + f.b1 + "\n"},
		{"moved", s2, "a libs/a .git/modules/a " + a2 + "\n" +
			"b libs/a/vendor/b .git/modules/a/modules/b " + b2 + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			subs, err := r.Submodules(plumbing.NewHash(tt.commit))
			if err != nil {
				t.Fatal(err)
			}
			if got := brief(subs); got != tt.want {
				t.Errorf("Submodules(%.7s) =\n%s\nwant\n%s", tt.commit, got, tt.want)
			}
			for _, s := range subs {
				sr, err := r.OpenSubmodule(s)
				if err != nil {
					t.Fatal(err)
				}
				if _, ok := sr.Lookup(s.Commit); !ok {
					t.Errorf("OpenSubmodule(%s) lacks commit %s", s.Path, s.Commit)
				}
			}
		})
	}
}

// TestOpenSubmoduleByValue opens submodules described by hand, as a caller
// that stored a Submodule's fields would.
func TestOpenSubmoduleByValue(t *testing.T) {
	t.Parallel()
	f := newSubFixture(t)
	r, err := Open(f.super.Dir)
	if err != nil {
		t.Fatal(err)
	}
	subs, err := r.Submodules(plumbing.NewHash(f.s1))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		bare := Submodule{Name: s.Name, Path: s.Path, GitDir: s.GitDir, Commit: s.Commit}
		sr, err := r.OpenSubmodule(bare)
		if err != nil {
			t.Fatalf("OpenSubmodule(%s): %v", s.Path, err)
		}
		if got, want := sr.common, s.repo.common; got != want {
			t.Errorf("OpenSubmodule(%s) opened %s, want %s", s.Path, got, want)
		}
	}
	for _, bad := range []Submodule{
		{Name: "x", Path: "libs/a", GitDir: ".git/../x"},
		{Name: "x", Path: "../libs/a", GitDir: ".git/modules/a"},
	} {
		bad.Commit = plumbing.NewHash(f.a1)
		if _, err := r.OpenSubmodule(bad); err == nil {
			t.Errorf("OpenSubmodule(%+v) succeeded", bad)
		}
	}
	// Not checked out: the same error as from Submodules.
	c := repotest.Clone(t, f.super.Dir)
	rc, err := Open(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	bare := Submodule{Name: "a", Path: "libs/a", GitDir: ".git/modules/a", Commit: plumbing.NewHash(f.a1)}
	if _, err := rc.OpenSubmodule(bare); !errors.Is(err, ErrSubmoduleMissing) {
		t.Errorf("OpenSubmodule of a submodule not checked out = %v, want ErrSubmoduleMissing", err)
	}
}

// TestSubmodulesOtherLayouts finds submodule repositories that are not
// where `git submodule update` puts them: a .git directory in the
// submodule's working copy (a repository cloned in place), or a .git file
// pointing anywhere.
func TestSubmodulesOtherLayouts(t *testing.T) {
	t.Parallel()
	f := newSubFixture(t)
	tests := []struct {
		name  string
		clone []string // git clone arguments besides source and destination
	}{
		{"git directory in place", nil},
		{"separate git directory", []string{"--separate-git-dir", filepath.Join(t.TempDir(), "elsewhere.git")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			super := repotest.New(t)
			super.Commit(t, "top", map[string]string{"x.txt": "x"})
			dst := filepath.Join(super.Dir, "libs", "a")
			args := append([]string{"-c", repotest.AllowFileProtocol, "clone", "-q"}, tt.clone...)
			super.Git(t, append(args, f.mid.Dir, dst)...)
			super.Git(t, "-C", dst, "-c", repotest.AllowFileProtocol, "submodule", "update", "--init", "-q")
			super.Write(t, map[string]string{".gitmodules": "[submodule \"a\"]\n\tpath = libs/a\n\turl = " + f.mid.Dir + "\n"})
			commit := super.Commit(t, "add a by hand", nil)
			r, err := Open(super.Dir)
			if err != nil {
				t.Fatal(err)
			}
			subs, err := r.Submodules(plumbing.NewHash(commit))
			if err != nil {
				t.Fatal(err)
			}
			want := "a libs/a .git/modules/a " + f.a1 + "\n" +
				"b libs/a/vendor/b .git/modules/a/modules/b " + f.b1 + "\n"
			if got := brief(subs); got != want {
				t.Errorf("Submodules =\n%s\nwant\n%s", got, want)
			}
		})
	}
}

func TestSubmodulesErrors(t *testing.T) {
	t.Parallel()
	f := newSubFixture(t)
	// A commit of mid's that the superproject's copy of it never fetched:
	// made in a clone, since a local clone copies every object of mid.
	unfetched := repotest.Clone(t, f.mid.Dir).Commit(t, "not fetched", map[string]string{"mid.txt": "later\n"})

	tests := []struct {
		name  string
		setup func(t *testing.T) (dir, commit string)
		is    error
		says  []string // in the message
	}{
		{"not checked out", func(t *testing.T) (string, string) {
			c := repotest.Clone(t, f.super.Dir)
			return c.Dir, c.Head(t)
		}, ErrSubmoduleMissing, []string{"submodule libs/a ", "git submodule update --init --recursive"}},
		{"nested not checked out", func(t *testing.T) (string, string) {
			c := repotest.Clone(t, f.super.Dir)
			c.Submodule(t, "update", "--init", "-q")
			return c.Dir, c.Head(t)
		}, ErrSubmoduleMissing, []string{"submodule libs/a/vendor/b ", "git submodule update --init --recursive"}},
		{"commit missing", func(t *testing.T) (string, string) {
			c := repotest.Clone(t, f.super.Dir, "--recurse-submodules")
			c.Git(t, "update-index", "--cacheinfo", "160000,"+unfetched+",libs/a")
			c.Git(t, "commit", "-q", "-m", "record a commit we do not have")
			return c.Dir, c.Head(t)
		}, ErrSubmoduleMissing, []string{"submodule libs/a ", unfetched, "fetch it in libs/a"}},
		{"gitlink without .gitmodules entry", func(t *testing.T) (string, string) {
			c := repotest.New(t)
			c.Commit(t, "one", map[string]string{"x.txt": "x"})
			c.Git(t, "update-index", "--add", "--cacheinfo", "160000,"+f.a1+",ext/lib")
			c.Git(t, "commit", "-q", "-m", "stray gitlink")
			return c.Dir, c.Head(t)
		}, ErrNoGitmodulesEntry, []string{"submodule ext/lib", "git rm --cached ext/lib"}},
		{"nested gitlink without .gitmodules entry", func(t *testing.T) (string, string) {
			m := repotest.Clone(t, f.mid.Dir)
			m.Git(t, "rm", "-q", ".gitmodules")
			m.Commit(t, "drop .gitmodules", nil)
			s := repotest.New(t)
			s.AddSubmodule(t, "a", m.Dir, "libs/a")
			return s.Dir, s.Commit(t, "add a", nil)
		}, ErrNoGitmodulesEntry, []string{"submodule libs/a/vendor/b", "git -C libs/a rm --cached vendor/b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, commit := tt.setup(t)
			r, err := Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			subs, err := r.Submodules(plumbing.NewHash(commit))
			if !errors.Is(err, tt.is) {
				t.Fatalf("Submodules = %q, %v; want an error wrapping %v", brief(subs), err, tt.is)
			}
			t.Log(err)
			for _, s := range tt.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

func TestWritePacksDeduplicates(t *testing.T) {
	t.Parallel()
	f := newSubFixture(t)
	r, err := Open(f.super.Dir)
	if err != nil {
		t.Fatal(err)
	}
	s1 := plumbing.NewHash(f.s1)
	subs, err := r.Submodules(s1)
	if err != nil {
		t.Fatal(err)
	}
	parts := []PackPart{{Repo: r, Want: s1}}
	for _, s := range subs {
		parts = append(parts, PackPart{Repo: s.repo, Want: s.Commit})
	}
	ctx := context.Background()
	want, err := WritePacks(ctx, io.Discard, parts)
	if err != nil {
		t.Fatal(err)
	}
	// Objects of the three repositories: commits s0, s1, a0, a1, b1; the
	// root trees of those commits,, plus app/, libs/ and vendor/;
	// blobs LICENSE (one for all three), app/main.txt, the two
	// .gitmodules, mid.txt, leaf.txt.
	if want.Commits != 5 || want.Objects != 5+8+6 {
		t.Errorf("WritePacks: %d commits, %d objects; want 5 commits, 19 objects", want.Commits, want.Objects)
	}
	// The same submodule twice, or a part whose want another part already
	// sends, adds nothing.
	twice := append(parts, parts[1], PackPart{Repo: r, Want: plumbing.NewHash(f.s0)})
	got, err := WritePacks(ctx, io.Discard, twice)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("WritePacks with repeated parts = %+v, want %+v", got, want)
	}
	// Haves of any part count for all: the target's store is shared.
	haves := []plumbing.Hash{plumbing.NewHash(f.a1)}
	inc, err := WritePacks(ctx, io.Discard, []PackPart{{Repo: r, Want: s1, Haves: haves}, {Repo: parts[1].Repo, Want: parts[1].Want, Haves: haves}})
	if err != nil {
		t.Fatal(err)
	}
	// The superproject's commits, root trees and app/ and libs/ trees, its
	// .gitmodules, app/main.txt and LICENSE: a1's tree has LICENSE too,
	// but nothing of a1 changes, and the sparse walk reads only the
	// trees on the paths a part's new commits change.
	if inc.Commits != 2 || inc.Objects != 2+4+3 {
		t.Errorf("WritePacks for a target with a1: %d commits, %d objects; want 2 commits, 9 objects", inc.Commits, inc.Objects)
	}
	if _, err := WritePacks(ctx, io.Discard, []PackPart{{Want: s1}}); err == nil {
		t.Errorf("WritePacks with a part without a repository succeeded")
	}
}

// TestSubmodulesMissingWorktree reads a submodule whose working copy was
// removed (`git submodule deinit`): its repository is still in .git/modules.
func TestSubmodulesMissingWorktree(t *testing.T) {
	t.Parallel()
	f := newSubFixture(t)
	f.super.Git(t, "submodule", "deinit", "-q", "--force", "--all")
	if _, err := os.Stat(filepath.Join(f.super.Dir, "libs", "a", "mid.txt")); !os.IsNotExist(err) {
		t.Fatalf("deinit left libs/a checked out: %v", err)
	}
	r, err := Open(f.super.Dir)
	if err != nil {
		t.Fatal(err)
	}
	subs, err := r.Submodules(plumbing.NewHash(f.s1))
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 {
		t.Errorf("Submodules after deinit = %q, want a and b", brief(subs))
	}
}

// TestSubmodulesLinkedWorktree lists submodules from a linked worktree of
// the superproject, whose own git directory has no modules/: the
// repositories under the common git directory serve.
func TestSubmodulesLinkedWorktree(t *testing.T) {
	t.Parallel()
	f := newSubFixture(t)
	wt := filepath.Join(t.TempDir(), "wt")
	f.super.Git(t, "worktree", "add", "-q", "--detach", wt, f.s1)
	r, err := Open(wt)
	if err != nil {
		t.Fatal(err)
	}
	subs, err := r.Submodules(plumbing.NewHash(f.s1))
	if err != nil {
		t.Fatal(err)
	}
	want := "a libs/a .git/modules/a " + f.a1 + "\n" +
		"b libs/a/vendor/b .git/modules/a/modules/b " + f.b1 + "\n"
	if got := brief(subs); got != want {
		t.Errorf("Submodules =\n%s\nwant\n%s", got, want)
	}
}
