package localrepo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/gitric/gitric/gitrictasks/internal/receivepack"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

// requireGit skips a test that needs the git command line when there is
// none, and fails it under CI=true, where git must be installed.
func requireGit(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("git is required under CI=true: %v", err)
		}
		t.Skipf("git is not installed: %v", err)
	}
}

// newTarget is a bare repository that checks what it receives: fsck of
// every object, and with indexPack every pack kept as sent (git
// index-pack --strict --fix-thin) rather than unpacked into loose objects
// (git unpack-objects, which receive-pack runs for small packs).
func newTarget(t *testing.T, indexPack bool) *repotest.Repo {
	t.Helper()
	tg := repotest.NewBare(t)
	tg.Git(t, "config", "receive.fsckObjects", "true")
	if indexPack {
		tg.Git(t, "config", "receive.unpackLimit", "1")
	} else {
		tg.Git(t, "config", "receive.unpackLimit", "100000")
	}
	return tg
}

// pushParts pushes parts to target through a real git receive-pack, the
// i-th part's Want to refs/heads/p<i> (the first's to refs/heads/main),
// with all the target's refs as haves, then runs git fsck --full on the
// target.
func pushParts(t *testing.T, target *repotest.Repo, parts []PackPart) PackStats {
	t.Helper()
	in, out, wait := repotest.ReceivePack(t, target.Dir)
	p, err := receivepack.Start(receivepack.Conn{In: in, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	haves := p.Refs().Hashes()
	var updates []receivepack.Update
	for i := range parts {
		parts[i].Haves = haves
		ref := "refs/heads/main"
		if i > 0 {
			ref = "refs/heads/p" + strconv.Itoa(i)
		}
		updates = append(updates, receivepack.Update{Ref: ref, Old: p.Refs()[ref], New: parts[i].Want})
	}
	var stats PackStats
	var packErr error
	err = p.Send(context.Background(), updates, func(w io.Writer) error {
		stats, packErr = WritePacks(context.Background(), w, parts)
		if packErr != nil {
			in.Close() // as the deploy does: receive-pack must not wait for the rest
		}
		return packErr
	}, nil)
	if packErr != nil {
		t.Fatalf("WritePacks: %v", packErr)
	}
	if werr := wait(); err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		t.Fatalf("push: %v", err)
	}
	target.Git(t, "fsck", "--full", "--strict", "--no-dangling")
	for i, part := range parts {
		if got := target.Git(t, "rev-parse", updates[i].Ref); got != part.Want.String() {
			t.Fatalf("%s on the target is %s, want %s", updates[i].Ref, got, part.Want)
		}
	}
	return stats
}

// push pushes commit of the repository in dir.
func pushRepo(t *testing.T, target *repotest.Repo, dir, commit string) PackStats {
	t.Helper()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return pushParts(t, target, []PackPart{{Repo: r, Want: plumbing.NewHash(commit)}})
}

// maxChain is the longest delta chain in the repository's packs, from git
// verify-pack.
func maxChain(t *testing.T, src *repotest.Repo) int {
	t.Helper()
	packs, _ := filepath.Glob(filepath.Join(src.Dir, ".git", "objects", "pack", "*.idx"))
	best := 0
	re := regexp.MustCompile(`(?m)^chain length = (\d+):`)
	for _, p := range packs {
		for _, m := range re.FindAllStringSubmatch(src.Git(t, "verify-pack", "-v", p), -1) {
			n, _ := strconv.Atoi(m[1])
			best = max(best, n)
		}
	}
	return best
}

// versions commits n versions of one file, each changing one more of its
// lines, so that each version is closest to the one before (git packs them
// as a chain), and returns the commits.
func versions(t *testing.T, src *repotest.Repo, path string, n int) []string {
	t.Helper()
	lines := make([]string, 200)
	for i := range lines {
		lines[i] = fmt.Sprintf("line %d of a file that changes a little in every commit", i)
	}
	var commits []string
	for i := 0; i < n; i++ {
		lines[(i*7)%len(lines)] = fmt.Sprintf("line %d changed in version %d", (i*7)%len(lines), i)
		commits = append(commits, src.Commit(t, "v"+strconv.Itoa(i), map[string]string{path: strings.Join(lines, "\n") + "\n"}))
	}
	return commits
}

// TestWritePackRoundTrip pushes repositories of every object store layout
// to real git receive-packs, which check the pack (index-pack --strict
// --fix-thin, or unpack-objects for small packs) and then fsck --full.
func TestWritePackRoundTrip(t *testing.T) {
	t.Parallel()
	requireGit(t)
	tests := []struct {
		name string
		run  func(t *testing.T, target func() *repotest.Repo)
	}{
		{"gc'd repository", func(t *testing.T, target func() *repotest.Repo) {
			src := repotest.New(t)
			src.History(t, 150, 30)
			src.Git(t, "gc", "-q")
			st := pushRepo(t, target(), src.Dir, src.Head(t))
			if st.Reused != st.Objects || st.Deltas == 0 || st.Thin != 0 {
				t.Errorf("stats %+v: want every object reused, some deltas, none thin", st)
			}
		}},
		{"loose and packed mixed", func(t *testing.T, target func() *repotest.Repo) {
			src := repotest.New(t)
			src.History(t, 60, 20)
			src.Git(t, "gc", "-q")
			versions(t, src, "dir00/sub0/file0000.txt", 5) // loose, deltas against each other and the packed version
			st := pushRepo(t, target(), src.Dir, src.Head(t))
			if st.Reused == 0 || st.Reused == st.Objects {
				t.Errorf("stats %+v: want some objects reused and some compressed", st)
			}
		}},
		{"delta chains longer than 10", func(t *testing.T, target func() *repotest.Repo) {
			src := repotest.New(t)
			versions(t, src, "f.txt", 40)
			src.Git(t, "repack", "-adf", "-q", "--depth=100", "--window=50")
			if n := maxChain(t, src); n <= 10 {
				t.Fatalf("longest delta chain is %d: the fixture needs more than 10", n)
			}
			st := pushRepo(t, target(), src.Dir, src.Head(t))
			if st.Deltas < 30 {
				t.Errorf("stats %+v: want the deltas reused", st)
			}
		}},
		{"incremental thin push", func(t *testing.T, target func() *repotest.Repo) {
			src := repotest.New(t)
			cs := versions(t, src, "f.txt", 10)
			tg := target()
			pushRepo(t, tg, src.Dir, cs[len(cs)-1])
			// A smaller new version: git makes it a delta against the
			// larger old one, which the target has and the pack leaves out.
			old := src.Git(t, "show", "HEAD:f.txt")
			src.Commit(t, "shorter", map[string]string{"f.txt": old[strings.Index(old, "\n")+1:] + "\n"})
			src.Git(t, "repack", "-adf", "-q")
			st := pushRepo(t, tg, src.Dir, src.Head(t))
			if st.Thin == 0 {
				t.Errorf("stats %+v: want a thin delta from the packfile", st)
			}
			// And a loose new version: deltified here against the target's.
			src.Commit(t, "loose", map[string]string{"f.txt": old + "one more line\n"})
			st = pushRepo(t, tg, src.Dir, src.Head(t))
			if st.Objects != 3 || st.Thin != 1 || st.Bytes > 400 {
				t.Errorf("stats %+v: want 3 objects, the blob a thin delta, under 400 bytes", st)
			}
		}},
		{"base the host lacks", func(t *testing.T, target func() *repotest.Repo) {
			src := repotest.New(t)
			// A big version on another branch only, a smaller similar one
			// on main: packed, the small one is a delta against the big
			// one, which is not pushed.
			src.Commit(t, "start", map[string]string{"README": "hello\n"})
			src.Git(t, "checkout", "-q", "-b", "other")
			cs := versions(t, src, "f.txt", 1)
			big := src.Git(t, "show", cs[0]+":f.txt")
			src.Git(t, "checkout", "-q", "main")
			src.Commit(t, "small", map[string]string{"f.txt": big[:len(big)-200]})
			src.Git(t, "repack", "-adf", "-q")
			small := src.Git(t, "rev-parse", "main:f.txt")
			if !strings.Contains(src.Git(t, "verify-pack", "-v", packIdxOf(t, src)), small+" blob") ||
				!regexp.MustCompile(small+` blob\s+\d+ \d+ \d+ 1 `).MatchString(src.Git(t, "verify-pack", "-v", packIdxOf(t, src))) {
				t.Fatalf("the fixture needs %s stored as a delta", small)
			}
			pushRepo(t, target(), src.Dir, src.Head(t))
		}},
		{"several packs, keep, bitmap, rev, alternates", func(t *testing.T, target func() *repotest.Repo) {
			base := repotest.New(t)
			base.History(t, 40, 10)
			base.Git(t, "-c", "pack.writeReverseIndex=true", "repack", "-adb", "-q")
			src := repotest.Clone(t, base.Dir, "--shared")
			versions(t, src, "a.txt", 3)
			src.Git(t, "repack", "-d", "-q") // a second pack, in the clone's own store
			packs, _ := filepath.Glob(filepath.Join(src.Dir, ".git", "objects", "pack", "*.pack"))
			for _, p := range packs {
				os.WriteFile(strings.TrimSuffix(p, ".pack")+".keep", nil, 0o644)
			}
			versions(t, src, "b.txt", 3) // loose
			st := pushRepo(t, target(), src.Dir, src.Head(t))
			if st.Reused == 0 {
				t.Errorf("stats %+v: want objects reused from the alternate's pack", st)
			}
		}},
		{"submodule's store as a second part", func(t *testing.T, target func() *repotest.Repo) {
			f := newSubFixture(t)
			f.leaf.History(t, 30, 5)
			f.leaf.Git(t, "gc", "-q")
			b2 := f.leaf.Head(t)
			f.mid.Git(t, "-C", "vendor/b", "fetch", "-q")
			f.mid.Git(t, "-C", "vendor/b", "checkout", "-q", b2)
			f.mid.Git(t, "-C", "vendor/b", "gc", "-q")
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
			// And leaf's new history, from mid's copy of it.
			leafRepo := &Repo{git: mustOpen(t, filepath.Join(f.mid.Dir, ".git", "modules", "b")), common: filepath.Join(f.mid.Dir, ".git", "modules", "b"), sub: "vendor/b"}
			parts = append(parts, PackPart{Repo: leafRepo, Want: plumbing.NewHash(b2)})
			pushParts(t, target(), parts)
		}},
		{"repository written by go-git", func(t *testing.T, target func() *repotest.Repo) {
			src := repotest.New(t)
			src.History(t, 30, 8)
			src.Git(t, "gc", "-q")
			// A clone by go-git: its pack and index are go-git's own.
			dir := t.TempDir()
			g, err := git.PlainClone(dir, false, &git.CloneOptions{URL: src.Dir})
			if err != nil {
				t.Fatal(err)
			}
			// Commits by go-git: its loose objects.
			wt, _ := g.Worktree()
			for i := 0; i < 5; i++ {
				os.WriteFile(filepath.Join(dir, "gogit.txt"), []byte(strings.Repeat("go-git line\n", 100+i)), 0o644)
				wt.Add("gogit.txt")
				if _, err := wt.Commit("go-git "+strconv.Itoa(i), &git.CommitOptions{Author: &object.Signature{Name: "T", Email: "t@example.com"}}); err != nil {
					t.Fatal(err)
				}
			}
			head, _ := g.Head()
			st := pushRepo(t, target(), dir, head.Hash().String())
			if st.Reused == 0 {
				t.Errorf("stats %+v: want objects reused from go-git's pack", st)
			}
		}},
	}
	for _, tt := range tests {
		for _, indexPack := range []bool{true, false} {
			name := tt.name + ", unpack-objects"
			if indexPack {
				name = tt.name + ", index-pack"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				tt.run(t, func() *repotest.Repo { return newTarget(t, indexPack) })
			})
		}
	}
}

func mustOpen(t *testing.T, dir string) *git.Repository {
	t.Helper()
	g, err := git.PlainOpen(dir)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func packIdxOf(t *testing.T, src *repotest.Repo) string {
	t.Helper()
	idx, _ := filepath.Glob(filepath.Join(src.Dir, ".git", "objects", "pack", "*.idx"))
	if len(idx) != 1 {
		t.Fatalf("want one pack, have %v", idx)
	}
	return idx[0]
}

// TestWritePackSizeOfCodeHistory compares the first-deploy pack of a
// generated history of source code with git's own for the same objects.
func TestWritePackSizeOfCodeHistory(t *testing.T) {
	t.Parallel()
	requireGit(t)
	src := repotest.New(t)
	src.CodeHistory(t, repotest.Code{Commits: 400, Files: 60, Seed: 1})
	head := src.Head(t)
	r, err := Open(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	var ours bytes.Buffer
	st, err := r.WritePack(context.Background(), &ours, plumbing.NewHash(head), nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("git", "pack-objects", "--revs", "--stdout", "-q", "--delta-base-offset")
	cmd.Dir = src.Dir
	cmd.Env = repotest.Env()
	cmd.Stdin = strings.NewReader(head + "\n")
	theirs, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	ratio := float64(ours.Len()) / float64(len(theirs))
	t.Logf("pack of %d objects: %d bytes, git pack-objects %d bytes (%.3f×); %+v", st.Objects, ours.Len(), len(theirs), ratio, st)
	if ratio > 1.1 {
		t.Errorf("pack is %.2f× git's (%d vs %d bytes), want at most 1.1×", ratio, ours.Len(), len(theirs))
	}
	// And it is a valid pack.
	tg := repotest.NewBare(t)
	ix := exec.Command("git", "index-pack", "--stdin", "--strict")
	ix.Dir = tg.Dir
	ix.Env = repotest.Env()
	ix.Stdin = &ours
	if out, err := ix.CombinedOutput(); err != nil {
		t.Fatalf("git index-pack: %v: %s", err, out)
	}
}

// TestWritePackShallow deploys from a shallow clone: the walk stops at the
// boundary, and IsAncestor says when it cannot know.
func TestWritePackShallow(t *testing.T) {
	t.Parallel()
	requireGit(t)
	src := repotest.New(t)
	src.History(t, 20, 5)
	old := src.Git(t, "rev-parse", "HEAD~10")
	clone := repotest.Clone(t, "file://"+src.Dir, "--depth", "1")
	r, err := Open(clone.Dir)
	if err != nil {
		t.Fatal(err)
	}
	sh, err := r.Shallow()
	if err != nil || len(sh) != 1 || sh[0].String() != clone.Head(t) {
		t.Fatalf("Shallow() = %v, %v; want [%s]", sh, err, clone.Head(t))
	}
	if r.Partial() {
		t.Errorf("Partial() of a shallow clone = true")
	}
	// The target allows the shallow update a push from a shallow clone is.
	tg := newTarget(t, true)
	tg.Git(t, "config", "receive.shallowUpdate", "true")
	st, err := r.WritePack(context.Background(), io.Discard, plumbing.NewHash(clone.Head(t)), nil)
	if err != nil {
		t.Fatalf("WritePack from a shallow clone: %v", err)
	}
	if st.Commits != 1 {
		t.Errorf("WritePack from a depth 1 clone: %d commits, want 1", st.Commits)
	}
	// A have below the boundary is unknown here: ignored.
	if _, err := r.WritePack(context.Background(), io.Discard, plumbing.NewHash(clone.Head(t)), []plumbing.Hash{plumbing.NewHash(old)}); err != nil {
		t.Errorf("WritePack with a have below the boundary: %v", err)
	}

	clone.Commit(t, "on top", map[string]string{"new.txt": "x\n"})
	top := plumbing.NewHash(clone.Head(t))
	boundary := sh[0]
	if ok, err := r.IsAncestor(boundary, top); !ok || err != nil {
		t.Errorf("IsAncestor(boundary, top) = %v, %v; want true", ok, err)
	}
	// A commit the clone has, on another line of history that ends at
	// the boundary: not found above it.
	side := clone.Git(t, "commit-tree", "-p", boundary.String(), "-m", "side", boundary.String()+"^{tree}")
	if ok, err := r.IsAncestor(plumbing.NewHash(side), top); ok || !errors.Is(err, ErrShallow) {
		t.Errorf("IsAncestor(side, top) = %v, %v; want an ErrShallow error", ok, err)
	}
}

// TestPartial recognises partial clones.
func TestPartial(t *testing.T) {
	t.Parallel()
	requireGit(t)
	src := repotest.New(t)
	src.History(t, 5, 3)
	src.Git(t, "config", "uploadpack.allowFilter", "true")
	clone := repotest.Clone(t, "file://"+src.Dir, "--filter=blob:none", "--no-checkout")
	r, err := Open(clone.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Partial() {
		t.Errorf("Partial() of a --filter=blob:none clone = false")
	}
	// Its blobs are missing: the pack fails before any byte is written.
	var w countingDiscard
	_, err = r.WritePack(context.Background(), &w, plumbing.NewHash(clone.Head(t)), nil)
	if err == nil || !errors.Is(err, plumbing.ErrObjectNotFound) || !strings.Contains(err.Error(), "partial clone") {
		t.Errorf("WritePack from a blobless clone = %v, want a missing-object error naming the partial clone", err)
	}
	if w.n != 0 {
		t.Errorf("%d bytes written before the error, want none", w.n)
	}
	full, err := Open(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if full.Partial() {
		t.Errorf("Partial() of a full repository = true")
	}
}

type countingDiscard struct{ n int }

func (c *countingDiscard) Write(p []byte) (int, error) { c.n += len(p); return len(p), nil }

// TestMakeDelta checks deltas against a reference applier, on edits of
// random data of every shape.
func TestMakeDelta(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	randBytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte('a' + rng.IntN(8))
		}
		return b
	}
	big := randBytes(300 << 10)
	tests := []struct {
		name         string
		base, target []byte
	}{
		{"empty both", nil, nil},
		{"empty base", nil, randBytes(100)},
		{"empty target", randBytes(100), nil},
		{"same", big, big},
		{"short", []byte("abc"), []byte("abcd")},
		{"insert in the middle", big, append(append(append([]byte{}, big[:1000]...), randBytes(50)...), big[1000:]...)},
		{"delete", big, append(append([]byte{}, big[:5000]...), big[9000:]...)},
		{"moved blocks", big, append(append([]byte{}, big[200000:]...), big[:200000]...)},
		{"unrelated", randBytes(5000), randBytes(5000)},
	}
	for _, tt := range tests {
		d := makeDelta(tt.base, tt.target, 0)
		got, err := applyDelta(tt.base, d)
		if err != nil || !bytes.Equal(got, tt.target) {
			t.Errorf("%s: delta of %d bytes does not rebuild the target: %v", tt.name, len(d), err)
		}
	}
	if d := makeDelta(big, big, 0); len(d) > 64 {
		t.Errorf("delta of identical data is %d bytes", len(d))
	}
	if d := makeDelta(randBytes(5000), randBytes(5000), 100); d != nil {
		t.Errorf("delta over its limit returned (%d bytes)", len(d))
	}
}
