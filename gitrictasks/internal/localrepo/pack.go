package localrepo

import (
	"bufio"
	"compress/zlib"
	"container/heap"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// PackStats describes a pack that WritePack or WritePacks wrote.
type PackStats struct {
	Commits int   // commits in the pack
	Objects int   // objects of every kind in the pack
	Bytes   int64 // size of the pack on the wire
}

// WritePack writes to w a git pack (version 2, no deltas) holding every
// object reachable from want that is not reachable from any of haves: what a
// target that already has haves needs in order to have want. Haves the local
// repository does not know are ignored. The pack is streamed: memory use does
// not grow with the size of the repository's history or files.
//
// Gitlinks are not followed: the objects of submodules travel only when
// WritePacks is given a part for each of them.
func (r *Repo) WritePack(ctx context.Context, w io.Writer, want plumbing.Hash, haves []plumbing.Hash) (PackStats, error) {
	return WritePacks(ctx, w, []PackPart{{Repo: r, Want: want, Haves: haves}})
}

// PackPart is one repository's share of a pack that WritePacks writes: the
// objects Repo has that a target holding Haves needs in order to have Want.
type PackPart struct {
	Repo  *Repo
	Want  plumbing.Hash
	Haves []plumbing.Hash
}

// WritePacks writes to w a single git pack (version 2, no deltas) holding
// the objects of several repositories, typically a superproject and, from
// OpenSubmodule, its submodules at the commits Submodules lists, for a
// target that keeps them all in one object store.
//
// Each part contributes what WritePack would send for it. Haves a part's
// repository does not know are ignored, so every part can be given all the
// hashes the target advertises. An object is written once however many
// parts hold it, and nothing is written that a part's haves show the target
// to hold already. Every part's object list is computed before the first
// byte is written (the pack header carries the count); the objects
// themselves are then streamed one at a time, so memory use grows with the
// number of objects sent, not with their sizes.
func WritePacks(ctx context.Context, w io.Writer, parts []PackPart) (PackStats, error) {
	for i, p := range parts {
		if p.Repo == nil {
			return PackStats{}, fmt.Errorf("pack part %d (want %s): no repository", i, p.Want)
		}
	}
	// known holds the objects the target has or that an earlier part
	// already sends: the object store on the other side is shared.
	known := make(map[plumbing.Hash]bool)
	walks := make([][]*object.Commit, len(parts))
	for i, p := range parts {
		commits, err := p.Repo.haveTrees(ctx, p.Want, p.Haves, known)
		if err != nil {
			return PackStats{}, p.Repo.describe(err)
		}
		walks[i] = commits
	}
	var stats PackStats
	lists := make([][]plumbing.Hash, len(parts))
	for i, p := range parts {
		objs, commits, err := p.Repo.missingObjects(ctx, walks[i], known)
		if err != nil {
			return PackStats{}, p.Repo.describe(err)
		}
		walks[i] = nil // done with the commits: let them go before streaming
		lists[i] = objs
		stats.Commits += commits
		stats.Objects += len(objs)
	}
	if uint64(stats.Objects) > math.MaxUint32 {
		return PackStats{}, fmt.Errorf("%d objects do not fit in one pack", stats.Objects)
	}
	n, err := encode(ctx, w, parts, lists, stats.Objects)
	if err != nil {
		return PackStats{}, err
	}
	stats.Bytes = n
	return stats, nil
}

// describe prefixes an error about a submodule's repository with the
// submodule's path; errors about the superproject are left as they are.
func (r *Repo) describe(err error) error {
	if r.sub == "" {
		return err
	}
	return fmt.Errorf("submodule %s: %w", r.sub, err)
}

// haveTrees walks the commits reachable from want and not from haves, marks
// known everything in the trees of the commits at the edge of that walk
// (the target holds them) and returns the new commits, newest first.
func (r *Repo) haveTrees(ctx context.Context, want plumbing.Hash, haves []plumbing.Hash, known map[plumbing.Hash]bool) ([]*object.Commit, error) {
	commits, edges, err := r.newCommits(ctx, want, haves)
	if err != nil {
		return nil, err
	}
	for _, e := range edges {
		c, err := r.git.CommitObject(e)
		if err != nil {
			return nil, fmt.Errorf("read commit %s: %w", e, err)
		}
		if err := r.collectTree(ctx, c.TreeHash, known, nil); err != nil {
			return nil, err
		}
	}
	return commits, nil
}

// missingObjects lists the objects to send for commits, the new commits
// haveTrees found: first the commits, then the trees and blobs of those
// commits, leaving out everything already known and marking known what it
// lists. It returns the list and how many commits it holds.
func (r *Repo) missingObjects(ctx context.Context, commits []*object.Commit, known map[plumbing.Hash]bool) ([]plumbing.Hash, int, error) {
	out := make([]plumbing.Hash, 0, len(commits)*4)
	for _, c := range commits {
		if !known[c.Hash] {
			known[c.Hash] = true
			out = append(out, c.Hash)
		}
	}
	n := len(out)
	for _, c := range commits {
		if err := r.collectTree(ctx, c.TreeHash, known, &out); err != nil {
			return nil, 0, err
		}
	}
	return out, n, nil
}

// collectTree marks the tree and everything below it known, appending to out
// (when out is not nil) the objects that were not known before. Subtrees
// already known are not read again: unchanged directories cost one lookup.
func (r *Repo) collectTree(ctx context.Context, tree plumbing.Hash, known map[plumbing.Hash]bool, out *[]plumbing.Hash) error {
	if known[tree] {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	known[tree] = true
	if out != nil {
		*out = append(*out, tree)
	}
	t, err := r.git.TreeObject(tree)
	if err != nil {
		return fmt.Errorf("read tree %s: %w", tree, err)
	}
	for _, e := range t.Entries {
		switch {
		case e.Mode == filemode.Submodule:
			// A gitlink names a commit of another repository: not ours to send.
		case e.Mode == filemode.Dir:
			if err := r.collectTree(ctx, e.Hash, known, out); err != nil {
				return err
			}
		case !known[e.Hash]:
			known[e.Hash] = true
			if out != nil {
				*out = append(*out, e.Hash)
			}
		}
	}
	return nil
}

// Commit walk flags.
const (
	uninteresting = 1 << iota
	queued
)

// newCommits walks history from want and haves together, newest first, the
// way git's revision walker does, and returns the commits reachable from
// want but not from any have, plus the edges: the commits reachable from the
// haves whose trees the target is known to hold. The walk stops as soon as
// every commit still queued is reachable from a have, so an incremental
// deploy reads a handful of commits however long the history is.
func (r *Repo) newCommits(ctx context.Context, want plumbing.Hash, haves []plumbing.Hash) ([]*object.Commit, []plumbing.Hash, error) {
	flags := make(map[plumbing.Hash]uint8)
	var q commitQueue
	push := func(c *object.Commit) {
		flags[c.Hash] |= queued
		heap.Push(&q, c)
	}
	start, err := r.git.CommitObject(want)
	if err != nil {
		return nil, nil, fmt.Errorf("read commit %s: %w", want, err)
	}
	push(start)
	for _, h := range haves {
		c, err := r.git.CommitObject(h)
		if err != nil {
			continue // the target has something we never had: nothing to exclude
		}
		flags[h] |= uninteresting
		if flags[h]&queued == 0 {
			push(c)
		}
	}

	var found []*object.Commit
	var edges []plumbing.Hash
	for q.Len() > 0 && !q.allUninteresting(flags) {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		c := heap.Pop(&q).(*object.Commit)
		f := flags[c.Hash]
		if f&uninteresting == 0 {
			found = append(found, c)
		}
		for _, p := range c.ParentHashes {
			pf := flags[p]
			if f&uninteresting != 0 {
				if pf&uninteresting != 0 {
					continue
				}
				flags[p] = pf | uninteresting
				if pf&queued != 0 {
					// Already walked as interesting: walk it again so the
					// mark reaches its own parents.
					pc, err := r.git.CommitObject(p)
					if err != nil {
						return nil, nil, fmt.Errorf("read commit %s: %w", p, err)
					}
					heap.Push(&q, pc)
				}
			} else if pf&uninteresting != 0 && !contains(edges, p) {
				edges = append(edges, p)
			}
			if pf&queued != 0 {
				continue
			}
			pc, err := r.git.CommitObject(p)
			if errors.Is(err, plumbing.ErrObjectNotFound) && f&uninteresting != 0 {
				continue // shallow local history below a have
			}
			if err != nil {
				return nil, nil, fmt.Errorf("read commit %s: %w", p, err)
			}
			push(pc)
		}
	}
	// Commits first marked interesting and later found reachable from a
	// have are not new after all.
	kept := found[:0]
	for _, c := range found {
		if flags[c.Hash]&uninteresting == 0 {
			kept = append(kept, c)
		}
	}
	// Every have we know is an edge too: its tree is on the target, and a
	// commit that touches few files shares most of its tree with it.
	for _, h := range haves {
		if flags[h]&uninteresting != 0 && !contains(edges, h) {
			edges = append(edges, h)
		}
	}
	return kept, edges, nil
}

func contains(hs []plumbing.Hash, h plumbing.Hash) bool {
	for _, x := range hs {
		if x == h {
			return true
		}
	}
	return false
}

// commitQueue is a max-heap of commits by committer time.
type commitQueue []*object.Commit

func (q commitQueue) Len() int { return len(q) }
func (q commitQueue) Less(i, j int) bool {
	return q[i].Committer.When.After(q[j].Committer.When)
}
func (q commitQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *commitQueue) Push(x any)   { *q = append(*q, x.(*object.Commit)) }
func (q *commitQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	*q = old[:len(old)-1]
	return c
}

func (q commitQueue) allUninteresting(flags map[plumbing.Hash]uint8) bool {
	for _, c := range q {
		if flags[c.Hash]&uninteresting == 0 {
			return false
		}
	}
	return true
}

// encode streams the objects of lists, each read from the repository of
// the part at the same index, as a version 2 pack of count whole
// (undeltified) objects, and returns the number of bytes written.
func encode(ctx context.Context, w io.Writer, parts []PackPart, lists [][]plumbing.Hash, count int) (int64, error) {
	sum := sha1.New()
	cw := &countWriter{w: io.MultiWriter(w, sum)}
	bw := bufio.NewWriterSize(cw, 64<<10)
	var hdr [12]byte
	copy(hdr[:], "PACK")
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], uint32(count))
	if _, err := bw.Write(hdr[:]); err != nil {
		return cw.n, err
	}
	zw, _ := zlib.NewWriterLevel(bw, zlib.BestSpeed)
	for i, objs := range lists {
		r := parts[i].Repo
		for _, h := range objs {
			if err := ctx.Err(); err != nil {
				return cw.n, err
			}
			if err := r.encodeObject(bw, zw, h); err != nil {
				return cw.n, r.describe(err)
			}
		}
	}
	if err := bw.Flush(); err != nil {
		return cw.n, err
	}
	n, err := w.Write(sum.Sum(nil))
	return cw.n + int64(n), err
}

func (r *Repo) encodeObject(bw *bufio.Writer, zw *zlib.Writer, h plumbing.Hash) error {
	o, err := r.git.Storer.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return fmt.Errorf("read object %s: %w", h, err)
	}
	// Entry header: type and size, seven bits at a time, low bits first.
	size := uint64(o.Size())
	b := byte(o.Type())<<4 | byte(size&0x0f)
	size >>= 4
	for size != 0 {
		if err := bw.WriteByte(b | 0x80); err != nil {
			return err
		}
		b = byte(size & 0x7f)
		size >>= 7
	}
	if err := bw.WriteByte(b); err != nil {
		return err
	}
	rd, err := o.Reader()
	if err != nil {
		return fmt.Errorf("read object %s: %w", h, err)
	}
	defer rd.Close()
	zw.Reset(bw)
	if _, err := io.Copy(zw, rd); err != nil {
		return fmt.Errorf("pack object %s: %w", h, err)
	}
	return zw.Close()
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
