package receivepack

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

func push(t *testing.T, src *localrepo.Repo, target string, ref string, rev string) error {
	t.Helper()
	c, err := src.Resolve(rev)
	if err != nil {
		t.Fatal(err)
	}
	conn, wait := receivePack(t, target)
	p, err := Start(conn)
	if err != nil {
		t.Fatal(err)
	}
	old := p.Refs()[ref]
	var progress bytes.Buffer
	err = p.Send(context.Background(), []Update{{Ref: ref, Old: old, New: c.Hash}}, func(w io.Writer) error {
		_, err := src.WritePack(context.Background(), w, c.Hash, p.Refs().Hashes())
		return err
	}, &progress)
	if werr := wait(); err == nil && werr != nil {
		t.Fatalf("receive-pack: %v", werr)
	}
	return err
}

func TestPushFullThenIncremental(t *testing.T) {
	src := repotest.New(t)
	src.History(t, 300, 40)
	target := repotest.New(t)
	r, err := localrepo.Open(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	const ref = "refs/gitric/seed"
	if err := push(t, r, target.Dir, ref, "HEAD~1"); err != nil {
		t.Fatalf("first push: %v", err)
	}
	if got, want := target.Git(t, "rev-parse", ref), src.Git(t, "rev-parse", "HEAD~1"); got != want {
		t.Fatalf("target %s = %s, want %s", ref, got, want)
	}
	if err := push(t, r, target.Dir, ref, "HEAD"); err != nil {
		t.Fatalf("second push: %v", err)
	}
	if got, want := target.Git(t, "rev-parse", ref), src.Head(t); got != want {
		t.Fatalf("target %s = %s, want %s", ref, got, want)
	}
	target.Git(t, "fsck", "--strict", "--no-dangling")
	// Nothing to send: the update is accepted with an empty pack.
	if err := push(t, r, target.Dir, "refs/gitric/other", "HEAD"); err != nil {
		t.Fatalf("push of a commit the target has: %v", err)
	}
}

func TestPushRejected(t *testing.T) {
	src := repotest.New(t)
	src.Commit(t, "one", map[string]string{"a": "1"})
	r, _ := localrepo.Open(src.Dir)
	target := repotest.New(t)
	target.Commit(t, "other", map[string]string{"b": "1"})
	c, _ := r.Resolve("HEAD")

	conn, wait := receivePack(t, target.Dir)
	p, err := Start(conn)
	if err != nil {
		t.Fatal(err)
	}
	// A stale old value: the target must refuse the update.
	stale := plumbing.NewHash("1111111111111111111111111111111111111111")
	err = p.Send(context.Background(), []Update{{Ref: "refs/heads/main", Old: stale, New: c.Hash}}, func(w io.Writer) error {
		_, err := r.WritePack(context.Background(), w, c.Hash, nil)
		return err
	}, nil)
	_ = wait()
	if !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), "refs/heads/main") {
		t.Fatalf("Send with a stale old value = %v, want ErrRejected naming the ref", err)
	}
}

// receivePack runs a real git receive-pack on dir.
func receivePack(t *testing.T, dir string) (Conn, func() error) {
	t.Helper()
	in, out, wait := repotest.ReceivePack(t, dir)
	return Conn{In: in, Out: out}, wait
}
