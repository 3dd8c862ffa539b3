package localrepo

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
)

// ErrShallow means an answer needs history that a shallow clone lacks.
var ErrShallow = errors.New("shallow clone")

// Shallow lists the commits at which a shallow clone's history is cut
// (.git/shallow); none for a full clone.
func (r *Repo) Shallow() ([]plumbing.Hash, error) {
	f, err := os.Open(filepath.Join(r.gitDir(), "shallow"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []plumbing.Hash
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); plumbing.IsHash(line) {
			out = append(out, plumbing.NewHash(line))
		}
	}
	return out, sc.Err()
}

// Partial says whether the clone is partial (git clone --filter): some of
// its objects are left on the server it came from.
func (r *Repo) Partial() bool {
	cfg, err := r.git.Config()
	if err == nil {
		if cfg.Raw.Section("extensions").Option("partialclone") != "" {
			return true
		}
		for _, sub := range cfg.Raw.Section("remote").Subsections {
			if strings.EqualFold(sub.Option("promisor"), "true") {
				return true
			}
		}
	}
	matches, _ := filepath.Glob(filepath.Join(r.gitDir(), "objects", "pack", "*.promisor"))
	return len(matches) > 0
}
