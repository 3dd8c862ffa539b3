package localrepo_test

import (
	"context"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
	"github.com/gitric/gitric/gitrictasks/internal/receivepack"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

// TestPushWithSubmodules pushes a superproject commit and its submodules,
// nested ones included, in one pack to a real git receive-pack, first into
// an empty repository, then after the submodules moved. Each submodule
// commit gets a ref of its own on the target, so that the target checks
// the pack is complete and git fsck sees every object as reachable.
func TestPushWithSubmodules(t *testing.T) {
	t.Parallel()
	leaf, mid, super := repotest.New(t), repotest.New(t), repotest.New(t)
	leaf.Commit(t, "leaf", map[string]string{"leaf.txt": "leaf 1\n", "LICENSE": "same\n"})
	mid.Commit(t, "mid", map[string]string{"mid.txt": "mid 1\n", "LICENSE": "same\n"})
	mid.AddSubmodule(t, "b", leaf.Dir, "vendor/b")
	mid.Commit(t, "add b", nil)
	super.Commit(t, "super", map[string]string{"app.txt": "app 1\n", "LICENSE": "same\n"})
	super.AddSubmodule(t, "a", mid.Dir, "libs/a")
	super.Commit(t, "add a", nil)
	super.Submodule(t, "update", "--init", "--recursive", "-q")
	target := repotest.NewBare(t)

	r, err := localrepo.Open(super.Dir)
	if err != nil {
		t.Fatal(err)
	}
	first := push(t, r, target, super.Head(t))
	// The target holds exactly the objects reachable from the pushed refs:
	// none is missing (fsck, and receive-pack's own check) and none came
	// twice (the LICENSE blob is in all three repositories).
	if got := len(strings.Split(target.Git(t, "rev-list", "--objects", "--all"), "\n")); got != first.Objects {
		t.Errorf("first push sent %d objects; the target holds %d", first.Objects, got)
	}

	// Move both submodules: the second push sends only what changed.
	b2 := leaf.Commit(t, "leaf 2", map[string]string{"leaf.txt": "leaf 2\n"})
	mid.Git(t, "-C", "vendor/b", "fetch", "-q")
	mid.Git(t, "-C", "vendor/b", "checkout", "-q", b2)
	a2 := mid.Commit(t, "move b", nil)
	super.Git(t, "-C", "libs/a", "fetch", "-q")
	super.Git(t, "-C", "libs/a", "checkout", "-q", a2)
	super.Git(t, "-C", "libs/a", "-c", repotest.AllowFileProtocol, "submodule", "update", "--init", "--recursive", "-q")
	super.Commit(t, "move a", nil)
	second := push(t, r, target, super.Head(t))
	// A commit and two trees in the superproject (the root and libs/) and
	// in mid (the root and vendor/); a commit, a tree and a blob in leaf.
	if second.Commits != 3 || second.Objects != 3+3+3 {
		t.Errorf("second push: %d commits, %d objects; want 3 commits, 9 objects", second.Commits, second.Objects)
	}
}

// push deploys commit of r with its submodules to target: the commit to
// refs/heads/main, each submodule's to refs/submodules/<index>.
func push(t *testing.T, r *localrepo.Repo, target *repotest.Repo, commit string) localrepo.PackStats {
	t.Helper()
	want := plumbing.NewHash(commit)
	subs, err := r.Submodules(want)
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 2 {
		t.Fatalf("Submodules(%.7s) = %v, want a and b", commit, subs)
	}
	conn, wait := receivePack(t, target.Dir)
	p, err := receivepack.Start(conn)
	if err != nil {
		t.Fatal(err)
	}
	haves := p.Refs().Hashes()
	updates := []receivepack.Update{{Ref: "refs/heads/main", Old: p.Refs()["refs/heads/main"], New: want}}
	parts := []localrepo.PackPart{{Repo: r, Want: want, Haves: haves}}
	for i, s := range subs {
		sr, err := r.OpenSubmodule(s)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, localrepo.PackPart{Repo: sr, Want: s.Commit, Haves: haves})
		ref := "refs/submodules/" + strconv.Itoa(i)
		updates = append(updates, receivepack.Update{Ref: ref, Old: p.Refs()[ref], New: s.Commit})
	}
	var stats localrepo.PackStats
	err = p.Send(context.Background(), updates, func(w io.Writer) error {
		stats, err = localrepo.WritePacks(context.Background(), w, parts)
		return err
	}, nil)
	if werr := wait(); err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		t.Fatalf("push of %.7s: %v", commit, err)
	}
	target.Git(t, "fsck", "--strict", "--no-dangling")
	for _, s := range subs {
		for _, obj := range []string{s.Commit.String(), s.Commit.String() + "^{tree}"} {
			if _, err := repotest.Git(target.Dir, "cat-file", "-e", obj); err != nil {
				t.Errorf("target lacks %s of submodule %s: %v", obj, s.Path, err)
			}
		}
	}
	return stats
}

// receivePack runs a real git receive-pack on dir.
func receivePack(t *testing.T, dir string) (receivepack.Conn, func() error) {
	t.Helper()
	in, out, wait := repotest.ReceivePack(t, dir)
	return receivepack.Conn{In: in, Out: out}, wait
}
