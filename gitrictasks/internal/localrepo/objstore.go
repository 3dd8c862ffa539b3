package localrepo

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/go-git/go-git/v5/plumbing"
)

// Pack entry types, as a pack's entry headers number them.
const (
	objCommit   = 1
	objTree     = 2
	objBlob     = 3
	objTag      = 4
	objOfsDelta = 6
	objRefDelta = 7
)

// store is a read-only view of a repository's object directories, the
// alternates' included, for the pack writer: where each object sits (in
// which packfile at what offset, or in which loose file) and the raw bytes
// of pack entries, so that they can be copied into a new pack as stored.
// It reads idx files (version 1 and 2) itself; everything else that a pack
// directory holds (.keep, .bitmap, .rev, .promisor, multi-pack-index) is
// left alone: the .idx next to each .pack is all it needs.
type store struct {
	dirs  []string // object directories: the repository's, then its alternates'
	packs []*packIdx
}

// openStore lists the object directories of the repository whose common
// git directory is common, and the packs in them, newest first (as git
// looks them up). The idx files are read now; the packs are opened when
// first read.
func openStore(common string) (*store, error) {
	s := &store{}
	seen := make(map[string]bool)
	var add func(dir string, depth int) error
	add = func(dir string, depth int) error {
		dir = filepath.Clean(dir)
		if seen[dir] || depth > 5 { // git follows alternates five deep
			return nil
		}
		seen[dir] = true
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return nil // an alternate that is gone: git warns and goes on
		}
		s.dirs = append(s.dirs, dir)
		data, err := os.ReadFile(filepath.Join(dir, "info", "alternates"))
		if err != nil {
			return nil
		}
		for _, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if !filepath.IsAbs(line) {
				line = filepath.Join(dir, line)
			}
			if err := add(line, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := add(filepath.Join(common, "objects"), 0); err != nil {
		return nil, err
	}
	for _, dir := range s.dirs {
		ps, err := readPackDir(filepath.Join(dir, "pack"))
		if err != nil {
			s.close()
			return nil, err
		}
		s.packs = append(s.packs, ps...)
	}
	return s, nil
}

// readPackDir reads the idx files of the packs in dir, newest pack first.
func readPackDir(dir string) ([]*packIdx, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	type found struct {
		p     *packIdx
		mtime int64
	}
	var ps []found
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".pack")
		if !ok || e.IsDir() {
			continue
		}
		base := filepath.Join(dir, name)
		fi, err := os.Stat(base + ".pack")
		if err != nil {
			continue
		}
		p, err := readIdx(base+".idx", fi.Size())
		if errors.Is(err, os.ErrNotExist) {
			continue // a pack being written, without its idx yet: git skips it too
		}
		if err != nil {
			return nil, err
		}
		p.path = base + ".pack"
		ps = append(ps, found{p, fi.ModTime().UnixNano()})
	}
	sort.SliceStable(ps, func(i, j int) bool { return ps[i].mtime > ps[j].mtime })
	out := make([]*packIdx, len(ps))
	for i, f := range ps {
		out[i] = f.p
	}
	// Read piecewise, each index holds its file open: a repository of
	// many packs (never repacked) would hold a descriptor for each.
	if len(out) > maxLazyPacks {
		for _, p := range out {
			if err := p.load(); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// maxLazyPacks is the most packs of one directory whose indexes are read
// piecewise; with more, every index is read whole when it is opened.
const maxLazyPacks = 16

// close closes the packs that were opened.
func (s *store) close() {
	for _, p := range s.packs {
		p.mu.Lock()
		if p.f != nil {
			p.f.Close()
			p.f = nil
		}
		p.mu.Unlock()
		p.closeIdx()
	}
}

// stale says whether the pack directories list other packs than s has: a
// pack was added (git gc, git repack, a fetch) or removed since s was
// opened.
func (s *store) stale() bool {
	have := make(map[string]bool, len(s.packs))
	for _, p := range s.packs {
		have[p.path] = true
	}
	n := 0
	for _, dir := range s.dirs {
		ents, err := os.ReadDir(filepath.Join(dir, "pack"))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return true
		}
		for _, e := range ents {
			name, ok := strings.CutSuffix(e.Name(), ".pack")
			if !ok || e.IsDir() {
				continue
			}
			base := filepath.Join(dir, "pack", name)
			if _, err := os.Stat(base + ".idx"); err != nil {
				continue // being written: readPackDir skips it too
			}
			if !have[base+".pack"] {
				return true
			}
			n++
		}
	}
	return n != len(s.packs)
}

// location is where an object is stored: a pack entry, or a loose file
// in the object directory dirs[dir].
type location struct {
	pack *packIdx
	off  int64
	dir  int
}

// locate finds object h: in the first pack that has it, else loose.
func (s *store) locate(h plumbing.Hash) (location, bool) {
	for _, p := range s.packs {
		if off, ok := p.find(h); ok {
			return location{pack: p, off: off}, true
		}
	}
	for d := range s.dirs {
		if _, err := os.Stat(s.loosePath(d, h)); err == nil {
			return location{dir: d}, true
		}
	}
	return location{}, false
}

// packed says whether h is in one of the packs.
func (s *store) packed(h plumbing.Hash) bool {
	for _, p := range s.packs {
		if p.search(h) >= 0 {
			return true
		}
	}
	return false
}

// loosePath is where object directory dirs[d] keeps h when it is loose.
func (s *store) loosePath(d int, h plumbing.Hash) string {
	name := h.String()
	return filepath.Join(s.dirs[d], name[:2], name[2:])
}

// packIdx is a pack's index: the hashes of its objects in order, with
// their offsets (and crc32s in a version 2 index), kept as the file has
// them and searched in place.
//
// A version 2 index is read piecewise at first: its fan-out table when the
// pack is opened, then for each lookup the hashes that start with the same
// byte and the offset found, two small reads. An incremental deploy looks
// up a few dozen objects and needs no more of an index that holds tens of
// thousands (about 28 bytes each); once lazyLookups lookups were answered
// that way, or something needs the whole index (the entries in pack order),
// it is read whole.
type packIdx struct {
	path    string // the .pack
	size    int64  // of the .pack
	version int
	n       int
	fanout  [256]uint32

	// idxMu guards what follows up to mu: the index file while it is read
	// piecewise, and its tables once it is read whole.
	idxMu   sync.Mutex
	idxPath string
	idxFile *os.File // open while the tables are not read
	lookups int      // answered from idxFile
	buf     []byte   // for a bucket of hashes read from idxFile
	loaded  atomic.Bool
	names   []byte // n × 20 bytes (version 2), or n × 24: offset then name (version 1)
	crcs    []byte // n × 4 (version 2)
	offs    []byte // n × 4 (version 2)
	large   []byte // 8 bytes each (version 2)

	// mu guards f and the building of byOffset and sorted: a store is
	// shared by the repository's readers.
	mu sync.Mutex
	f  *os.File
	// byOffset is the entries' positions in pack order, built when first
	// needed: it gives each entry's end (the next one's start) and the
	// hash at an offset (an OFS_DELTA's base).
	byOffset []uint32
	sorted   []int64 // the offsets of byOffset, in order
}

var idxMagic = []byte{0xff, 't', 'O', 'c'}

// Where a version 2 index keeps its tables, after its 8-byte header and
// its fan-out table.
const idxTables = 8 + 256*4

// lazyLookups is how many lookups a packIdx answers by reading its file
// piecewise before it reads the whole index.
const lazyLookups = 64

// maxBucket bounds the bytes of hashes one piecewise lookup reads: an
// index with more in a bucket (millions of objects) is read whole.
const maxBucket = 64 << 10

// readIdx opens the idx file at path, for a pack of packSize bytes: it
// reads its header and fan-out table, and checks that the file's size
// fits them; a version 1 index is read whole.
func readIdx(path string, packSize int64) (*packIdx, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	p := &packIdx{size: packSize, idxPath: path}
	if err := p.open(f); err != nil {
		f.Close()
		return nil, err
	}
	if p.version == 1 {
		f.Close()
		return p, p.load()
	}
	p.idxFile = f
	return p, nil
}

// open reads the header and fan-out table of the index file f.
func (p *packIdx) open(f *os.File) error {
	bad := func(why string) error { return fmt.Errorf("pack index %s: %s", p.idxPath, why) }
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	var head [idxTables]byte
	n, err := io.ReadFull(f, head[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("pack index %s: %w", p.idxPath, err)
	}
	b := head[:n]
	if bytes.HasPrefix(b, idxMagic) {
		if len(b) < 8 {
			return bad("truncated")
		}
		p.version = int(binary.BigEndian.Uint32(b[4:]))
		if p.version != 2 {
			return bad("version " + strconv.Itoa(p.version) + " is not supported")
		}
		b = b[8:]
	} else {
		p.version = 1
	}
	if len(b) < 256*4 {
		return bad("truncated")
	}
	for i := range p.fanout {
		p.fanout[i] = binary.BigEndian.Uint32(b[i*4:])
		if i > 0 && p.fanout[i] < p.fanout[i-1] {
			return bad("corrupt fan-out table")
		}
	}
	p.n = int(p.fanout[255])
	body := fi.Size() - idxTables
	if p.version == 1 {
		body = fi.Size() - 256*4
		if body < int64(p.n)*24+40 {
			return bad("truncated")
		}
	} else if body < int64(p.n)*28+40 {
		return bad("truncated")
	}
	return nil
}

// load reads the index whole, once.
func (p *packIdx) load() error {
	if p.loaded.Load() {
		return nil
	}
	p.idxMu.Lock()
	defer p.idxMu.Unlock()
	return p.loadLocked()
}

func (p *packIdx) loadLocked() error {
	if p.loaded.Load() {
		return nil
	}
	// From the descriptor opened with the pack, when there is one: a git
	// gc since then may have removed the file.
	var data []byte
	var err error
	if p.idxFile != nil {
		data, err = readAll(p.idxFile)
	} else {
		data, err = os.ReadFile(p.idxPath)
	}
	if err != nil {
		return fmt.Errorf("pack index: %w", err)
	}
	if p.version == 1 {
		body := data[256*4:]
		if len(body) < p.n*24+40 {
			return fmt.Errorf("pack index %s: truncated", p.idxPath)
		}
		p.names = body[:p.n*24]
	} else {
		body := data[idxTables:]
		if len(body) < p.n*28+40 {
			return fmt.Errorf("pack index %s: truncated", p.idxPath)
		}
		p.names = body[:p.n*20]
		p.crcs = body[p.n*20 : p.n*24]
		p.offs = body[p.n*24 : p.n*28]
		p.large = body[p.n*28 : len(body)-40]
	}
	if p.idxFile != nil {
		p.idxFile.Close()
		p.idxFile = nil
	}
	p.buf = nil
	p.loaded.Store(true)
	return nil
}

// readAll reads the whole of f, from its start.
func readAll(f *os.File) ([]byte, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return data, nil
}

// closeIdx closes the index file, if it is open.
func (p *packIdx) closeIdx() {
	p.idxMu.Lock()
	defer p.idxMu.Unlock()
	if p.idxFile != nil {
		p.idxFile.Close()
		p.idxFile = nil
	}
}

// name is the hash of the i-th entry (in hash order); the index must have
// been loaded.
func (p *packIdx) name(i int) []byte {
	if p.version == 1 {
		return p.names[i*24+4 : i*24+24]
	}
	return p.names[i*20 : i*20+20]
}

// offset is the pack offset of the i-th entry (in hash order).
func (p *packIdx) offset(i int) (int64, error) {
	if !p.loaded.Load() {
		if off, ok, err := p.offsetFile(i); ok || err != nil {
			return off, err
		}
	}
	if err := p.load(); err != nil {
		return 0, err
	}
	if p.version == 1 {
		return int64(binary.BigEndian.Uint32(p.names[i*24:])), nil
	}
	return p.largeOffset(binary.BigEndian.Uint32(p.offs[i*4:]), func(b []byte, k int) error {
		if (k+1)*8 > len(p.large) {
			return errBadLarge
		}
		copy(b, p.large[k*8:])
		return nil
	})
}

// errBadLarge is a large offset outside its table.
var errBadLarge = errors.New("corrupt large offset")

// largeOffset decodes the 4-byte offset o, reading a large one with get.
func (p *packIdx) largeOffset(o uint32, get func(b []byte, k int) error) (int64, error) {
	if o&0x80000000 == 0 {
		return int64(o), nil
	}
	var b [8]byte
	if err := get(b[:], int(o&0x7fffffff)); err != nil {
		return 0, fmt.Errorf("pack index of %s: %w", p.path, err)
	}
	return int64(binary.BigEndian.Uint64(b[:])), nil
}

// offsetFile reads the offset of the i-th entry from the index file; ok
// is false when the index was read whole meanwhile.
func (p *packIdx) offsetFile(i int) (off int64, ok bool, err error) {
	p.idxMu.Lock()
	defer p.idxMu.Unlock()
	if p.idxFile == nil {
		return 0, false, nil
	}
	var b [4]byte
	if _, err := p.idxFile.ReadAt(b[:], idxTables+int64(p.n)*24+int64(i)*4); err != nil {
		return 0, true, fmt.Errorf("pack index %s: %w", p.idxPath, err)
	}
	off, err = p.largeOffset(binary.BigEndian.Uint32(b[:]), func(b []byte, k int) error {
		_, err := p.idxFile.ReadAt(b, idxTables+int64(p.n)*28+int64(k)*8)
		if err != nil {
			return errBadLarge
		}
		return nil
	})
	return off, true, err
}

// crc is the crc32 of the i-th entry's raw bytes; ok is false in a version
// 1 index, which has none. The index must have been loaded.
func (p *packIdx) crc(i int) (uint32, bool) {
	if p.version == 1 {
		return 0, false
	}
	return binary.BigEndian.Uint32(p.crcs[i*4:]), true
}

// search returns the position of h in the index, or -1 (also when the
// index cannot be read).
func (p *packIdx) search(h plumbing.Hash) int {
	lo := 0
	if h[0] > 0 {
		lo = int(p.fanout[h[0]-1])
	}
	hi := int(p.fanout[h[0]])
	if lo >= hi {
		return -1
	}
	if !p.loaded.Load() {
		if i, ok := p.searchFile(h, lo, hi); ok {
			return i
		}
	}
	if p.load() != nil {
		return -1
	}
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := bytes.Compare(p.name(m), h[:]); {
		case c == 0:
			return m
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return -1
}

// searchFile looks h up among the entries lo to hi of the index file;
// ok is false when the index is to be read whole instead.
func (p *packIdx) searchFile(h plumbing.Hash, lo, hi int) (int, bool) {
	p.idxMu.Lock()
	defer p.idxMu.Unlock()
	if p.idxFile == nil || p.lookups >= lazyLookups || (hi-lo)*20 > maxBucket {
		return 0, false
	}
	p.lookups++
	n := (hi - lo) * 20
	if cap(p.buf) < n {
		p.buf = make([]byte, n)
	}
	b := p.buf[:n]
	if _, err := p.idxFile.ReadAt(b, idxTables+int64(lo)*20); err != nil {
		return 0, false
	}
	i, found := sort.Find(hi-lo, func(k int) int { return bytes.Compare(h[:], b[k*20:k*20+20]) })
	if !found {
		return -1, true
	}
	return lo + i, true
}

// find returns the offset of h's entry.
func (p *packIdx) find(h plumbing.Hash) (int64, bool) {
	i := p.search(h)
	if i < 0 {
		return 0, false
	}
	off, err := p.offset(i)
	return off, err == nil
}

// order builds byOffset and sorted.
func (p *packIdx) order() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byOffset != nil || p.n == 0 {
		return nil
	}
	if err := p.load(); err != nil {
		return err
	}
	pos := make([]uint32, p.n)
	offs := make([]int64, p.n)
	for i := range pos {
		pos[i] = uint32(i)
		o, err := p.offset(i)
		if err != nil {
			return err
		}
		offs[i] = o
	}
	sort.Slice(pos, func(a, b int) bool { return offs[pos[a]] < offs[pos[b]] })
	sorted := make([]int64, p.n)
	for k, i := range pos {
		sorted[k] = offs[i]
	}
	p.byOffset, p.sorted = pos, sorted
	return nil
}

// at returns the position (in hash order) of the entry at offset off and
// the offset where the entry ends.
func (p *packIdx) at(off int64) (pos int, end int64, err error) {
	if err := p.order(); err != nil {
		return 0, 0, err
	}
	k := sort.Search(len(p.sorted), func(k int) bool { return p.sorted[k] >= off })
	if k == len(p.sorted) || p.sorted[k] != off {
		return 0, 0, fmt.Errorf("pack %s: no entry at offset %d", p.path, off)
	}
	end = p.size - 20 // the pack's trailing checksum
	if k+1 < len(p.sorted) {
		end = p.sorted[k+1]
	}
	if end <= off {
		return 0, 0, fmt.Errorf("pack %s: corrupt index: entry at %d ends at %d", p.path, off, end)
	}
	return int(p.byOffset[k]), end, nil
}

// file opens the pack when first needed.
func (p *packIdx) file() (*os.File, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.f == nil {
		f, err := os.Open(p.path)
		if err != nil {
			return nil, err
		}
		p.f = f
	}
	return p.f, nil
}

// entry is a pack entry's header, as stored.
type entry struct {
	typ     int   // objCommit … objRefDelta
	size    int64 // of the object, or for a delta of the delta data
	hdrLen  int   // bytes of type and size, plus the base reference of a delta
	baseOff int64 // an OFS_DELTA's base, as an offset in the same pack
	baseRef plumbing.Hash
	end     int64  // where the entry ends in the pack
	pos     int    // position in the index (hash order)
	crc     uint32 // crc32 of the hdrLen bytes of the header
}

// entryAt reads the header of the entry at off, with its position in the
// index and its end.
func (p *packIdx) entryAt(off int64) (entry, error) {
	pos, end, err := p.at(off)
	if err != nil {
		return entry{}, err
	}
	e, err := p.headerAt(off, end)
	e.pos = pos
	return e, err
}

// headerAt reads the header of the entry at off, which ends at or before
// end. Unlike entryAt, it does not need the entries in pack order (12
// bytes an object, built on first use): objReader inflates an entry up to
// the end of its zlib stream, and finds no use for its exact end or its
// position; e.end is then end, and e.pos -1.
func (p *packIdx) headerAt(off, end int64) (entry, error) {
	e := entry{end: end, pos: -1}
	f, err := p.file()
	if err != nil {
		return e, err
	}
	if off < 12 || off >= end {
		return e, fmt.Errorf("pack %s: no entry at offset %d", p.path, off)
	}
	var buf [64]byte
	n, err := f.ReadAt(buf[:min(int64(len(buf)), e.end-off)], off)
	if n == 0 && err != nil {
		return e, fmt.Errorf("read pack %s at %d: %w", p.path, off, err)
	}
	b := buf[:n]
	// The error is made only when needed: entryAt runs for every entry read.
	bad := func() error { return fmt.Errorf("pack %s: corrupt entry header at %d", p.path, off) }
	i := 0
	if i >= len(b) {
		return e, bad()
	}
	c := b[i]
	i++
	e.typ = int(c>>4) & 7
	e.size = int64(c & 0x0f)
	for shift := 4; c&0x80 != 0; shift += 7 {
		if i >= len(b) || shift > 62 {
			return e, bad()
		}
		c = b[i]
		i++
		e.size |= int64(c&0x7f) << shift
	}
	switch e.typ {
	case objCommit, objTree, objBlob, objTag:
	case objOfsDelta:
		if i >= len(b) {
			return e, bad()
		}
		c = b[i]
		i++
		rel := int64(c & 0x7f)
		for c&0x80 != 0 {
			if i >= len(b) || rel > 1<<55 {
				return e, bad()
			}
			c = b[i]
			i++
			rel = (rel+1)<<7 | int64(c&0x7f)
		}
		if rel <= 0 || rel > off {
			return e, bad()
		}
		e.baseOff = off - rel
	case objRefDelta:
		if i+20 > len(b) {
			return e, bad()
		}
		copy(e.baseRef[:], b[i:i+20])
		i += 20
	default:
		return e, fmt.Errorf("pack %s: entry at %d has unknown type %d", p.path, off, e.typ)
	}
	e.hdrLen = i
	e.crc = crc32.ChecksumIEEE(b[:i])
	return e, nil
}

// hashAt is the hash of the object at offset off.
func (p *packIdx) hashAt(off int64) (plumbing.Hash, error) {
	pos, _, err := p.at(off)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	var h plumbing.Hash
	copy(h[:], p.name(pos))
	return h, nil
}

// looseObject is an opened loose object: its type and size, and a reader
// of its content, inflated as it is read. Close gives its buffers back.
type looseObject struct {
	typ  int
	size int64
	r    io.Reader
	f    *os.File
	st   *looseState
}

// looseState is what reading a loose object needs besides the file: a
// buffer over the file, a zlib state and a buffer over what it inflates,
// about 60 KiB in all. openLoose takes one from loosePool and Close gives
// it back, so that a walk that reads hundreds of loose objects holds one
// of each rather than making them again for every object.
type looseState struct {
	fr *bufio.Reader // over the file
	zr io.ReadCloser // inflates fr
	br *bufio.Reader // over zr
}

var loosePool = sync.Pool{New: func() any { return new(looseState) }}

// looseBuf is the size of each of a looseState's two buffers.
const looseBuf = 8 << 10

func (o *looseObject) Close() error {
	if o.st != nil {
		o.st.zr.Close()
		o.st.fr.Reset(nil)
		o.st.br.Reset(nil)
		loosePool.Put(o.st)
		o.st, o.r = nil, nil
	}
	return o.f.Close()
}

// openLoose opens the loose object file at path and reads its header.
func openLoose(path string) (*looseObject, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st := loosePool.Get().(*looseState)
	reuseReader(&st.fr, f, looseBuf)
	if err := reuseInflater(&st.zr, st.fr); err != nil {
		f.Close()
		st.fr.Reset(nil)
		loosePool.Put(st) // a zlib state that failed is reset by its next use
		return nil, fmt.Errorf("loose object %s: %w", path, err)
	}
	reuseReader(&st.br, st.zr, looseBuf)
	o := &looseObject{f: f, st: st}
	hdr, err := st.br.ReadSlice(0)
	if err != nil {
		o.Close()
		return nil, fmt.Errorf("loose object %s: bad header: %w", path, err)
	}
	kind, size, ok := strings.Cut(string(hdr[:len(hdr)-1]), " ")
	t, terr := plumbing.ParseObjectType(kind)
	n, nerr := strconv.ParseInt(size, 10, 64)
	if !ok || terr != nil || nerr != nil || n < 0 {
		o.Close()
		return nil, fmt.Errorf("loose object %s: bad header %q", path, hdr)
	}
	o.typ, o.size = int(t), n
	o.r = io.LimitReader(st.br, n)
	return o, nil
}
