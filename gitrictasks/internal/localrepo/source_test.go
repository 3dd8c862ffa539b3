package localrepo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

// TestObjStorageMatchesGoGit reads every object of a repository, packed
// and loose, through the Repo's go-git (objStorage) and through go-git's
// own storage, and compares them; and the answers for an object it does
// not have, or of another type, are go-git's.
func TestObjStorageMatchesGoGit(t *testing.T) {
	t.Parallel()
	requireGit(t)
	src := repotest.New(t)
	src.CodeHistory(t, repotest.Code{Commits: 80, Files: 20, Seed: 5})
	src.Git(t, "tag", "-a", "-m", "annotated", "v1")
	versions(t, src, "loose.txt", 3)
	r, err := Open(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := r.git.Storer.(*objStorage); !ok {
		t.Fatalf("the Repo's go-git storage is a %T, not objStorage", r.git.Storer)
	}
	plain, err := git.PlainOpen(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for h, want := range catFile(t, src.Dir) {
		got, err := r.git.Storer.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			t.Fatalf("EncodedObject(%s): %v", h, err)
		}
		ref, err := plain.Storer.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			t.Fatal(err)
		}
		rd, _ := got.Reader()
		data, _ := io.ReadAll(rd)
		if got.Hash() != h || got.Type() != ref.Type() || got.Type().String() != want.typ || got.Size() != ref.Size() || !bytes.Equal(data, want.data) {
			t.Fatalf("%s: %s of %d bytes, go-git reads a %s of %d", h, got.Type(), got.Size(), ref.Type(), ref.Size())
		}
		if size, err := r.git.Storer.EncodedObjectSize(h); err != nil || size != ref.Size() {
			t.Fatalf("EncodedObjectSize(%s) = %d, %v; want %d", h, size, err, ref.Size())
		}
		if err := r.git.Storer.HasEncodedObject(h); err != nil {
			t.Fatalf("HasEncodedObject(%s) = %v", h, err)
		}
		n++
	}
	missing := plumbing.NewHash(strings.Repeat("ab", 20))
	if _, err := r.git.Storer.EncodedObject(plumbing.AnyObject, missing); err != plumbing.ErrObjectNotFound {
		t.Errorf("EncodedObject of a missing object: %v, want plumbing.ErrObjectNotFound itself", err)
	}
	if err := r.git.Storer.HasEncodedObject(missing); err != plumbing.ErrObjectNotFound {
		t.Errorf("HasEncodedObject of a missing object: %v", err)
	}
	head := plumbing.NewHash(src.Head(t))
	if _, err := r.git.Storer.EncodedObject(plumbing.TreeObject, head); err != plumbing.ErrObjectNotFound {
		t.Errorf("EncodedObject(tree, a commit): %v, want plumbing.ErrObjectNotFound", err)
	}
	// And go-git's higher levels on top of it.
	c, err := r.Resolve("v1")
	if err != nil || c.Hash.String() != src.Git(t, "rev-parse", "v1^{commit}") {
		t.Errorf("Resolve(v1) = %v, %v", c, err)
	}
	if paths, err := r.Changes(StatusOptions{}); err != nil || len(paths) != 0 {
		t.Errorf("Changes() = %v, %v; want a clean working copy", paths, err)
	}
	t.Logf("%d objects compared", n)
}

// TestRepoConcurrentReads reads one Repo's objects from several goroutines
// at once, through go-git and the pack writer, which share its reader
// (run with -race).
func TestRepoConcurrentReads(t *testing.T) {
	t.Parallel()
	requireGit(t)
	src := repotest.New(t)
	src.CodeHistory(t, repotest.Code{Commits: 120, Files: 20, Seed: 9})
	r, err := Open(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	head := plumbing.NewHash(src.Head(t))
	first := plumbing.NewHash(src.Git(t, "rev-list", "--max-parents=0", "HEAD"))
	want, err := r.WritePack(context.Background(), io.Discard, head, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := 0; g < 4; g++ {
		wg.Add(4)
		go func() {
			defer wg.Done()
			if ok, err := r.IsAncestor(first, head); err != nil || !ok {
				errs <- errors.Join(err, errors.New("IsAncestor(first, head) is not true"))
			}
		}()
		go func() {
			defer wg.Done()
			if _, ok := r.Lookup(head); !ok {
				errs <- errors.New("Lookup(head) found nothing")
			}
		}()
		go func() {
			defer wg.Done()
			if !r.Tracks(head, strings.Fields(src.Git(t, "ls-files"))[0]) {
				errs <- errors.New("Tracks found no file")
			}
		}()
		go func() {
			defer wg.Done()
			st, err := r.WritePack(context.Background(), io.Discard, head, nil)
			if err != nil || st != want {
				errs <- errors.Join(err, errors.New("WritePack's stats differ"))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestWritePackAfterGC packs after git gc has replaced the packs the Repo
// had opened: the pack writer opens them again, and go-git's reads go on.
func TestWritePackAfterGC(t *testing.T) {
	t.Parallel()
	requireGit(t)
	src := repotest.New(t)
	src.History(t, 30, 6)
	src.Git(t, "gc", "-q")
	r, err := Open(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Resolve(""); err != nil {
		t.Fatal(err)
	}
	// New objects, read while loose, then a gc that packs them with the
	// old ones into a new pack and deletes the old pack and the loose
	// objects: go-git's reads find them in the new pack.
	head := versions(t, src, "after-gc.txt", 3)[2]
	if c, ok := r.Lookup(plumbing.NewHash(head)); !ok || c.Subject != "v2" {
		t.Fatalf("Lookup of a loose commit = %v, %v", c, ok)
	}
	src.Git(t, "gc", "-q", "--prune=now")
	if c, ok := r.Lookup(plumbing.NewHash(head)); !ok || c.Subject != "v2" {
		t.Errorf("Lookup of the same commit after gc = %v, %v", c, ok)
	}
	pushRepo(t, newTarget(t, true), src.Dir, head)
	st, err := r.WritePack(context.Background(), io.Discard, plumbing.NewHash(head), nil)
	if err != nil {
		t.Fatalf("WritePack after gc: %v", err)
	}
	if st.Reused != st.Objects {
		t.Errorf("stats %+v: want every object copied from the new pack", st)
	}
}
