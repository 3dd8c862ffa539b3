package localrepo

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

func TestOpenNotRepository(t *testing.T) {
	_, err := Open(t.TempDir())
	if !errors.Is(err, ErrNotRepository) {
		t.Fatalf("Open(empty dir) = %v, want ErrNotRepository", err)
	}
}

func TestOpenFromSubdirectory(t *testing.T) {
	src := repotest.New(t)
	src.Commit(t, "one", map[string]string{"a/b/c.txt": "x"})
	r, err := Open(filepath.Join(src.Dir, "a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := filepath.EvalSymlinks(src.Dir)
	got, _ := filepath.EvalSymlinks(r.Root())
	if got != want {
		t.Errorf("Root() = %s, want %s", got, want)
	}
}

func TestResolve(t *testing.T) {
	src := repotest.New(t)
	first := src.Commit(t, "first commit\n\nbody", map[string]string{"a.txt": "1"})
	src.Git(t, "tag", "v1")
	src.Git(t, "tag", "-a", "-m", "annotated", "v1a")
	second := src.Commit(t, "second", map[string]string{"a.txt": "2"})
	src.Git(t, "branch", "old", first)
	r, err := Open(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rev, want, subject string
	}{
		{"", second, "second"},
		{"HEAD", second, "second"},
		{"HEAD~1", first, "first commit"},
		{"main", second, "second"},
		{"old", first, "first commit"},
		{"v1", first, "first commit"},
		{"v1a", first, "first commit"},
		{first, first, "first commit"},
		{first[:7], first, "first commit"},
	}
	for _, tt := range tests {
		c, err := r.Resolve(tt.rev)
		if err != nil {
			t.Errorf("Resolve(%q): %v", tt.rev, err)
			continue
		}
		if c.Hash.String() != tt.want || c.Subject != tt.subject {
			t.Errorf("Resolve(%q) = %s %q, want %s %q", tt.rev, c.Hash, c.Subject, tt.want, tt.subject)
		}
	}
	for _, bad := range []string{"nope", "0123456789abcdef0123456789abcdef01234567", "v2"} {
		if _, err := r.Resolve(bad); !errors.Is(err, ErrUnknownRevision) {
			t.Errorf("Resolve(%q) = %v, want ErrUnknownRevision", bad, err)
		}
	}
}

func TestResolveEmptyRepository(t *testing.T) {
	src := repotest.New(t)
	r, err := Open(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(""); !errors.Is(err, ErrUnknownRevision) {
		t.Fatalf("Resolve on an empty repository = %v, want ErrUnknownRevision", err)
	}
}

func TestChanges(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no global excludes from the machine
	t.Setenv("XDG_CONFIG_HOME", "")
	tests := []struct {
		name   string
		change func(t *testing.T, src *repotest.Repo)
		opts   StatusOptions
		want   []string
	}{
		{"clean", func(*testing.T, *repotest.Repo) {}, StatusOptions{}, nil},
		{"modified", func(t *testing.T, src *repotest.Repo) {
			src.Write(t, map[string]string{"a.txt": "changed"})
		}, StatusOptions{}, []string{"a.txt"}},
		{"staged", func(t *testing.T, src *repotest.Repo) {
			src.Write(t, map[string]string{"b.txt": "new"})
			src.Git(t, "add", "b.txt")
		}, StatusOptions{IgnoreUntracked: true}, []string{"b.txt"}},
		{"deleted", func(t *testing.T, src *repotest.Repo) {
			os.Remove(filepath.Join(src.Dir, "a.txt"))
		}, StatusOptions{}, []string{"a.txt"}},
		{"untracked", func(t *testing.T, src *repotest.Repo) {
			src.Write(t, map[string]string{"new.txt": "x"})
		}, StatusOptions{}, []string{"new.txt"}},
		{"untracked ignored by option", func(t *testing.T, src *repotest.Repo) {
			src.Write(t, map[string]string{"new.txt": "x"})
		}, StatusOptions{IgnoreUntracked: true}, nil},
		{"gitignored", func(t *testing.T, src *repotest.Repo) {
			src.Write(t, map[string]string{"build/out.bin": "x", "x.log": "x"})
		}, StatusOptions{}, nil},
		{"info/exclude", func(t *testing.T, src *repotest.Repo) {
			src.Write(t, map[string]string{".git/info/exclude": "secret.txt\n", "secret.txt": "x"})
		}, StatusOptions{}, nil},
		{"core.excludesFile", func(t *testing.T, src *repotest.Repo) {
			ex := filepath.Join(t.TempDir(), "ignore")
			os.WriteFile(ex, []byte("*.swp\n"), 0o644)
			os.WriteFile(filepath.Join(os.Getenv("HOME"), ".gitconfig"), []byte("[core]\n\texcludesFile = "+ex+"\n"), 0o644)
			t.Cleanup(func() { os.Remove(filepath.Join(os.Getenv("HOME"), ".gitconfig")) })
			src.Write(t, map[string]string{"a.txt.swp": "x"})
		}, StatusOptions{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := repotest.New(t)
			src.Commit(t, "one", map[string]string{"a.txt": "1", ".gitignore": "build/\n*.log\n"})
			tt.change(t, src)
			r, err := Open(src.Dir)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Changes(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Changes() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestIsAncestor(t *testing.T) {
	src := repotest.New(t)
	a := src.Commit(t, "a", map[string]string{"f": "a"})
	b := src.Commit(t, "b", map[string]string{"f": "b"})
	src.Git(t, "checkout", "-q", "-b", "side", a)
	c := src.Commit(t, "c", map[string]string{"g": "c"})
	src.Git(t, "checkout", "-q", "main")
	src.Git(t, "merge", "-q", "--no-edit", "side")
	m := src.Head(t)
	r, err := Open(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	h := plumbing.NewHash
	tests := []struct {
		a, b string
		want bool
	}{
		{a, b, true}, {b, a, false}, {a, a, true}, {c, m, true}, {b, m, true}, {m, c, false}, {b, c, false},
		{"0123456789abcdef0123456789abcdef01234567", m, false},
	}
	for _, tt := range tests {
		got, err := r.IsAncestor(h(tt.a), h(tt.b))
		if err != nil || got != tt.want {
			t.Errorf("IsAncestor(%.7s, %.7s) = %v, %v; want %v", tt.a, tt.b, got, err, tt.want)
		}
	}
}

func TestWritePackCountsOnlyNewObjects(t *testing.T) {
	src := repotest.New(t)
	src.History(t, 200, 50)
	r, err := Open(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	head, _ := r.Resolve("HEAD")
	prev, _ := r.Resolve("HEAD~1")
	ctx := context.Background()

	full, err := r.WritePack(ctx, io.Discard, head.Hash, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := countObjects(t, src); full.Objects != want || full.Commits != 200 {
		t.Errorf("full pack: %d objects, %d commits; want %d objects, 200 commits", full.Objects, full.Commits, want)
	}
	inc, err := r.WritePack(ctx, io.Discard, head.Hash, []plumbing.Hash{prev.Hash})
	if err != nil {
		t.Fatal(err)
	}
	// One commit that changes one file two directories deep: the commit,
	// three trees (root, dirNN, subN) and one blob.
	if inc.Commits != 1 || inc.Objects != 5 {
		t.Errorf("incremental pack: %d commits, %d objects; want 1 commit, 5 objects", inc.Commits, inc.Objects)
	}
	unknown := plumbing.NewHash("0123456789abcdef0123456789abcdef01234567")
	same, err := r.WritePack(ctx, io.Discard, head.Hash, []plumbing.Hash{head.Hash, unknown})
	if err != nil {
		t.Fatal(err)
	}
	if same.Objects != 0 {
		t.Errorf("pack for a target that has everything: %d objects, want 0", same.Objects)
	}
}

func countObjects(t *testing.T, src *repotest.Repo) int {
	t.Helper()
	out := src.Git(t, "rev-list", "--objects", "--all")
	n := 0
	for _, c := range out {
		if c == '\n' {
			n++
		}
	}
	return n + 1
}
