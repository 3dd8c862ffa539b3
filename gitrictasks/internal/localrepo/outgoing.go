package localrepo

import (
	"context"
	"fmt"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/utils/merkletrie"
)

// Outgoing sums up what deploying want to a host on from sends and
// changes (from zero: a host with nothing).
type Outgoing struct {
	Commits  int      // commits want has that from has not
	Subjects []string // the newest of them, at most the n asked for
	// Files, Insertions and Deletions are the diff from from to want
	// (lines are not counted when from is zero); Paths its first files.
	Files, Insertions, Deletions int
	Paths                        []string
	// Added are the paths want has as files that from has not: where a
	// checkout would overwrite an untracked file.
	Added []string
}

// Outgoing compares want with from, for a plan.
func (r *Repo) Outgoing(want, from plumbing.Hash, n int) (Outgoing, error) {
	var out Outgoing
	shallow, err := r.shallowSet()
	if err != nil {
		return out, err
	}
	commits, _, err := newCommits(context.Background(), r.commitInfo, want, haveList(from), shallow)
	if err != nil {
		return out, err
	}
	out.Commits = len(commits)
	for i := 0; i < len(commits) && len(out.Subjects) < n; i++ {
		c, err := r.git.CommitObject(commits[i].hash)
		if err != nil {
			return out, fmt.Errorf("read commit %s: %w", commits[i].hash, err)
		}
		out.Subjects = append(out.Subjects, commitOf(c).Subject)
	}
	wc, err := r.git.CommitObject(want)
	if err != nil {
		return out, fmt.Errorf("read commit %s: %w", want, err)
	}
	wt, err := wc.Tree()
	if err != nil {
		return out, err
	}
	var ft *object.Tree
	if !from.IsZero() {
		fc, err := r.git.CommitObject(from)
		if err != nil {
			return out, nil // not in the local history: no diff to show
		}
		if ft, err = fc.Tree(); err != nil {
			return out, err
		}
	}
	changes, err := object.DiffTree(ft, wt)
	if err != nil {
		return out, err
	}
	out.Files = len(changes)
	for _, c := range changes {
		if len(out.Paths) < n {
			name := c.To.Name
			if name == "" {
				name = c.From.Name
			}
			out.Paths = append(out.Paths, name)
		}
		if action, err := c.Action(); err == nil && action == merkletrie.Insert {
			out.Added = append(out.Added, c.To.Name)
		}
	}
	if ft != nil && len(changes) <= 2000 {
		if patch, err := changes.Patch(); err == nil {
			for _, s := range patch.Stats() {
				out.Insertions += s.Addition
				out.Deletions += s.Deletion
			}
		}
	}
	return out, nil
}

// commitInfo reads commit h with go-git, for a walk outside the pack
// writer (which has its own reader).
func (r *Repo) commitInfo(h plumbing.Hash) (commitInfo, error) {
	c, err := r.git.CommitObject(h)
	if err != nil {
		return commitInfo{}, err
	}
	return commitInfo{hash: c.Hash, tree: c.TreeHash, parents: c.ParentHashes, when: c.Committer.When.Unix()}, nil
}

func haveList(h plumbing.Hash) []plumbing.Hash {
	if h.IsZero() {
		return nil
	}
	return []plumbing.Hash{h}
}
