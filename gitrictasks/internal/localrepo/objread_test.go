package localrepo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

// catFile is every object of the repository in dir as git reads it: type
// and content by hash.
func catFile(t *testing.T, dir string) map[plumbing.Hash]struct {
	typ  string
	data []byte
} {
	t.Helper()
	cmd := exec.Command("git", "cat-file", "--batch-all-objects", "--batch", "--unordered")
	cmd.Dir = dir
	cmd.Env = repotest.Env()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git cat-file: %v", err)
	}
	objs := map[plumbing.Hash]struct {
		typ  string
		data []byte
	}{}
	br := bufio.NewReader(bytes.NewReader(out))
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("git cat-file: bad line %q", line)
		}
		n, _ := strconv.Atoi(f[2])
		data := make([]byte, n+1) // and the newline after the content
		if _, err := io.ReadFull(br, data); err != nil {
			t.Fatal(err)
		}
		objs[plumbing.NewHash(f[0])] = struct {
			typ  string
			data []byte
		}{f[1], data[:n]}
	}
	return objs
}

var typeNames = map[int]string{objCommit: "commit", objTree: "tree", objBlob: "blob", objTag: "tag"}

// TestObjReaderMatchesGit reads every object of repositories whose packs
// hold long delta chains, OFS and REF deltas (a thin pack completed by
// index-pack), and loose objects, and compares each with what git reads.
func TestObjReaderMatchesGit(t *testing.T) {
	t.Parallel()
	requireGit(t)
	tests := []struct {
		name      string
		refDeltas bool // the fixture's packs have REF_DELTA entries
		setup     func(t *testing.T) *repotest.Repo
	}{
		{"long chains", false, func(t *testing.T) *repotest.Repo {
			src := repotest.New(t)
			versions(t, src, "f.txt", 60)
			src.Git(t, "repack", "-adf", "-q", "--depth=100", "--window=50")
			if n := maxChain(t, src); n <= 10 {
				t.Fatalf("longest delta chain is %d: the fixture needs more than 10", n)
			}
			return src
		}},
		{"code history, packed and loose", false, func(t *testing.T) *repotest.Repo {
			src := repotest.New(t)
			src.CodeHistory(t, repotest.Code{Commits: 150, Files: 30, Seed: 7})
			versions(t, src, "loose.txt", 3)
			return src
		}},
		{"REF_DELTA of a pack kept as received", true, func(t *testing.T) *repotest.Repo {
			src := repotest.New(t)
			cs := versions(t, src, "f.txt", 20)
			tg := newTarget(t, true) // index-pack keeps the pack, REF_DELTAs completed
			pushRepo(t, tg, src.Dir, cs[9])
			pushRepo(t, tg, src.Dir, cs[19])
			// A pack without OFS_DELTA: every delta names its base.
			cmd := exec.Command("git", "pack-objects", "--revs", "-q", "--stdout")
			cmd.Dir = src.Dir
			cmd.Env = repotest.Env()
			cmd.Stdin = strings.NewReader(cs[19] + "\n")
			pack, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			dst := repotest.NewBare(t)
			ix := exec.Command("git", "index-pack", "--stdin")
			ix.Dir = dst.Dir
			ix.Env = repotest.Env()
			ix.Stdin = bytes.NewReader(pack)
			if out, err := ix.CombinedOutput(); err != nil {
				t.Fatalf("git index-pack: %v: %s", err, out)
			}
			return dst
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			src := tt.setup(t)
			common := filepath.Join(src.Dir, ".git")
			if _, err := os.Stat(common); err != nil {
				common = src.Dir // bare
			}
			st, err := openStore(common)
			if err != nil {
				t.Fatal(err)
			}
			defer st.close()
			if refs := refDeltas(t, st); tt.refDeltas != (refs > 0) {
				t.Fatalf("the fixture has %d REF_DELTA entries", refs)
			}
			rd := newObjReader(st)
			want := catFile(t, src.Dir)
			if len(want) == 0 {
				t.Fatal("no objects")
			}
			for h, o := range want {
				typ, data, err := rd.read(h, -1)
				if err != nil {
					t.Fatalf("read %s: %v", h, err)
				}
				if typeNames[typ] != o.typ || !bytes.Equal(data, o.data) {
					t.Fatalf("read %s: %s of %d bytes, git reads a %s of %d bytes", h, typeNames[typ], len(data), o.typ, len(o.data))
				}
				if len(data) > 0 {
					if _, _, err := rd.read(h, int64(len(data)-1)); !errors.Is(err, errTooLarge) {
						t.Fatalf("read %s with a limit below its size: %v, want errTooLarge", h, err)
					}
				}
			}
			if _, _, err := rd.read(plumbing.NewHash(strings.Repeat("ab", 20)), -1); !errors.Is(err, plumbing.ErrObjectNotFound) {
				t.Errorf("read of a missing object: %v, want ErrObjectNotFound", err)
			}
		})
	}
}

// refDeltas counts the REF_DELTA entries of st's packs.
func refDeltas(t *testing.T, st *store) int {
	t.Helper()
	n := 0
	for _, p := range st.packs {
		for i := 0; i < p.n; i++ {
			off, err := p.offset(i)
			if err != nil {
				t.Fatal(err)
			}
			e, err := p.entryAt(off)
			if err != nil {
				t.Fatal(err)
			}
			if e.typ == objRefDelta {
				n++
			}
		}
	}
	return n
}

// openPackWriter opens the repository in dir and a pack writer on it, as
// WritePacks does, closed when the test ends.
func openPackWriter(t *testing.T, dir string) (*Repo, *packWriter, *repoState) {
	t.Helper()
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	pw := &packWriter{}
	t.Cleanup(pw.close)
	rs, err := pw.open(r)
	if err != nil {
		t.Fatal(err)
	}
	pw.repos = append(pw.repos, rs)
	return r, pw, rs
}

// TestObjCacheHits walks a code history as the pack writer does and counts
// the pack entries inflated: with the cache, resolving a tree's delta
// chain mostly takes the one entry, its base being the tree read just
// before; without it, whole chains would be inflated again and again.
func TestObjCacheHits(t *testing.T) {
	t.Parallel()
	requireGit(t)
	src := repotest.New(t)
	src.CodeHistory(t, repotest.Code{Commits: 600, Files: 80, Seed: 3})
	_, pw, rs := openPackWriter(t, src.Dir)
	commits, err := pw.haveTrees(context.Background(), rs, plumbing.NewHash(src.Head(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	rs.rd.rd.inflated = 0
	if _, err := pw.missingObjects(context.Background(), rs, 0, commits); err != nil {
		t.Fatal(err)
	}
	all := catFile(t, src.Dir)
	trees := 0
	for i := int32(0); i < int32(pw.idx.objs.n); i++ {
		if all[pw.obj(i).hash].typ == "tree" {
			trees++
		}
	}
	t.Logf("%d trees read, %d pack entries inflated", trees, rs.rd.rd.inflated)
	if trees < 600 || rs.rd.rd.inflated > trees+trees/20 {
		t.Errorf("walking %d trees inflated %d pack entries: want at most 5%% more than the trees", trees, rs.rd.rd.inflated)
	}
}

// TestHaveTreesSparse: for an incremental push of a one-line change, the
// walk of what the target has reads the trees on the changed path only
// (git's sparse walk), not every tree of the target's commit, and the
// pack is what git's would be: the new blob as a thin delta, a few
// hundred bytes, that git index-pack --fix-thin completes.
func TestHaveTreesSparse(t *testing.T) {
	t.Parallel()
	requireGit(t)
	src := repotest.New(t)
	src.CodeHistory(t, repotest.Code{Commits: 300, Files: 80, Seed: 5})
	prev := src.Head(t)
	files := strings.Fields(src.Git(t, "ls-files"))
	path := files[len(files)/2]
	for _, f := range files { // one deep down
		if strings.Count(f, "/") > strings.Count(path, "/") {
			path = f
		}
	}
	old, err := os.ReadFile(filepath.Join(src.Dir, path))
	if err != nil {
		t.Fatal(err)
	}
	next := src.Commit(t, "one line", map[string]string{path: string(old) + "// one more line\n"})
	trees := strings.Count(src.Git(t, "ls-tree", "-r", "-t", prev), " tree ")
	r, pw, rs := openPackWriter(t, src.Dir)
	if _, err := pw.haveTrees(context.Background(), rs, plumbing.NewHash(next), []plumbing.Hash{plumbing.NewHash(prev)}); err != nil {
		t.Fatal(err)
	}
	depth := strings.Count(path, "/") + 1
	t.Logf("%s: %d of the target's %d trees on its path; %d pack entries inflated", path, depth, trees+1, rs.rd.rd.inflated)
	if trees < 4*depth || rs.rd.rd.inflated > 3*depth {
		t.Errorf("the walk of what the target has inflated %d pack entries for a change %d trees deep (of %d)", rs.rd.rd.inflated, depth, trees+1)
	}

	var pack bytes.Buffer
	st, err := r.WritePack(context.Background(), &pack, plumbing.NewHash(next), []plumbing.Hash{plumbing.NewHash(prev)})
	if err != nil {
		t.Fatal(err)
	}
	if st.Objects != depth+2 || pack.Len() > 1000 {
		t.Errorf("pack of a one-line change: %+v, %d bytes; want %d objects (commit, %d trees, blob) in a few hundred bytes", st, pack.Len(), depth+2, depth)
	}
	tg := repotest.NewBare(t)
	tg.Git(t, "fetch", "-q", src.Dir, prev+":refs/heads/main")
	ix := exec.Command("git", "index-pack", "--stdin", "--strict", "--fix-thin")
	ix.Dir = tg.Dir
	ix.Env = repotest.Env()
	ix.Stdin = &pack
	if out, err := ix.CombinedOutput(); err != nil {
		t.Fatalf("git index-pack --fix-thin: %v: %s", err, out)
	}
	tg.Git(t, "update-ref", "refs/heads/main", next)
	tg.Git(t, "fsck", "--full", "--no-dangling")
}

// TestApplyDeltaCorrupt feeds applyDelta deltas that do not fit their
// base or their own header: each is refused, none panics.
func TestApplyDeltaCorrupt(t *testing.T) {
	t.Parallel()
	base := []byte("0123456789abcdef")
	hdr := func(src, dst int) []byte { return appendVarint(appendVarint(nil, uint64(src)), uint64(dst)) }
	tests := []struct {
		name  string
		delta []byte
	}{
		{"empty", nil},
		{"no target size", appendVarint(nil, 16)},
		{"cut size", []byte{0x80}},
		{"base size differs", append(hdr(15, 1), 1, 'x')},
		{"reserved instruction", append(hdr(16, 1), 0)},
		{"insert past its data", append(hdr(16, 3), 3, 'x')},
		{"insert past the target", append(hdr(16, 1), 2, 'x', 'y')},
		{"copy past the base", append(hdr(16, 4), 0x91, 14, 4)},
		{"copy cut short", append(hdr(16, 4), 0x91, 14)},
		{"short of the target", append(hdr(16, 5), 4, 'a', 'b', 'c', 'd')},
	}
	for _, tt := range tests {
		if out, err := applyDelta(base, tt.delta); err == nil {
			t.Errorf("%s: applyDelta = %q, want an error", tt.name, out)
		}
	}
	// And a good one, for contrast: copy 4 bytes from 10, insert "!".
	out, err := applyDelta(base, append(hdr(16, 5), 0x91, 10, 4, 1, '!'))
	if err != nil || string(out) != "abcd!" {
		t.Errorf("applyDelta = %q, %v; want \"abcd!\"", out, err)
	}
}

func TestTreeIter(t *testing.T) {
	t.Parallel()
	h1, h2 := plumbing.NewHash(strings.Repeat("11", 20)), plumbing.NewHash(strings.Repeat("22", 20))
	entry := func(mode, name string, h plumbing.Hash) string { return mode + " " + name + "\x00" + string(h[:]) }
	tests := []struct {
		name    string
		data    string
		want    []string // mode (octal) and name
		wantErr bool
	}{
		{"empty", "", nil, false},
		{"file, dir, submodule", entry("100644", "a.txt", h1) + entry("40000", "dir", h2) + entry("160000", "sub", h1), []string{"100644 a.txt", "40000 dir", "160000 sub"}, false},
		{"no mode", " a\x00" + string(h1[:]), nil, true},
		{"bad mode", "10x644 a\x00" + string(h1[:]), nil, true},
		{"cut hash", entry("100644", "a", h1)[:15], nil, true},
		{"no NUL", "100644 abc", nil, true},
	}
	for _, tt := range tests {
		it := treeIter{data: []byte(tt.data)}
		var got []string
		for mode, name, _, ok := it.next(); ok; mode, name, _, ok = it.next() {
			got = append(got, strconv.FormatUint(uint64(mode), 8)+" "+string(name))
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") || (it.err != nil) != tt.wantErr {
			t.Errorf("%s: entries %q, err %v; want %q, error %v", tt.name, got, it.err, tt.want, tt.wantErr)
		}
	}
}

func TestParseCommit(t *testing.T) {
	t.Parallel()
	tree, p1, p2 := strings.Repeat("ab", 20), strings.Repeat("cd", 20), strings.Repeat("ef", 20)
	tests := []struct {
		name    string
		data    string
		parents int
		when    int64
		wantErr bool
	}{
		{"root", "tree " + tree + "\nauthor A <a@x> 1 +0000\ncommitter C <c@x> 1700000000 +0200\n\nmsg\n", 0, 1700000000, false},
		{"merge", "tree " + tree + "\nparent " + p1 + "\nparent " + p2 + "\nauthor A <a@x> 1 +0000\ncommitter C <c@x> 42 -0100\n\nmsg\nparent " + p1 + "\n", 2, 42, false},
		{"gpgsig and odd name", "tree " + tree + "\nparent " + p1 + "\ncommitter C > D <c@x> 7 +0000\ngpgsig -----BEGIN-----\n x\n -----END-----\n\nmsg", 1, 7, false},
		{"committer unreadable", "tree " + tree + "\ncommitter nobody\n\n", 0, 0, false},
		{"no tree", "parent " + p1 + "\n\n", 1, 0, true},
		{"bad tree", "tree xyz\n\n", 0, 0, true},
		{"bad parent", "tree " + tree + "\nparent " + p1[:39] + "\n\n", 0, 0, true},
	}
	for _, tt := range tests {
		c, err := parseCommit(plumbing.ZeroHash, []byte(tt.data))
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: error %v, want error %v", tt.name, err, tt.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if c.tree.String() != tree || len(c.parents) != tt.parents || c.when != tt.when {
			t.Errorf("%s: tree %s, %d parents, time %d; want %s, %d, %d", tt.name, c.tree, len(c.parents), c.when, tree, tt.parents, tt.when)
		}
	}
}

// TestPackIdxPiecewise checks the lookups a pack index answers by reading
// its file piecewise against git's own listing of the index, and against
// the same index read whole: both find every object at git's offset, a
// missing object nowhere, and the index is read whole only after
// lazyLookups lookups. A handmade index covers large offsets.
func TestPackIdxPiecewise(t *testing.T) {
	t.Parallel()
	repo := repotest.New(t)
	for i := range 40 {
		repo.Commit(t, fmt.Sprintf("c%d", i), map[string]string{fmt.Sprintf("f%d", i%7): strings.Repeat(fmt.Sprintln(i), i+1)})
	}
	repo.Git(t, "repack", "-adq")
	idxs, _ := filepath.Glob(filepath.Join(repo.Dir, ".git", "objects", "pack", "*.idx"))
	if len(idxs) != 1 {
		t.Fatalf("%d pack indexes, want 1", len(idxs))
	}
	f, err := os.Open(idxs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command("git", "show-index")
	cmd.Stdin = f
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	want := map[plumbing.Hash]int64{}
	for line := range strings.Lines(string(out)) {
		fs := strings.Fields(line) // offset hash (crc)
		off, _ := strconv.ParseInt(fs[0], 10, 64)
		want[plumbing.NewHash(fs[1])] = off
	}
	if len(want) <= lazyLookups {
		t.Fatalf("%d objects: too few to pass lazyLookups (%d)", len(want), lazyLookups)
	}

	check := func(t *testing.T, path string, want map[plumbing.Hash]int64) {
		lazy, err := readIdx(path, 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		defer lazy.closeIdx()
		whole, err := readIdx(path, 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		if err := whole.load(); err != nil {
			t.Fatal(err)
		}
		n := 0
		for h, off := range want {
			for _, p := range []*packIdx{lazy, whole} {
				if got, ok := p.find(h); !ok || got != off {
					t.Fatalf("find %s (loaded %v): %d %v, want %d", h, p.loaded.Load(), got, ok, off)
				}
			}
			if n++; lazy.loaded.Load() != (n > lazyLookups) {
				t.Fatalf("after %d lookups the index is loaded: %v", n, lazy.loaded.Load())
			}
		}
		missing := plumbing.NewHash(strings.Repeat("ab", 20))
		for _, p := range []*packIdx{lazy, whole} {
			if i := p.search(missing); i != -1 {
				t.Errorf("search of a missing object: %d, want -1", i)
			}
		}
	}
	t.Run("git", func(t *testing.T) { check(t, idxs[0], want) })

	t.Run("removed by a gc", func(t *testing.T) {
		// A gc between the opening of the pack and the reading of its
		// whole index: the index is read from the descriptor opened first.
		path := filepath.Join(t.TempDir(), "pack-x.idx")
		data, err := os.ReadFile(idxs[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := readIdx(path, 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		defer p.closeIdx()
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		if err := p.order(); err != nil {
			t.Fatalf("entries in pack order after the index was removed: %v", err)
		}
		for h, off := range want {
			if got, ok := p.find(h); !ok || got != off {
				t.Fatalf("find %s: %d %v, want %d", h, got, ok, off)
			}
		}
	})

	t.Run("many packs", func(t *testing.T) {
		// A repository never repacked whole: more packs than maxLazyPacks,
		// whose indexes are read whole, holding no descriptor each.
		many := repotest.New(t)
		for i := range maxLazyPacks + 2 {
			many.Commit(t, fmt.Sprintf("c%d", i), map[string]string{"f": strconv.Itoa(i)})
			many.Git(t, "repack", "-q")
		}
		ps, err := readPackDir(filepath.Join(many.Dir, ".git", "objects", "pack"))
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) <= maxLazyPacks {
			t.Fatalf("%d packs, want more than %d", len(ps), maxLazyPacks)
		}
		for _, p := range ps {
			if !p.loaded.Load() || p.idxFile != nil {
				t.Fatalf("%s: loaded %v, index file still open %v", p.path, p.loaded.Load(), p.idxFile != nil)
			}
		}
		if i := ps[0].search(plumbing.NewHash(many.Head(t))); i < 0 {
			t.Errorf("the newest pack does not find HEAD")
		}
	})

	t.Run("large offsets", func(t *testing.T) {
		// Two objects, the second past 4 GiB: its offset is in the table
		// of large offsets.
		a, b := plumbing.NewHash(strings.Repeat("11", 20)), plumbing.NewHash(strings.Repeat("22", 20))
		offs := map[plumbing.Hash]int64{a: 12, b: 5 << 30}
		var idx []byte
		idx = append(idx, idxMagic...)
		idx = binary.BigEndian.AppendUint32(idx, 2)
		for i := range 256 {
			n := 0
			if i >= 0x11 {
				n++
			}
			if i >= 0x22 {
				n++
			}
			idx = binary.BigEndian.AppendUint32(idx, uint32(n))
		}
		idx = append(append(idx, a[:]...), b[:]...)
		idx = append(idx, make([]byte, 8)...) // crcs
		idx = binary.BigEndian.AppendUint32(idx, 12)
		idx = binary.BigEndian.AppendUint32(idx, 0x80000000) // large offset 0
		idx = binary.BigEndian.AppendUint64(idx, 5<<30)
		idx = append(idx, make([]byte, 40)...) // checksums
		path := filepath.Join(t.TempDir(), "pack-x.idx")
		if err := os.WriteFile(path, idx, 0o644); err != nil {
			t.Fatal(err)
		}
		check(t, path, offs)
		if err := os.WriteFile(path, idx[:len(idx)-41], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := readIdx(path, 1<<40); err == nil || !strings.Contains(err.Error(), "truncated") {
			t.Errorf("a truncated index: %v, want an error saying truncated", err)
		}
	})
}
