package localrepo

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

// deriveFixture is a repository whose HEAD holds a bit of everything a
// tree can: files in directories, an executable, a symlink, a gitlink (a
// submodule without its repository) and a subdirectory to derive.
type deriveFixture struct {
	git    *repotest.Repo
	repo   *Repo
	source plumbing.Hash
}

// gitlinkCommit is the commit the fixture's gitlink records; nothing needs
// to have it.
const gitlinkCommit = "1111111111111111111111111111111111111111"

func newDeriveFixture(t *testing.T) deriveFixture {
	t.Helper()
	repotest.RequireGit(t)
	g := repotest.New(t)
	g.Write(t, map[string]string{
		"README":              "readme\n",
		"run.sh":              "#!/bin/sh\necho run\n",
		"bin/old":             "old binary\n",
		"svc/api/main.go":     "package main\n",
		"svc/api/conf/a.conf": "a=1\n",
		"svc/web/index.html":  "<html>\n",
		"lib/x.go":            "package lib\n",
	})
	if err := os.Chmod(filepath.Join(g.Dir, "run.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../README", filepath.Join(g.Dir, "svc", "api", "README")); err != nil {
		t.Fatal(err)
	}
	g.Git(t, "add", "-A")
	g.Git(t, "update-index", "--add", "--cacheinfo", "160000,"+gitlinkCommit+",vendor/mod")
	g.Git(t, "commit", "-q", "-m", "source")
	// An unpopulated submodule, as git leaves one: an empty directory.
	if err := os.MkdirAll(filepath.Join(g.Dir, "vendor", "mod"), 0o755); err != nil {
		t.Fatal(err)
	}
	return deriveFixture{git: g, repo: deriveOpen(t, g.Dir), source: plumbing.NewHash(g.Head(t))}
}

func deriveOpen(t *testing.T, dir string) *Repo {
	t.Helper()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// commit makes a new commit in the fixture changing files, and returns it.
func (f deriveFixture) commit(t *testing.T, msg string, files map[string]string) plumbing.Hash {
	t.Helper()
	return plumbing.NewHash(f.git.Commit(t, msg, files))
}

// deriveArtifact writes a local file (an artifact) under a new temporary
// directory and returns its path.
func deriveArtifact(t *testing.T, name, content string, perm os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, perm); err != nil { // the umask had its say
		t.Fatal(err)
	}
	return p
}

// deriveFsck runs git's own full check of the repository's objects.
func deriveFsck(t *testing.T, g *repotest.Repo) {
	t.Helper()
	g.Git(t, "fsck", "--full", "--strict", "--no-dangling")
}

// deriveLsTree is `git ls-tree -r` of rev: path → "mode type hash".
func deriveLsTree(t *testing.T, g *repotest.Repo, rev string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, line := range strings.Split(g.Git(t, "ls-tree", "-r", rev), "\n") {
		if line == "" {
			continue
		}
		meta, path, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("ls-tree line %q", line)
		}
		out[path] = meta
	}
	return out
}

// deriveBlob is the ls-tree meta of a blob with the given mode and content,
// hashed by git.
func deriveBlob(t *testing.T, g *repotest.Repo, mode, file string) string {
	t.Helper()
	return mode + " blob " + g.Git(t, "hash-object", file)
}

// deriveState is everything of a working copy that deriving must not change:
// HEAD, its branch, branches and tags, the status, the index, and every
// file of the working copy with its mode and content.
func deriveState(t *testing.T, g *repotest.Repo) string {
	t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"rev-parse", "HEAD"}, {"symbolic-ref", "HEAD"}, {"status", "--porcelain", "--ignored"},
		{"for-each-ref", "--format=%(refname) %(objectname)", "refs/heads", "refs/tags"},
		{"ls-files", "-s"},
	} {
		b.WriteString(g.Git(t, args...) + "\n--\n")
	}
	err := filepath.WalkDir(g.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Name() == ".git" {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b.WriteString(p + " " + info.Mode().String())
		if info.Mode().IsRegular() {
			c, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			b.WriteString(" " + string(c))
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestDeriveDeterministic(t *testing.T) {
	t.Parallel()
	f := newDeriveFixture(t)
	ctx := context.Background()
	bin := deriveArtifact(t, "app", "binary v1\n", 0o755)
	d := Derivation{Source: f.source, Artifacts: []Artifact{{Path: "bin/app", File: bin}}}

	first, err := f.repo.DeployCommit(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	objects := f.git.Git(t, "count-objects")
	again, err := f.repo.DeployCommit(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if got := f.git.Git(t, "count-objects"); got != objects {
		t.Errorf("the same derivation again wrote objects: %s, was %s", got, objects)
	}
	if again != first {
		t.Fatalf("second DeployCommit = %s, first gave %s", again, first)
	}
	// The same inputs in another clone give the same commit.
	clone := repotest.Clone(t, f.git.Dir)
	other, err := deriveOpen(t, clone.Dir).DeployCommit(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	if other != first {
		t.Errorf("DeployCommit in a clone = %s, want %s", other, first)
	}
	deriveFsck(t, f.git)
	deriveFsck(t, clone)

	// What git sees: one parent, the source; the fixed identity and date;
	// the message naming the source.
	if got := f.git.Git(t, "rev-parse", first.String()+"^@"); got != f.source.String() {
		t.Errorf("parents of the deploy commit = %q, want the source %s", got, f.source)
	}
	if got, want := f.git.Git(t, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%ct|%B", first.String()),
		"gitric <gitric@localhost>|gitric <gitric@localhost>|"+f.git.Git(t, "log", "-1", "--format=%ct", f.source.String())+
			"|gitric deploy of "+f.source.String(); got != want {
		t.Errorf("deploy commit reads\n%q\nwant\n%q", got, want)
	}
	if got := f.git.Git(t, "rev-parse", "refs/gitric/deploy/"+f.source.String()); got != first.String() {
		t.Errorf("refs/gitric/deploy/<source> = %s, want %s", got, first)
	}
	if h, ok := f.repo.LastDeployCommit(f.source); !ok || h != first {
		t.Errorf("LastDeployCommit = %s %v, want %s", h, ok, first)
	}
	blob := f.git.Git(t, "rev-parse", first.String()+":bin/app")

	// One byte more: another commit.
	changed := deriveArtifact(t, "app", "binary v1\n!", 0o755)
	second, err := f.repo.DeployCommit(ctx, Derivation{Source: f.source, Artifacts: []Artifact{{Path: "bin/app", File: changed}}})
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatal("a changed artifact gave the same commit")
	}
	if h, _ := f.repo.LastDeployCommit(f.source); h != second {
		t.Errorf("LastDeployCommit after a rebuild = %s, want %s", h, second)
	}

	// A new source commit with the old binary: the blob is the one git
	// already has, so a push does not send it again.
	next := f.commit(t, "next", map[string]string{"README": "readme 2\n"})
	third, err := f.repo.DeployCommit(ctx, Derivation{Source: next, Artifacts: []Artifact{{Path: "bin/app", File: bin}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.git.Git(t, "rev-parse", third.String()+":bin/app"); got != blob {
		t.Errorf("unchanged binary on a new source has blob %s, want %s", got, blob)
	}
	if got := f.git.Git(t, "rev-parse", third.String()+"^"); got != next.String() {
		t.Errorf("parent = %s, want %s", got, next)
	}
	deriveFsck(t, f.git)
}

func TestDeriveTree(t *testing.T) {
	t.Parallel()
	f := newDeriveFixture(t)
	g := f.git
	readme := deriveArtifact(t, "README", "new readme\n", 0o644)
	exe := deriveArtifact(t, "app", "\x7fELF binary\n", 0o755)
	plain := deriveArtifact(t, "data", "data\n", 0o644)
	// A directory artifact: nested files, an executable, a symlink, and an
	// empty directory (left out).
	dist := t.TempDir()
	for name, body := range map[string]string{"index.html": "<p>\n", "js/app.js": "js\n", "tools/run": "#!/bin/sh\n"} {
		p := filepath.Join(dist, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dist, "tools", "run"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("js/app.js", filepath.Join(dist, "latest.js")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dist, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A symlink to a file, named as an artifact itself, is followed.
	linked := filepath.Join(t.TempDir(), "linked")
	if err := os.Symlink(exe, linked); err != nil {
		t.Fatal(err)
	}
	linkedDir := filepath.Join(t.TempDir(), "dist")
	if err := os.Symlink(dist, linkedDir); err != nil {
		t.Fatal(err)
	}
	symlinkBlob := func(target string) string {
		p := deriveArtifact(t, "target", target, 0o644)
		return deriveBlob(t, g, "120000", p)
	}

	tests := []struct {
		name      string
		subdir    string
		artifacts []Artifact
		want      map[string]string // ls-tree entries changed from the base tree
	}{
		{
			name:      "replace tracked file",
			artifacts: []Artifact{{Path: "README", File: readme}},
			want:      map[string]string{"README": deriveBlob(t, g, "100644", readme)},
		},
		{
			name:      "executable bit kept, new directories",
			artifacts: []Artifact{{Path: "bin/app", File: exe}, {Path: "deep/er/data", File: plain}},
			want: map[string]string{
				"bin/app":      deriveBlob(t, g, "100755", exe),
				"deep/er/data": deriveBlob(t, g, "100644", plain),
			},
		},
		{
			name:      "non-executable replaces executable",
			artifacts: []Artifact{{Path: "run.sh", File: plain}},
			want:      map[string]string{"run.sh": deriveBlob(t, g, "100644", plain)},
		},
		{
			name:      "file replaces symlink",
			artifacts: []Artifact{{Path: "svc/api/README", File: plain}},
			want:      map[string]string{"svc/api/README": deriveBlob(t, g, "100644", plain)},
		},
		{
			name:      "symlink artifact followed",
			artifacts: []Artifact{{Path: "bin/linked", File: linked}},
			want:      map[string]string{"bin/linked": deriveBlob(t, g, "100755", exe)},
		},
		{
			name:      "directory artifact",
			artifacts: []Artifact{{Path: "www", File: dist}},
			want: map[string]string{
				"www/index.html": deriveBlob(t, g, "100644", filepath.Join(dist, "index.html")),
				"www/js/app.js":  deriveBlob(t, g, "100644", filepath.Join(dist, "js", "app.js")),
				"www/tools/run":  deriveBlob(t, g, "100755", filepath.Join(dist, "tools", "run")),
				"www/latest.js":  symlinkBlob("js/app.js"),
			},
		},
		{
			name:      "symlink to a directory artifact followed",
			artifacts: []Artifact{{Path: "www", File: linkedDir}},
			want: map[string]string{
				"www/index.html": deriveBlob(t, g, "100644", filepath.Join(dist, "index.html")),
				"www/js/app.js":  deriveBlob(t, g, "100644", filepath.Join(dist, "js", "app.js")),
				"www/tools/run":  deriveBlob(t, g, "100755", filepath.Join(dist, "tools", "run")),
				"www/latest.js":  symlinkBlob("js/app.js"),
			},
		},
		{
			name:      "directory artifact merged into a tracked directory",
			artifacts: []Artifact{{Path: "svc/web", File: dist}},
			want: map[string]string{
				"svc/web/index.html": deriveBlob(t, g, "100644", filepath.Join(dist, "index.html")),
				"svc/web/js/app.js":  deriveBlob(t, g, "100644", filepath.Join(dist, "js", "app.js")),
				"svc/web/tools/run":  deriveBlob(t, g, "100755", filepath.Join(dist, "tools", "run")),
				"svc/web/latest.js":  symlinkBlob("js/app.js"),
			},
		},
		{
			name:      "subdir with artifacts",
			subdir:    "svc/api",
			artifacts: []Artifact{{Path: "main.go", File: plain}, {Path: "bin/app", File: exe}},
			want: map[string]string{
				"main.go": deriveBlob(t, g, "100644", plain),
				"bin/app": deriveBlob(t, g, "100755", exe),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := f.repo.DeployCommit(context.Background(), Derivation{Source: f.source, Subdir: tt.subdir, Artifacts: tt.artifacts})
			if err != nil {
				t.Fatal(err)
			}
			base := f.source.String()
			if tt.subdir != "" {
				base += ":" + tt.subdir
			}
			want := deriveLsTree(t, g, base)
			for p, e := range tt.want {
				want[p] = e
			}
			got := deriveLsTree(t, g, h.String())
			for p, e := range want {
				if got[p] != e {
					t.Errorf("%s: %q, want %q", p, got[p], e)
				}
			}
			for p, e := range got {
				if _, ok := want[p]; !ok {
					t.Errorf("%s: %q, want nothing there", p, e)
				}
			}
		})
	}
	deriveFsck(t, g)
}

func TestDeriveErrors(t *testing.T) {
	t.Parallel()
	f := newDeriveFixture(t)
	file := deriveArtifact(t, "file", "x\n", 0o644)
	dir := filepath.Dir(deriveArtifact(t, "d/inner", "y\n", 0o644))
	tests := []struct {
		name string
		d    Derivation
		want error // nil: any error
	}{
		{"file over directory", Derivation{Artifacts: []Artifact{{Path: "svc", File: file}}}, ErrArtifactConflict},
		{"file over submodule", Derivation{Artifacts: []Artifact{{Path: "vendor/mod", File: file}}}, ErrArtifactConflict},
		{"directory over file", Derivation{Artifacts: []Artifact{{Path: "README", File: dir}}}, ErrArtifactConflict},
		{"file under file", Derivation{Artifacts: []Artifact{{Path: "README/x", File: file}}}, ErrArtifactConflict},
		{"under a symlink", Derivation{Artifacts: []Artifact{{Path: "svc/api/README/x", File: file}}}, ErrArtifactConflict},
		{"same path twice", Derivation{Artifacts: []Artifact{{Path: "bin/a", File: file}, {Path: "bin/a", File: file}}}, ErrArtifactConflict},
		{"file and files under it", Derivation{Artifacts: []Artifact{{Path: "bin", File: dir}, {Path: "bin/inner/z", File: file}}}, ErrArtifactConflict},
		{"artifact file and artifact dir", Derivation{Artifacts: []Artifact{{Path: "out", File: file}, {Path: "out/x", File: file}}}, ErrArtifactConflict},
		{"dot dot", Derivation{Artifacts: []Artifact{{Path: "../x", File: file}}}, ErrUnsafePath},
		{"dot git", Derivation{Artifacts: []Artifact{{Path: "a/.GIT/hooks/x", File: file}}}, ErrUnsafePath},
		{"empty path", Derivation{Artifacts: []Artifact{{Path: "", File: file}}}, ErrUnsafePath},
		{"absolute path", Derivation{Artifacts: []Artifact{{Path: "/x", File: file}}}, ErrUnsafePath},
		{"double slash", Derivation{Artifacts: []Artifact{{Path: "a//b", File: file}}}, ErrUnsafePath},
		{"missing file", Derivation{Artifacts: []Artifact{{Path: "x", File: filepath.Join(dir, "nope")}}}, fs.ErrNotExist},
		{"missing subdir", Derivation{Subdir: "svc/nope"}, ErrNoSubdir},
		{"subdir is a file", Derivation{Subdir: "svc/api/main.go"}, ErrNoSubdir},
		{"subdir is a submodule", Derivation{Subdir: "vendor/mod"}, ErrNoSubdir},
		{"subdir with dot dot", Derivation{Subdir: "svc/../lib"}, ErrUnsafePath},
		{"subdir with newline", Derivation{Subdir: "svc\nSubdir: x"}, ErrUnsafePath},
		{"parent without subdir", Derivation{Parent: plumbing.NewHash(gitlinkCommit), Artifacts: []Artifact{{Path: "x", File: file}}}, nil},
		{"unknown parent", Derivation{Subdir: "svc", Parent: plumbing.NewHash(gitlinkCommit)}, ErrUnknownRevision},
		{"unknown source", Derivation{Source: plumbing.NewHash(gitlinkCommit), Artifacts: []Artifact{{Path: "x", File: file}}}, ErrUnknownRevision},
	}
	before := deriveState(t, f.git)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.d.Source.IsZero() {
				tt.d.Source = f.source
			}
			h, err := f.repo.DeployCommit(context.Background(), tt.d)
			if err == nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("DeployCommit = %s, %v; want an error wrapping %v", h, err, tt.want)
			}
			t.Log(err)
		})
	}
	if refs := f.git.Git(t, "for-each-ref", "refs/gitric"); refs != "" {
		t.Errorf("failed derivations left refs:\n%s", refs)
	}
	if after := deriveState(t, f.git); after != before {
		t.Errorf("failed derivations changed the repository:\n%s\nwas\n%s", after, before)
	}
	deriveFsck(t, f.git)
}

func TestDeriveSubdirChain(t *testing.T) {
	t.Parallel()
	f := newDeriveFixture(t)
	g := f.git
	ctx := context.Background()
	derive := func(source, parent plumbing.Hash, subdir string) plumbing.Hash {
		t.Helper()
		h, err := f.repo.DeployCommit(ctx, Derivation{Source: source, Subdir: subdir, Parent: parent})
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	checkDerived := func(h, source, parent plumbing.Hash) {
		t.Helper()
		if got, want := g.Git(t, "rev-parse", h.String()+"^{tree}"), g.Git(t, "rev-parse", source.String()+":svc/api"); got != want {
			t.Errorf("tree of %s = %s, want %s:svc/api = %s", h, got, source, want)
		}
		wantParents := ""
		if !parent.IsZero() {
			wantParents = parent.String()
		}
		if got := g.Git(t, "log", "-1", "--format=%P", h.String()); got != wantParents {
			t.Errorf("parents of %s = %q, want %q", h, got, wantParents)
		}
		if got := g.Git(t, "rev-parse", "refs/gitric/subdir/"+source.String()+"/"+h.String()); got != h.String() {
			t.Errorf("ref for %s = %s", h, got)
		}
		if s, sub, ok := f.repo.SourceOf(h); !ok || s != source || sub != "svc/api" {
			t.Errorf("SourceOf(%s) = %s %q %v, want %s svc/api", h, s, sub, ok, source)
		}
	}

	s1 := f.source
	d1 := derive(s1, plumbing.ZeroHash, "svc/api")
	checkDerived(d1, s1, plumbing.ZeroHash)
	if got := g.Git(t, "log", "-1", "--format=%B", d1.String()); got != "gitric deploy of "+s1.String()+"\nSubdir: svc/api" {
		t.Errorf("message %q", got)
	}
	if again := derive(s1, plumbing.ZeroHash, "/svc/api/"); again != d1 {
		t.Errorf("Subdir /svc/api/ gave %s, svc/api gave %s", again, d1)
	}

	s2 := f.commit(t, "change the api", map[string]string{"svc/api/main.go": "package main // 2\n"})
	d2 := derive(s2, d1, "svc/api")
	checkDerived(d2, s2, d1)

	// A source commit that changes nothing under svc/api: already there.
	s3 := f.commit(t, "change the web", map[string]string{"svc/web/index.html": "<html>2\n"})
	if d3 := derive(s3, d2, "svc/api"); d3 != d2 {
		t.Errorf("unchanged subdirectory gave %s, want the parent %s", d3, d2)
	}

	// A rollback to s1 continues the chain: a new commit with s1's tree.
	back := derive(s1, d2, "svc/api")
	if back == d1 || back == d2 {
		t.Fatalf("rollback gave %s, an existing commit", back)
	}
	checkDerived(back, s1, d2)
	if got, want := g.Git(t, "rev-list", back.String()), strings.Join([]string{back.String(), d2.String(), d1.String()}, "\n"); got != want {
		t.Errorf("chain:\n%s\nwant\n%s", got, want)
	}
	// The chain never reaches the monorepo's history.
	if g.Git(t, "rev-list", back.String(), "^"+s1.String()) != g.Git(t, "rev-list", back.String()) {
		t.Error("derived chain shares history with the source")
	}
	// d1 is still kept by its own ref, although s1 now has another.
	if got := g.Git(t, "for-each-ref", "--format=%(objectname)", "refs/gitric/subdir/"+s1.String()+"/"); got != strings.Join(slices.Sorted(slices.Values([]string{d1.String(), back.String()})), "\n") {
		t.Errorf("refs for s1: %s", got)
	}
	deriveFsck(t, g)
	g.Git(t, "gc", "-q", "--prune=now")
	deriveFsck(t, g)
	for _, h := range []plumbing.Hash{d1, d2, back} {
		g.Git(t, "cat-file", "-e", h.String())
	}
}

func TestDeriveLeavesRepositoryAlone(t *testing.T) {
	t.Parallel()
	for _, dirty := range []bool{false, true} {
		name := "clean"
		if dirty {
			name = "dirty"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f := newDeriveFixture(t)
			g := f.git
			if dirty {
				g.Write(t, map[string]string{"README": "edited\n", "staged": "s\n", "untracked": "u\n"})
				g.Git(t, "add", "staged")
			} else if st := g.Git(t, "status", "--porcelain"); st != "" {
				t.Fatalf("fixture not clean: %s", st)
			}
			g.Git(t, "branch", "other")
			g.Git(t, "tag", "v1")
			head := g.Head(t)
			before := deriveState(t, g)
			ctx := context.Background()
			bin := deriveArtifact(t, "app", "bin\n", 0o755)
			h, err := f.repo.DeployCommit(ctx, Derivation{Source: f.source, Artifacts: []Artifact{{Path: "README", File: bin}}})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.repo.DeployCommit(ctx, Derivation{Source: f.source, Subdir: "svc", Artifacts: []Artifact{{Path: "bin/app", File: bin}}}); err != nil {
				t.Fatal(err)
			}
			if err := f.repo.Checkout(ctx, h, t.TempDir()); err != nil {
				t.Fatal(err)
			}
			if after := deriveState(t, g); after != before {
				t.Errorf("repository changed:\n%s\nwas\n%s", after, before)
			}
			if got := g.Head(t); got != head {
				t.Errorf("HEAD = %s, was %s", got, head)
			}
			if !dirty {
				if st := g.Git(t, "status", "--porcelain"); st != "" {
					t.Errorf("status after deriving: %s", st)
				}
			}
			// Only refs of gitric's own were added.
			for _, ref := range strings.Split(g.Git(t, "for-each-ref", "--format=%(refname)"), "\n") {
				if !strings.HasPrefix(ref, "refs/gitric/") && ref != "refs/heads/main" && ref != "refs/heads/other" && ref != "refs/tags/v1" {
					t.Errorf("unexpected ref %s", ref)
				}
			}
			deriveFsck(t, g)
		})
	}
}

func TestDeriveCheckout(t *testing.T) {
	t.Parallel()
	f := newDeriveFixture(t)
	ctx := context.Background()
	bin := deriveArtifact(t, "app", "binary\n", 0o755)
	deployed, err := f.repo.DeployCommit(ctx, Derivation{Source: f.source, Artifacts: []Artifact{{Path: "bin/app", File: bin}}})
	if err != nil {
		t.Fatal(err)
	}
	before := deriveState(t, f.git)
	for _, commit := range []plumbing.Hash{f.source, deployed} {
		dir := t.TempDir()
		if err := f.repo.Checkout(ctx, commit, dir); err != nil {
			t.Fatal(err)
		}
		deriveCheckCheckout(t, f.git, commit.String(), dir)
	}
	if after := deriveState(t, f.git); after != before {
		t.Errorf("Checkout changed the repository:\n%s\nwas\n%s", after, before)
	}

	// Not into a directory with something in it.
	full := filepath.Dir(deriveArtifact(t, "x", "x", 0o644))
	if err := f.repo.Checkout(ctx, f.source, full); err == nil {
		t.Error("Checkout into a non-empty directory succeeded")
	}
	// Not a commit.
	if err := f.repo.Checkout(ctx, plumbing.NewHash(gitlinkCommit), t.TempDir()); !errors.Is(err, ErrUnknownRevision) {
		t.Errorf("Checkout of an unknown commit = %v, want ErrUnknownRevision", err)
	}
	// Cancelled.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := f.repo.Checkout(cancelled, f.source, t.TempDir()); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled Checkout = %v, want context.Canceled", err)
	}
}

// deriveCheckCheckout compares dir with `git ls-tree -r` of rev: every file with
// its content and executable bit, every symlink with its target, every
// gitlink an empty directory, and nothing else.
func deriveCheckCheckout(t *testing.T, g *repotest.Repo, rev, dir string) {
	t.Helper()
	want := deriveLsTree(t, g, rev)
	seen := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel := filepath.ToSlash(strings.TrimPrefix(p, dir+string(filepath.Separator)))
		meta, ok := want[rel]
		if !ok {
			if d.IsDir() {
				return nil // a directory on the way
			}
			t.Errorf("%s: written, not in %s", rel, rev)
			return nil
		}
		seen[rel] = true
		mode, _, _ := strings.Cut(meta, " ")
		hash := meta[strings.LastIndex(meta, " ")+1:]
		info, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch mode {
		case "160000":
			if entries, _ := os.ReadDir(p); !info.IsDir() || len(entries) > 0 {
				t.Errorf("%s: gitlink not an empty directory", rel)
			}
		case "120000":
			target, err := os.Readlink(p)
			if err != nil {
				t.Errorf("%s: %v", rel, err)
			} else if want := g.Git(t, "cat-file", "blob", hash); target != want {
				t.Errorf("%s: symlink to %q, want %q", rel, target, want)
			}
		default:
			if !info.Mode().IsRegular() {
				t.Errorf("%s: %s, want a regular file", rel, info.Mode())
				return nil
			}
			if exec := info.Mode().Perm()&0o100 != 0; exec != (mode == "100755") {
				t.Errorf("%s: mode %s for git mode %s", rel, info.Mode(), mode)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if h := g.Git(t, "hash-object", p); h != hash {
				t.Errorf("%s: content %q hashes to %s, want %s", rel, got, h, hash)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range want {
		if !seen[p] {
			t.Errorf("%s: in %s, not written", p, rev)
		}
	}
	if _, err := os.Lstat(filepath.Join(dir, ".git")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("checkout has a .git: %v", err)
	}
}

// TestDeriveCheckoutHostileTree checks that a tree with names git itself
// would refuse writes nothing, inside the directory or out.
func TestDeriveCheckoutHostileTree(t *testing.T) {
	t.Parallel()
	f := newDeriveFixture(t)
	blob, err := f.repo.storeBytes(plumbing.BlobObject, []byte("evil\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"..", ".git", ".Git", "."} {
		t.Run(name, func(t *testing.T) {
			tree, err := f.repo.storeBytes(plumbing.TreeObject, encodeTree([]object.TreeEntry{{Name: name, Mode: filemode.Regular, Hash: blob}}))
			if err != nil {
				t.Fatal(err)
			}
			commit, err := f.repo.storeBytes(plumbing.CommitObject, encodeCommit(tree, nil, time.Unix(0, 0).UTC(), "hostile\n"))
			if err != nil {
				t.Fatal(err)
			}
			parent := t.TempDir()
			dir := filepath.Join(parent, "co")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := f.repo.Checkout(context.Background(), commit, dir); !errors.Is(err, ErrUnsafePath) {
				t.Errorf("Checkout = %v, want ErrUnsafePath", err)
			}
			for _, d := range []string{parent, dir} {
				entries, _ := os.ReadDir(d)
				if d == parent && len(entries) != 1 || d == dir && len(entries) != 0 {
					t.Errorf("%s holds %v", d, entries)
				}
			}
		})
	}
}

// TestDeriveCheckoutMany checks that a checkout of a few thousand files is
// quick.
func TestDeriveCheckoutMany(t *testing.T) {
	t.Parallel()
	repotest.RequireGit(t)
	g := repotest.New(t)
	g.History(t, 1, 3000)
	r := deriveOpen(t, g.Dir)
	dir := t.TempDir()
	start := time.Now()
	if err := r.Checkout(context.Background(), plumbing.NewHash(g.Head(t)), dir); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("checkout of 3000 files: %s", took)
	if took > 20*time.Second {
		t.Errorf("checkout of 3000 files took %s", took)
	}
	if out := g.Git(t, "--work-tree="+dir, "status", "--porcelain"); out != "" {
		t.Errorf("git sees differences between the checkout and HEAD:\n%s", out)
	}
}

func TestDeriveSourceOf(t *testing.T) {
	t.Parallel()
	f := newDeriveFixture(t)
	ctx := context.Background()
	bin := deriveArtifact(t, "app", "bin\n", 0o755)
	deployed, err := f.repo.DeployCommit(ctx, Derivation{Source: f.source, Artifacts: []Artifact{{Path: "bin/app", File: bin}}})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := f.repo.DeployCommit(ctx, Derivation{Source: f.source, Subdir: "svc/web"})
	if err != nil {
		t.Fatal(err)
	}
	// A commit of anyone else with the same message is not a deploy commit.
	f.git.Git(t, "commit", "-q", "--allow-empty", "-m", "gitric deploy of "+f.source.String())
	impostor := plumbing.NewHash(f.git.Head(t))
	// Nor is gitric's identity with another message.
	f.git.Git(t, "-c", "user.name=gitric", "-c", "user.email=gitric@localhost", "commit", "-q", "--allow-empty", "-m", "gitric deploy of "+f.source.String()+"\nextra")
	extra := plumbing.NewHash(f.git.Head(t))

	tests := []struct {
		name   string
		commit plumbing.Hash
		source plumbing.Hash
		subdir string
		ok     bool
	}{
		{"artifacts", deployed, f.source, "", true},
		{"subdir", sub, f.source, "svc/web", true},
		{"source commit", f.source, plumbing.ZeroHash, "", false},
		{"same message, other author", impostor, plumbing.ZeroHash, "", false},
		{"extra line", extra, plumbing.ZeroHash, "", false},
		{"unknown", plumbing.NewHash(gitlinkCommit), plumbing.ZeroHash, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, d, ok := f.repo.SourceOf(tt.commit)
			if s != tt.source || d != tt.subdir || ok != tt.ok {
				t.Errorf("SourceOf(%s) = %s %q %v, want %s %q %v", tt.commit, s, d, ok, tt.source, tt.subdir, tt.ok)
			}
		})
	}
	if _, ok := f.repo.LastDeployCommit(impostor); ok {
		t.Error("LastDeployCommit of a source never deployed found one")
	}
}

func TestDeriveNothingToDerive(t *testing.T) {
	t.Parallel()
	f := newDeriveFixture(t)
	h, err := f.repo.DeployCommit(context.Background(), Derivation{Source: f.source})
	if err != nil || h != f.source {
		t.Errorf("DeployCommit with nothing to derive = %s, %v; want the source %s", h, err, f.source)
	}
	if refs := f.git.Git(t, "for-each-ref", "refs/gitric"); refs != "" {
		t.Errorf("refs written: %s", refs)
	}
}

func TestDeriveCancelled(t *testing.T) {
	t.Parallel()
	f := newDeriveFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	bin := deriveArtifact(t, "app", "bin\n", 0o755)
	if _, err := f.repo.DeployCommit(ctx, Derivation{Source: f.source, Artifacts: []Artifact{{Path: "bin/app", File: bin}}}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled DeployCommit = %v, want context.Canceled", err)
	}
}

// TestDeriveChangedWhileRead checks that a file that does not hold what
// was hashed is not stored, and leaves no temporary file behind.
func TestDeriveChangedWhileRead(t *testing.T) {
	t.Parallel()
	f := newDeriveFixture(t)
	p := deriveArtifact(t, "app", "twelve bytes", 0o644)
	for _, tt := range []struct {
		name string
		size int64
		want plumbing.Hash
	}{
		{"grew", 5, plumbing.ComputeHash(plumbing.BlobObject, []byte("twelv"))},
		{"shrank", 20, plumbing.ComputeHash(plumbing.BlobObject, []byte("twelve bytes and mor"))},
		{"other content", 12, plumbing.ComputeHash(plumbing.BlobObject, []byte("twelve bytez"))},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rd, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer rd.Close()
			if err := f.repo.writeLoose(plumbing.BlobObject, tt.size, rd, tt.want); !errors.Is(err, errChanged) {
				t.Errorf("writeLoose = %v, want errChanged", err)
			}
			if f.repo.has(tt.want) {
				t.Error("the object was stored")
			}
			if _, err := hashFile(context.Background(), p, tt.size); tt.size != 12 && !errors.Is(err, errChanged) {
				t.Errorf("hashFile with size %d = %v, want errChanged", tt.size, err)
			}
		})
	}
	tmps, err := filepath.Glob(filepath.Join(f.git.Dir, ".git", "objects", "tmp_obj_*"))
	if err != nil || len(tmps) > 0 {
		t.Errorf("temporary files left: %v %v", tmps, err)
	}
	deriveFsck(t, f.git)
}

// TestDeriveLinkedWorktree checks that deriving from a linked worktree
// (`git worktree add`) stores the objects and refs where every worktree of
// the repository sees them, and leaves both working copies alone.
func TestDeriveLinkedWorktree(t *testing.T) {
	t.Parallel()
	f := newDeriveFixture(t)
	wtDir := filepath.Join(t.TempDir(), "wt")
	f.git.Git(t, "worktree", "add", "-q", "-b", "side", wtDir)
	wt := &repotest.Repo{Dir: wtDir}
	before, beforeWt := deriveState(t, f.git), deriveState(t, wt)
	bin := deriveArtifact(t, "app", "bin\n", 0o755)
	h, err := deriveOpen(t, wtDir).DeployCommit(context.Background(), Derivation{Source: f.source, Artifacts: []Artifact{{Path: "bin/app", File: bin}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []*repotest.Repo{f.git, wt} {
		if got := g.Git(t, "rev-parse", "refs/gitric/deploy/"+f.source.String()); got != h.String() {
			t.Errorf("%s: deploy ref = %s, want %s", g.Dir, got, h)
		}
		g.Git(t, "cat-file", "-e", h.String()+":bin/app")
	}
	if after := deriveState(t, f.git); after != before {
		t.Errorf("main working copy changed:\n%s\nwas\n%s", after, before)
	}
	if after := deriveState(t, wt); after != beforeWt {
		t.Errorf("linked worktree changed:\n%s\nwas\n%s", after, beforeWt)
	}
	deriveFsck(t, f.git)
}
