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
	"github.com/gitric/gitric/gitrictasks/internal/stream"
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
	file  *os.File // unlinked: nothing is left behind, even on SIGKILL
	size  int64
	stats localrepo.PackStats
	err   error
}

// write writes to w the pack for a host that has haves.
func (p *packs) write(ctx context.Context, w io.Writer, haves []plumbing.Hash, estimate func(int64)) (localrepo.PackStats, error) {
	if !p.share {
		p.mu.Lock()
		defer p.mu.Unlock()
		return localrepo.WritePacksEstimated(ctx, w, p.parts(haves), func(_ int, n int64) { estimate(n) })
	}
	f := p.file(haves)
	f.once.Do(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		f.stats, f.file, f.size, f.err = p.make(ctx, haves)
	})
	if f.err != nil {
		return f.stats, f.err
	}
	// Each host reads the one descriptor at its own offsets.
	estimate(f.size)
	_, err := io.Copy(w, io.NewSectionReader(f.file, 0, f.size))
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

func (p *packs) make(ctx context.Context, haves []plumbing.Hash) (localrepo.PackStats, *os.File, int64, error) {
	tmp, err := os.CreateTemp("", "gitric-*.pack")
	if err != nil {
		return localrepo.PackStats{}, nil, 0, err
	}
	// Unlinked at once: the open descriptor keeps the data for the hosts,
	// and the file is gone whenever the process ends, however it ends.
	_ = os.Remove(tmp.Name())
	bw := bufio.NewWriterSize(tmp, 256<<10)
	cw := &stream.Counter{W: bw}
	stats, err := localrepo.WritePacks(ctx, cw, p.parts(haves))
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		tmp.Close()
		return stats, nil, 0, err
	}
	return stats, tmp, cw.Count(), nil
}

// remove closes the temporary files.
func (p *packs) remove() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.files {
		if f.file != nil {
			f.file.Close()
		}
	}
}
