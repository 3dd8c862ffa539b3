package deploy

import (
	"bufio"
	"context"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
)

// packs writes the pack for a deploy's hosts. With one host the pack is
// streamed to it as it is made. With several, hosts that have the same refs
// need the same pack: it is made once, into a temporary file, and streamed
// from there to each of them, so a slow host holds up no other and the
// local repository is read once whatever the size of the fleet.
type packs struct {
	parts func(haves []plumbing.Hash) []localrepo.PackPart
	share bool

	mu    sync.Mutex // guards files, and serialises reads of the repositories
	files map[string]*packFile
}

type packFile struct {
	once  sync.Once
	path  string
	stats localrepo.PackStats
	err   error
}

// write writes to w the pack for a host that has haves.
func (p *packs) write(ctx context.Context, w io.Writer, haves []plumbing.Hash) (localrepo.PackStats, error) {
	if !p.share {
		p.mu.Lock()
		defer p.mu.Unlock()
		return localrepo.WritePacks(ctx, w, p.parts(haves))
	}
	f := p.file(haves)
	f.once.Do(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		f.stats, f.path, f.err = p.make(ctx, haves)
	})
	if f.err != nil {
		return f.stats, f.err
	}
	r, err := os.Open(f.path)
	if err != nil {
		return f.stats, err
	}
	defer r.Close()
	_, err = io.Copy(w, r)
	return f.stats, err
}

func (p *packs) file(haves []plumbing.Hash) *packFile {
	keys := make([]string, len(haves))
	for i, h := range haves {
		keys[i] = h.String()
	}
	slices.Sort(keys)
	key := strings.Join(slices.Compact(keys), ",")
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.files == nil {
		p.files = map[string]*packFile{}
	}
	f, ok := p.files[key]
	if !ok {
		f = &packFile{}
		p.files[key] = f
	}
	return f
}

func (p *packs) make(ctx context.Context, haves []plumbing.Hash) (localrepo.PackStats, string, error) {
	tmp, err := os.CreateTemp("", "gitric-*.pack")
	if err != nil {
		return localrepo.PackStats{}, "", err
	}
	defer tmp.Close()
	bw := bufio.NewWriterSize(tmp, 256<<10)
	stats, err := localrepo.WritePacks(ctx, bw, p.parts(haves))
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		os.Remove(tmp.Name())
		return stats, "", err
	}
	return stats, tmp.Name(), nil
}

// remove deletes the temporary files.
func (p *packs) remove() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.files {
		if f.path != "" {
			os.Remove(f.path)
		}
	}
}
