package localrepo

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// ErrShallow means a question about history cannot be answered in a
// shallow clone: the answer lies below the commits the clone was cut at.
var ErrShallow = errors.New("the local repository is a shallow clone")

// Shallow lists the commits at the boundary of a shallow clone (those in
// the shallow file of its git directory), whose parents the local
// repository does not have. It is empty for a complete clone.
func (r *Repo) Shallow() ([]plumbing.Hash, error) {
	f, err := os.Open(filepath.Join(r.common, "shallow"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read shallow boundary: %w", err)
	}
	defer f.Close()
	var out []plumbing.Hash
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		if len(line) != 40 || !plumbing.IsHash(line) {
			return nil, fmt.Errorf("read shallow boundary %s: bad line %q", f.Name(), line)
		}
		out = append(out, plumbing.NewHash(line))
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read shallow boundary: %w", err)
	}
	return out, nil
}

// shallowSet is Shallow as a set; nil for a complete clone.
func (r *Repo) shallowSet() (map[plumbing.Hash]bool, error) {
	hs, err := r.Shallow()
	if err != nil || len(hs) == 0 {
		return nil, err
	}
	set := make(map[plumbing.Hash]bool, len(hs))
	for _, h := range hs {
		set[h] = true
	}
	return set, nil
}

// Partial says whether the repository is a partial clone (git clone
// --filter): extensions.partialClone is set, a remote is a promisor, or a
// pack directory holds .promisor files. Such a clone may lack objects a
// deploy must send.
func (r *Repo) Partial() bool {
	if cfg, err := r.git.Config(); err == nil {
		if cfg.Raw.Section("extensions").Option("partialClone") != "" {
			return true
		}
		for _, sub := range cfg.Raw.Section("remote").Subsections {
			if strings.EqualFold(strings.TrimSpace(sub.Option("promisor")), "true") {
				return true
			}
		}
	}
	matches, _ := filepath.Glob(filepath.Join(r.common, "objects", "pack", "*.promisor"))
	return len(matches) > 0
}
