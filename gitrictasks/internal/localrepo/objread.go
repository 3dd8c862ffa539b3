package localrepo

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"container/list"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing"
)

// objReader reads whole objects out of a store: for the pack writer, the
// trees and commits its walk parses, the bases of the deltas it makes and
// the objects whose stored delta it cannot reuse; and, through
// objectSource, every object go-git reads. It inflates pack entries and
// resolves delta chains itself. It is not safe for concurrent use:
// objectSource serialises its reads.
//
// It exists for memory: go-git decodes every tree it reads into a struct
// with a string per entry, and keeps what it read in an object cache and a
// delta base cache; walking a long history that way peaked tens of MiB
// above what the pack itself needs. Here an object is a byte slice, parsed
// in place by whoever asked for it, and the only thing kept is a cache of
// the objects resolved last, bounded in bytes: what delta chains need,
// since the walk goes newest first and a tree's delta base is mostly the
// version of that tree read just before.
type objReader struct {
	s *store
	// br and zr are reused for every entry inflated: one buffer and one
	// zlib state for the whole walk rather than one per object.
	br *bufio.Reader
	zr io.ReadCloser
	// cache holds resolved pack entries, by pack and offset.
	cache objCache
	// inflated counts the pack entries inflated, for tests.
	inflated int
}

// readerBuf is the read buffer over the packfile while an entry is
// inflated.
const readerBuf = 16 << 10

// maxChainRead bounds the delta chains objReader resolves: far above what
// git makes (50 by default, 4095 at most), it only stops a corrupt pack
// whose REF_DELTAs form a cycle.
const maxChainRead = 10000

// errTooLarge means an object is larger than the caller would hold.
var errTooLarge = errors.New("object larger than the limit")

func newObjReader(s *store) *objReader {
	return &objReader{s: s, cache: objCache{budget: objCacheBudget, items: map[cacheKey]*list.Element{}}}
}

// read returns the type (objCommit … objTag) and content of object h,
// which must be at most limit bytes (limit < 0: any size), as must every
// base of its delta chain. The content may be shared with the cache: the
// caller must not modify it. A missing object's error wraps
// plumbing.ErrObjectNotFound; one over the limit, errTooLarge.
func (r *objReader) read(h plumbing.Hash, limit int64) (int, []byte, error) {
	return r.readDepth(h, limit, 0)
}

func (r *objReader) readDepth(h plumbing.Hash, limit int64, depth int) (int, []byte, error) {
	loc, ok := r.s.locate(h)
	if !ok {
		return 0, nil, fmt.Errorf("read object %s: %w", h, plumbing.ErrObjectNotFound)
	}
	if loc.pack != nil {
		return r.readAt(loc.pack, loc.off, limit, depth)
	}
	lo, err := openLoose(r.s.loosePath(loc.dir, h))
	if err != nil {
		return 0, nil, fmt.Errorf("read object %s: %w", h, err)
	}
	defer lo.Close()
	if limit >= 0 && lo.size > limit {
		return 0, nil, errTooLarge
	}
	data := make([]byte, lo.size)
	if _, err := io.ReadFull(lo.r, data); err != nil {
		return 0, nil, fmt.Errorf("read object %s: %w", h, err)
	}
	return lo.typ, data, nil
}

// readAt resolves the entry at off of p. What it resolves is cached when
// it is a tree (the walk's later trees are mostly deltas against it) or a
// base in a chain (depth > 0); a commit or blob asked for itself is read
// once and not kept.
func (r *objReader) readAt(p *packIdx, off int64, limit int64, depth int) (int, []byte, error) {
	if typ, data, ok := r.cache.get(cacheKey{p, off}); ok {
		if limit >= 0 && int64(len(data)) > limit {
			return 0, nil, errTooLarge
		}
		return typ, data, nil
	}
	if depth > maxChainRead {
		return 0, nil, fmt.Errorf("pack %s: delta chain at offset %d is longer than %d: the pack is corrupt (run `git fsck`)", p.path, off, maxChainRead)
	}
	e, err := p.headerAt(off, p.size-20) // up to the pack's checksum
	if err != nil {
		return 0, nil, err
	}
	switch e.typ {
	case objCommit, objTree, objBlob, objTag:
		if limit >= 0 && e.size > limit {
			return 0, nil, errTooLarge
		}
		data, err := r.inflate(p, off, e)
		if err != nil {
			return 0, nil, err
		}
		if depth > 0 || e.typ == objTree {
			r.cache.put(cacheKey{p, off}, e.typ, data)
		}
		return e.typ, data, nil
	}
	delta, err := r.inflate(p, off, e)
	if err != nil {
		return 0, nil, err
	}
	srcSize, n := deltaSize(delta)
	dstSize, m := deltaSize(delta[n:])
	if n == 0 || m == 0 {
		return 0, nil, fmt.Errorf("pack %s: delta at offset %d: corrupt header", p.path, off)
	}
	if limit >= 0 && (srcSize > uint64(limit) || dstSize > uint64(limit)) {
		return 0, nil, errTooLarge
	}
	var typ int
	var base []byte
	if e.typ == objOfsDelta {
		typ, base, err = r.readAt(p, e.baseOff, limit, depth+1)
	} else {
		typ, base, err = r.readDepth(e.baseRef, limit, depth+1)
	}
	if err != nil {
		return 0, nil, err
	}
	data, err := applyDelta(base, delta)
	if err != nil {
		return 0, nil, fmt.Errorf("pack %s: delta at offset %d: %w", p.path, off, err)
	}
	if depth > 0 || typ == objTree {
		r.cache.put(cacheKey{p, off}, typ, data)
	}
	return typ, data, nil
}

// inflate reads the data of entry e at off: e.size bytes once inflated,
// which must be all the zlib stream holds.
func (r *objReader) inflate(p *packIdx, off int64, e entry) ([]byte, error) {
	f, err := p.file()
	if err != nil {
		return nil, err
	}
	start := off + int64(e.hdrLen)
	sec := io.NewSectionReader(f, start, e.end-start)
	reuseReader(&r.br, sec, readerBuf)
	if err := reuseInflater(&r.zr, r.br); err != nil {
		return nil, fmt.Errorf("pack %s: entry at offset %d: %w", p.path, off, err)
	}
	r.inflated++
	data := make([]byte, e.size)
	if _, err := io.ReadFull(r.zr, data); err != nil {
		return nil, fmt.Errorf("pack %s: entry at offset %d: %w", p.path, off, err)
	}
	// The stream must end here; reading its end also checks its adler32.
	var one [1]byte
	if n, err := r.zr.Read(one[:]); n != 0 || err != io.EOF {
		return nil, fmt.Errorf("pack %s: entry at offset %d: more data than its header says", p.path, off)
	}
	return data, nil
}

// deltaSize reads one of the two sizes that open a delta; n is how many
// bytes it took, 0 when the delta is cut short.
func deltaSize(b []byte) (size uint64, n int) {
	for shift := 0; n < len(b) && shift < 64; shift += 7 {
		c := b[n]
		n++
		size |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return size, n
		}
	}
	return 0, 0
}

// applyDelta rebuilds an object from its delta base and a delta in git's
// format (the instructions makeDelta writes).
func applyDelta(base, delta []byte) ([]byte, error) {
	srcSize, n := deltaSize(delta)
	if n == 0 {
		return nil, errors.New("corrupt delta header")
	}
	delta = delta[n:]
	dstSize, n := deltaSize(delta)
	if n == 0 {
		return nil, errors.New("corrupt delta header")
	}
	delta = delta[n:]
	if srcSize != uint64(len(base)) {
		return nil, fmt.Errorf("delta is for a base of %d bytes, not %d", srcSize, len(base))
	}
	out := make([]byte, 0, dstSize)
	for len(delta) > 0 {
		op := delta[0]
		delta = delta[1:]
		if op&0x80 == 0 {
			if op == 0 {
				return nil, errors.New("delta has a reserved instruction")
			}
			k := int(op)
			if k > len(delta) || uint64(len(out)+k) > dstSize {
				return nil, errors.New("delta inserts past its end")
			}
			out = append(out, delta[:k]...)
			delta = delta[k:]
			continue
		}
		var off, size uint64
		for i := 0; i < 4; i++ {
			if op&(1<<i) != 0 {
				if len(delta) == 0 {
					return nil, errors.New("delta cut short")
				}
				off |= uint64(delta[0]) << (8 * i)
				delta = delta[1:]
			}
		}
		for i := 0; i < 3; i++ {
			if op&(0x10<<i) != 0 {
				if len(delta) == 0 {
					return nil, errors.New("delta cut short")
				}
				size |= uint64(delta[0]) << (8 * i)
				delta = delta[1:]
			}
		}
		if size == 0 {
			size = 0x10000
		}
		if off+size > uint64(len(base)) || uint64(len(out))+size > dstSize {
			return nil, errors.New("delta copies past the end of its base or its result")
		}
		out = append(out, base[off:off+size]...)
	}
	if uint64(len(out)) != dstSize {
		return nil, fmt.Errorf("delta makes %d bytes, not the %d it says", len(out), dstSize)
	}
	return out, nil
}

// objCacheBudget is how many bytes of resolved objects objReader keeps.
// The walk's trees are mostly deltas against the version of the same tree
// one commit newer, read just before. On the bench's 3,000-commit code
// history (12,793 trees, half a KiB each), 128 KiB of recent trees resolve
// all but 0.8% of the chains in one step, and 64 KiB needs 4.6 times as
// many inflations as there are trees: 256 KiB leaves room for larger trees
// (TestObjCacheHits checks a smaller history), and more only costs memory.
const objCacheBudget = 256 << 10

// objCacheMax is the largest object the cache keeps: a big tree or blob
// would push out every other tree for one use.
const objCacheMax = 64 << 10

type cacheKey struct {
	p   *packIdx
	off int64
}

type cached struct {
	key  cacheKey
	typ  int
	data []byte
}

// objCache is a least-recently-used cache of resolved pack entries,
// bounded by the bytes of their content.
type objCache struct {
	budget int
	used   int
	lru    list.List // of cached, most recent first
	items  map[cacheKey]*list.Element
}

// clear empties the cache.
func (c *objCache) clear() {
	c.lru.Init()
	clear(c.items)
	c.used = 0
}

func (c *objCache) get(k cacheKey) (int, []byte, bool) {
	el, ok := c.items[k]
	if !ok {
		return 0, nil, false
	}
	c.lru.MoveToFront(el)
	it := el.Value.(*cached)
	return it.typ, it.data, true
}

func (c *objCache) put(k cacheKey, typ int, data []byte) {
	if len(data) > objCacheMax || len(data) > c.budget {
		return
	}
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.lru.PushFront(&cached{key: k, typ: typ, data: data})
	c.used += len(data)
	for c.used > c.budget {
		el := c.lru.Back()
		it := el.Value.(*cached)
		c.lru.Remove(el)
		delete(c.items, it.key)
		c.used -= len(it.data)
	}
}

// Modes of tree entries that the walk tells apart.
const (
	modeDir       = 0o040000
	modeSubmodule = 0o160000
)

// treeIter walks the entries of a tree's content, in place.
type treeIter struct {
	data []byte
	err  error
}

// next returns the next entry: its mode, name (a slice of the tree's
// content) and hash. ok is false at the end, or on a malformed tree, when
// err says why.
func (it *treeIter) next() (mode uint32, name []byte, h plumbing.Hash, ok bool) {
	if len(it.data) == 0 {
		return 0, nil, h, false
	}
	sp := bytes.IndexByte(it.data, ' ')
	if sp <= 0 {
		it.err = errors.New("corrupt tree: entry without a mode")
		return 0, nil, h, false
	}
	for _, c := range it.data[:sp] {
		if c < '0' || c > '7' {
			it.err = errors.New("corrupt tree: bad mode")
			return 0, nil, h, false
		}
		mode = mode<<3 | uint32(c-'0')
	}
	rest := it.data[sp+1:]
	nul := bytes.IndexByte(rest, 0)
	if nul < 0 || len(rest) < nul+1+len(h) {
		it.err = errors.New("corrupt tree: entry cut short")
		return 0, nil, h, false
	}
	name = rest[:nul]
	copy(h[:], rest[nul+1:])
	it.data = rest[nul+1+len(h):]
	return mode, name, h, true
}

// commitInfo is what the walk needs of a commit.
type commitInfo struct {
	hash, tree plumbing.Hash
	parents    []plumbing.Hash
	when       int64 // committer time, in seconds since the epoch
}

// parseCommit reads the tree, parents and committer time of a commit's
// content; a committer line it cannot read counts as time 0, as the
// ordering of the walk is all the time is used for.
func parseCommit(h plumbing.Hash, data []byte) (commitInfo, error) {
	c := commitInfo{hash: h}
	hasTree := false
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(line) == 0 {
			break // the message follows
		}
		key, val, _ := bytes.Cut(line, []byte{' '})
		switch string(key) {
		case "tree":
			t, ok := parseHex(val)
			if !ok {
				return c, fmt.Errorf("commit %s: bad tree line", h)
			}
			c.tree, hasTree = t, true
		case "parent":
			p, ok := parseHex(val)
			if !ok {
				return c, fmt.Errorf("commit %s: bad parent line", h)
			}
			c.parents = append(c.parents, p)
		case "committer":
			// "Name <email> seconds zone": the seconds follow the last '>'.
			if i := bytes.LastIndexByte(val, '>'); i >= 0 {
				f := bytes.Fields(val[i+1:])
				if len(f) > 0 {
					c.when, _ = strconv.ParseInt(string(f[0]), 10, 64)
				}
			}
		}
	}
	if !hasTree {
		return c, fmt.Errorf("commit %s: no tree", h)
	}
	return c, nil
}

func parseHex(b []byte) (plumbing.Hash, bool) {
	var h plumbing.Hash
	if len(b) != 2*len(h) {
		return h, false
	}
	for i := range h {
		hi, ok1 := unhex(b[2*i])
		lo, ok2 := unhex(b[2*i+1])
		if !ok1 || !ok2 {
			return h, false
		}
		h[i] = hi<<4 | lo
	}
	return h, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// commit reads commit h.
func (r *objReader) commit(h plumbing.Hash) (commitInfo, error) {
	typ, data, err := r.read(h, -1)
	if err != nil {
		return commitInfo{}, err
	}
	if typ != objCommit {
		return commitInfo{}, fmt.Errorf("read commit %s: it is not a commit", h)
	}
	return parseCommit(h, data)
}

// tree reads tree h's content.
func (r *objReader) tree(h plumbing.Hash) ([]byte, error) {
	typ, data, err := r.read(h, -1)
	if err != nil {
		return nil, fmt.Errorf("read tree %s: %w", h, err)
	}
	if typ != objTree {
		return nil, fmt.Errorf("read tree %s: it is not a tree", h)
	}
	return data, nil
}

// reuseReader points *br at r, making the buffer (of n bytes) on first use.
func reuseReader(br **bufio.Reader, r io.Reader, n int) {
	if *br == nil {
		*br = bufio.NewReaderSize(r, n)
		return
	}
	(*br).Reset(r)
}

// reuseInflater has *zr inflate r, making the zlib state on first use: a
// zlib reader holds a 32 KiB window and its tables, made once rather than
// once an object.
func reuseInflater(zr *io.ReadCloser, r io.Reader) error {
	if *zr == nil {
		z, err := zlib.NewReader(r)
		if err != nil {
			return err
		}
		*zr = z
		return nil
	}
	return (*zr).(zlib.Resetter).Reset(r, nil)
}
