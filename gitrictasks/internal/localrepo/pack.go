package localrepo

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/go-git/go-git/v5/plumbing"
)

// PackStats describes a pack that WritePack or WritePacks wrote.
type PackStats struct {
	Commits int   // commits in the pack
	Objects int   // objects of every kind in the pack
	Bytes   int64 // size of the pack on the wire
	// Reused is how many entries were copied from local packfiles as they
	// are stored there (deltas included), without being inflated.
	Reused int
	// Deltas is how many entries are deltas, reused or made; Thin is how
	// many of those have a base the pack leaves out because the target
	// holds it already (git receive-pack completes such a pack).
	Deltas, Thin int
}

// WritePack writes to w a git pack (version 2) holding every object
// reachable from want that is not reachable from any of haves: what a
// target that already has haves needs in order to have want. Haves the local
// repository does not know are ignored. See WritePacks for how the pack is
// made.
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

// WritePacks writes to w a single git pack (version 2) holding the objects
// of several repositories, typically a superproject and, from
// OpenSubmodule, its submodules at the commits Submodules lists, for a
// target that keeps them all in one object store.
//
// Each part contributes what WritePack would send for it. Haves a part's
// repository does not know are ignored, so every part can be given all the
// hashes the target advertises. An object is written once however many
// parts hold it, and nothing is written that a part's haves show the target
// to hold already.
//
// Objects stored in a local packfile are copied as they are stored there,
// compressed, deltas included (a delta's base comes first in the pack, or
// the delta refers to a base the target holds: the pack is then thin, as
// git's own pushes are, and git receive-pack completes it); a delta whose
// base is neither sent nor held by the target is sent whole. Loose objects
// are compressed, as a delta against the previous version of the same
// path where the target holds that version or the pack carries it and the
// delta is small. The target is known to hold what the trees of the commits
// at the edge of the haves' history hold.
//
// Every part's object list is computed, and every object found, before the
// first byte is written (the pack header carries the count), so that a
// missing object fails the call before anything is sent; the objects are
// then streamed one at a time, so memory use grows with the number of
// objects sent, not with their sizes (only objects small enough to be
// deltified, and deltas whose chain must be resolved, are held whole).
//
// Commits listed in a part's shallow file are history boundaries: their
// parents are not looked for.
func WritePacks(ctx context.Context, w io.Writer, parts []PackPart) (PackStats, error) {
	return WritePacksEstimated(ctx, w, parts, nil)
}

// WritePacksEstimated is WritePacks, and calls estimate, before the first
// byte, with the number of objects and the pack's expected size: what the
// objects take in the local store (a delta copied as it is stored is
// counted at its size; an object sent whole where it is stored as a delta
// is counted low).
func WritePacksEstimated(ctx context.Context, w io.Writer, parts []PackPart, estimate func(objects int, bytes int64)) (PackStats, error) {
	for i, p := range parts {
		if p.Repo == nil {
			return PackStats{}, fmt.Errorf("pack part %d (want %s): no repository", i, p.Want)
		}
	}
	if len(parts) > math.MaxUint16 {
		return PackStats{}, fmt.Errorf("%d pack parts: at most %d", len(parts), math.MaxUint16)
	}
	pw := &packWriter{}
	defer pw.close()
	for _, p := range parts {
		rs, err := pw.open(p.Repo)
		if err != nil {
			return PackStats{}, p.Repo.describe(err)
		}
		pw.repos = append(pw.repos, rs)
	}
	// pw.idx holds the objects the target has or that an earlier part
	// already sends: the object store on the other side is shared.
	walks := make([][]newCommit, len(parts))
	for i, p := range parts {
		commits, err := pw.haveTrees(ctx, pw.repos[i], p.Want, p.Haves)
		if err != nil {
			return PackStats{}, p.Repo.describe(err)
		}
		walks[i] = commits
	}
	var stats PackStats
	for i := range parts {
		commits, err := pw.missingObjects(ctx, pw.repos[i], uint16(i), walks[i])
		if err != nil {
			return PackStats{}, parts[i].Repo.describe(err)
		}
		walks[i] = nil // done with the commits: let them go before streaming
		stats.Commits += commits
	}
	// The walk's trees are not needed any more: the cache starts again
	// empty for the few objects the writing itself reads.
	for _, rs := range pw.repos {
		rs.rd.clearCache()
	}
	stats.Objects = pw.idx.objs.n
	if uint64(stats.Objects) > math.MaxUint32 {
		return PackStats{}, fmt.Errorf("%d objects do not fit in one pack", stats.Objects)
	}
	if err := pw.locateAll(ctx); err != nil {
		return PackStats{}, err
	}
	if estimate != nil {
		estimate(pw.idx.objs.n, pw.estimate())
	}
	if err := pw.encode(ctx, w); err != nil {
		return PackStats{}, err
	}
	stats.Bytes = pw.off
	stats.Reused, stats.Deltas, stats.Thin = pw.reused, pw.deltas, pw.thin
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

// hostHas is what objIndex.find says of an object the target holds.
const hostHas = -1

// haveTrees walks the commits reachable from want and not from haves,
// marks known what the target holds of the trees of the commits at the
// edge of that walk (see holdSparse) and returns the new commits, newest
// first.
func (pw *packWriter) haveTrees(ctx context.Context, rs *repoState, want plumbing.Hash, haves []plumbing.Hash) ([]newCommit, error) {
	commits, edges, err := newCommits(ctx, rs.rd.commit, want, haves, rs.shallow)
	if err != nil {
		return nil, err
	}
	var held []plumbing.Hash
	for _, e := range edges {
		c, err := rs.rd.commit(e)
		if err != nil {
			return nil, fmt.Errorf("read commit %s: %w", e, err)
		}
		pw.holdNew(e)
		held = append(held, c.tree)
	}
	wants := make([]plumbing.Hash, len(commits))
	for i, c := range commits {
		wants[i] = c.tree
	}
	return commits, pw.holdSparse(ctx, rs, wants, held)
}

// holdSparse marks held the trees haves (the target's, at one path) and
// their entries, then does the same one level down wherever a tree of
// wants (the new commits', at that path) has a subtree that none of
// haves has: the walk git's pack.useSparse does. An unchanged directory
// costs a lookup however large it is, and only the trees on the changed
// paths are read, so an incremental deploy reads a handful of trees. What
// the target has under a directory the new commits do not change goes
// unmarked: an object that appears again elsewhere is then sent again,
// harmlessly, as git sends it too.
func (pw *packWriter) holdSparse(ctx context.Context, rs *repoState, wants, haves []plumbing.Hash) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(haves) == 0 { // a first deploy
		return nil
	}
	for _, h := range haves {
		pw.holdNew(h)
	}
	var todo []plumbing.Hash // the wants not known, once each
	seen := make(map[plumbing.Hash]bool, len(wants))
	for _, w := range wants {
		if _, ok := pw.idx.find(w); !ok && !seen[w] {
			seen[w] = true
			todo = append(todo, w)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	subs := map[string][]plumbing.Hash{} // the haves' subtrees, by name
	for _, h := range haves {
		err := rs.entries(h, func(mode uint32, name string, e plumbing.Hash) {
			switch mode {
			case modeSubmodule: // another repository's commit
			case modeDir:
				subs[name] = append(subs[name], e)
			default:
				pw.holdNew(e)
			}
		})
		if err != nil {
			return err
		}
	}
	next := map[string][]plumbing.Hash{} // the wants' subtrees where the haves have some
	var names []string
	for _, w := range todo {
		err := rs.entries(w, func(mode uint32, name string, e plumbing.Hash) {
			if mode == modeDir && subs[name] != nil {
				if next[name] == nil {
					names = append(names, name)
				}
				next[name] = append(next[name], e)
			}
		})
		if err != nil {
			return err
		}
	}
	for _, n := range names {
		if err := pw.holdSparse(ctx, rs, next[n], subs[n]); err != nil {
			return err
		}
	}
	return nil
}

// entries calls fn with each entry of tree.
func (rs *repoState) entries(tree plumbing.Hash, fn func(mode uint32, name string, h plumbing.Hash)) error {
	data, err := rs.rd.tree(tree)
	if err != nil {
		return err
	}
	it := treeIter{data: data}
	for mode, name, h, ok := it.next(); ok; mode, name, h, ok = it.next() {
		fn(mode, string(name), h)
	}
	if it.err != nil {
		return fmt.Errorf("read tree %s: %w", tree, it.err)
	}
	return nil
}

// holdNew marks h held by the target, unless it is known already.
func (pw *packWriter) holdNew(h plumbing.Hash) {
	if _, ok := pw.idx.find(h); !ok {
		pw.idx.hold(h)
	}
}

// missingObjects lists in pw.idx the objects to send for commits, the new
// commits haveTrees found: first the commits, then the trees and blobs of
// those commits, leaving out everything already known. It returns how
// many commits it listed.
func (pw *packWriter) missingObjects(ctx context.Context, rs *repoState, part uint16, commits []newCommit) (int, error) {
	n := 0
	for _, c := range commits {
		if _, ok := pw.idx.find(c.hash); !ok {
			pw.add(c.hash, part, plumbing.ZeroHash)
			n++
		}
	}
	for i, c := range commits {
		// The first parent's tree is where the previous versions of the
		// commit's files are, the bases for deltas of loose objects. The
		// parent is mostly the next commit of the list (newest first).
		var base plumbing.Hash
		if c.hasParent && !rs.shallow[c.hash] {
			if i+1 < len(commits) && commits[i+1].hash == c.parent {
				base = commits[i+1].tree
			} else if pc, err := rs.rd.commit(c.parent); err == nil {
				base = pc.tree
			}
		}
		if err := pw.collectTree(ctx, rs, part, c.tree, base); err != nil {
			return 0, err
		}
	}
	return n, nil
}

// collectTree lists in pw.idx, as objects to send, the tree and
// everything below it not known before. Subtrees already known are not
// read again: unchanged directories cost one lookup.
//
// base is the tree at the same path in the commit's first parent (zero
// if none): for an object that is not in a local packfile, the entry of
// the same name there is the base to try for a delta. It is only read for
// loose trees: in a packfile, objects are copied with the deltas they have.
//
// The tree's content is parsed where the reader left it, entry by entry:
// nothing is kept of it but the hashes listed.
func (pw *packWriter) collectTree(ctx context.Context, rs *repoState, part uint16, tree, base plumbing.Hash) error {
	if _, ok := pw.idx.find(tree); ok {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pw.add(tree, part, base)
	data, err := rs.rd.tree(tree)
	if err != nil {
		return err
	}
	var prev map[string]treeEntry
	if !base.IsZero() && base != tree && !rs.packed(tree) {
		if bt, err := rs.rd.tree(base); err == nil {
			prev = make(map[string]treeEntry)
			it := treeIter{data: bt}
			for mode, name, h, ok := it.next(); ok; mode, name, h, ok = it.next() {
				prev[string(name)] = treeEntry{mode, h}
			}
		}
	}
	it := treeIter{data: data}
	for mode, name, h, ok := it.next(); ok; mode, name, h, ok = it.next() {
		var eb plumbing.Hash
		if p, ok := prev[string(name)]; ok && (p.mode == modeDir) == (mode == modeDir) && p.mode != modeSubmodule {
			eb = p.hash
		}
		switch {
		case mode == modeSubmodule:
			// A gitlink names a commit of another repository: not ours to send.
		case mode == modeDir:
			if err := pw.collectTree(ctx, rs, part, h, eb); err != nil {
				return err
			}
		default:
			if _, ok := pw.idx.find(h); ok {
				continue
			}
			pw.add(h, part, eb)
		}
	}
	if it.err != nil {
		return fmt.Errorf("read tree %s: %w", tree, it.err)
	}
	return nil
}

// treeEntry is an entry of a loose tree's base, by name.
type treeEntry struct {
	mode uint32
	hash plumbing.Hash
}

// Commit walk flags.
const (
	uninteresting = 1 << iota
	queued
)

// newCommit is what the pack writer keeps of a commit to send: its tree,
// and its first parent, whose tree has the previous versions of its files.
// The parents' list and the time are only needed during the walk.
type newCommit struct {
	hash, tree, parent plumbing.Hash
	hasParent          bool
}

// newCommits walks history from want and haves together, newest first, the
// way git's revision walker does, reading commits with read, and returns
// the commits reachable from want but not from any have, plus the edges:
// the commits reachable from the haves whose trees the target is known to
// hold. The walk stops as soon as every commit still queued is reachable
// from a have, so an incremental deploy reads a handful of commits however
// long the history is. The commits in shallow are walked as if they had
// no parents.
func newCommits(ctx context.Context, read func(plumbing.Hash) (commitInfo, error), want plumbing.Hash, haves []plumbing.Hash, shallow map[plumbing.Hash]bool) ([]newCommit, []plumbing.Hash, error) {
	flags := make(map[plumbing.Hash]uint8)
	var q commitQueue
	push := func(c *commitInfo) {
		flags[c.hash] |= queued
		heap.Push(&q, c)
	}
	readp := func(h plumbing.Hash) (*commitInfo, error) {
		c, err := read(h)
		if err != nil {
			return nil, err
		}
		return &c, nil
	}
	start, err := readp(want)
	if err != nil {
		return nil, nil, fmt.Errorf("read commit %s: %w", want, err)
	}
	push(start)
	for _, h := range haves {
		c, err := readp(h)
		if err != nil {
			continue // the target has something we never had: nothing to exclude
		}
		flags[h] |= uninteresting
		if flags[h]&queued == 0 {
			push(c)
		}
	}

	var found []newCommit
	var edges []plumbing.Hash
	for q.Len() > 0 && !q.allUninteresting(flags) {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		c := heap.Pop(&q).(*commitInfo)
		f := flags[c.hash]
		if f&uninteresting == 0 {
			nc := newCommit{hash: c.hash, tree: c.tree}
			if len(c.parents) > 0 {
				nc.parent, nc.hasParent = c.parents[0], true
			}
			found = append(found, nc)
		}
		parents := c.parents
		if shallow[c.hash] {
			parents = nil // the local history ends here
		}
		for _, p := range parents {
			pf := flags[p]
			if f&uninteresting != 0 {
				if pf&uninteresting != 0 {
					continue
				}
				flags[p] = pf | uninteresting
				if pf&queued != 0 {
					// Already walked as interesting: walk it again so the
					// mark reaches its own parents.
					pc, err := readp(p)
					if err != nil {
						return nil, nil, fmt.Errorf("read commit %s: %w", p, err)
					}
					heap.Push(&q, pc)
				}
			} else if pf&uninteresting != 0 && !slices.Contains(edges, p) {
				edges = append(edges, p)
			}
			if pf&queued != 0 {
				continue
			}
			pc, err := readp(p)
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
		if flags[c.hash]&uninteresting == 0 {
			kept = append(kept, c)
		}
	}
	// Every have we know is an edge too: its tree is on the target, and a
	// commit that touches few files shares most of its tree with it.
	for _, h := range haves {
		if flags[h]&uninteresting != 0 && !slices.Contains(edges, h) {
			edges = append(edges, h)
		}
	}
	return kept, edges, nil
}

// commitQueue is a max-heap of commits by committer time.
type commitQueue []*commitInfo

func (q commitQueue) Len() int           { return len(q) }
func (q commitQueue) Less(i, j int) bool { return q[i].when > q[j].when }
func (q commitQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *commitQueue) Push(x any)        { *q = append(*q, x.(*commitInfo)) }
func (q *commitQueue) Pop() any {
	old := *q
	c := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return c
}

func (q commitQueue) allUninteresting(flags map[plumbing.Hash]uint8) bool {
	for _, c := range q {
		if flags[c.hash]&uninteresting == 0 {
			return false
		}
	}
	return true
}
