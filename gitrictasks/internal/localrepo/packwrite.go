package localrepo

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"

	"github.com/go-git/go-git/v5/plumbing"
)

const (
	// maxDeltaSize is the largest object (and base) a delta is made for:
	// both are held in memory while the delta is made.
	maxDeltaSize = 16 << 20
	// minDeltaSize is the smallest object worth a delta.
	minDeltaSize = 64
	// maxDepth is the longest chain of deltas made here (git's default).
	maxDepth = 50
	// smallRaw is the largest entry copied through memory, its crc32
	// checked before it is written; larger ones are streamed and checked
	// at their end.
	smallRaw = 1 << 20
	// fastAbove is the size above which objects are compressed at zlib's
	// fastest level rather than its default.
	fastAbove = 1 << 20
)

// Object states while the pack is written.
const (
	pending = iota
	busy    // being written: its delta base is being written first
	written
)

// sendObj is an object the pack carries. There is one per object sent,
// tens of thousands for a first deploy, so it is kept small (32 bytes):
// the delta base to try for an object that is not copied from a packfile
// lives in packWriter.bases, which few objects have, and where the object
// is stored is looked up again when it is written (a binary search in each
// pack's index) rather than kept.
type sendObj struct {
	hash  plumbing.Hash
	part  uint16
	state uint8
	depth uint8 // of the delta chain as written, 0 for a whole object
	off   int64 // where the entry starts in the new pack
}

// repoState is what the writer knows of one part's repository.
type repoState struct {
	repo  *Repo
	store *store
	// rd reads the objects the writer must inflate: the repository's
	// reader, shared with go-git's reads of it.
	rd      *objectSource
	shallow map[plumbing.Hash]bool
}

func (rs *repoState) packed(h plumbing.Hash) bool { return rs.store.packed(h) }

// packWriter makes one pack from the parts' objects.
type packWriter struct {
	repos  []*repoState
	stores map[*Repo]*repoState
	// idx has every object walked: the objects to send, in the order they
	// are listed, and those the target holds.
	idx objIndex
	// bases is, for the objects that have one, the previous version of the
	// object at the same path, to try as a delta base when the object is
	// not copied from a packfile (see collectTree).
	bases map[int32]plumbing.Hash

	bw          *bufio.Writer
	sum         hash.Hash
	off         int64 // bytes written so far
	zFast, zDef *zlib.Writer
	buf         []byte

	reused, deltas, thin int
}

// open gets the state of r, once per repository however many parts use it.
func (pw *packWriter) open(r *Repo) (*repoState, error) {
	if rs, ok := pw.stores[r]; ok {
		return rs, nil
	}
	// The repository's own store, opened again if git gc ran since it was
	// opened: the pack must find every object.
	st, err := r.source().store(true)
	if err != nil {
		return nil, err
	}
	shallow, err := r.shallowSet()
	if err != nil {
		return nil, err
	}
	rs := &repoState{repo: r, store: st, rd: r.source(), shallow: shallow}
	if pw.stores == nil {
		pw.stores = make(map[*Repo]*repoState)
	}
	pw.stores[r] = rs
	return rs, nil
}

// close lets go of what the writer holds. The stores are the
// repositories', left open for their other readers.
func (pw *packWriter) close() {
	for _, rs := range pw.stores {
		rs.rd.clearCache()
	}
}

// add lists h to be sent, from part, with base as the delta base to try.
func (pw *packWriter) add(h plumbing.Hash, part uint16, base plumbing.Hash) {
	i := pw.idx.send(h, part)
	if !base.IsZero() {
		if pw.bases == nil {
			pw.bases = make(map[int32]plumbing.Hash)
		}
		pw.bases[i] = base
	}
}

// obj is the i-th object to send.
func (pw *packWriter) obj(i int32) *sendObj { return pw.idx.objs.at(i) }

// locateAll finds every object to send, so that a missing one fails the
// pack before its first byte.
func (pw *packWriter) locateAll(ctx context.Context) error {
	for i := int32(0); i < int32(pw.idx.objs.n); i++ {
		if i%4096 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		o := pw.obj(i)
		rs := pw.repos[o.part]
		if _, err := pw.locate(rs, o.hash); err != nil {
			return rs.repo.describe(err)
		}
	}
	return nil
}

// locate finds h in rs's store.
func (pw *packWriter) locate(rs *repoState, h plumbing.Hash) (location, error) {
	loc, ok := rs.store.locate(h)
	if !ok {
		hint := ""
		if rs.repo.Partial() {
			hint = " (it is a partial clone, whose missing objects are fetched on demand by git only: " +
				"fetch them, e.g. with `git fetch --refetch` after `git config --unset remote.origin.partialclonefilter`, or deploy from a full clone)"
		}
		return loc, fmt.Errorf("read object %s: %w in the local repository%s", h, plumbing.ErrObjectNotFound, hint)
	}
	return loc, nil
}

// estimate is what the located objects take in the local store.
func (pw *packWriter) estimate() int64 {
	total := int64(12 + 20) // header and checksum
	for i := int32(0); i < int32(pw.idx.objs.n); i++ {
		o := pw.obj(i)
		rs := pw.repos[o.part]
		loc, ok := rs.store.locate(o.hash)
		if !ok {
			continue
		}
		if p := loc.pack; p != nil {
			if _, end, err := p.at(loc.off); err == nil {
				total += end - loc.off
			}
			continue
		}
		if fi, err := os.Stat(rs.store.loosePath(loc.dir, o.hash)); err == nil {
			total += fi.Size()
		}
	}
	return total
}

// encode streams the pack: header, every object, checksum.
func (pw *packWriter) encode(ctx context.Context, w io.Writer) error {
	pw.sum = sha1.New()
	pw.bw = bufio.NewWriterSize(io.MultiWriter(w, pw.sum), 64<<10)
	var hdr [12]byte
	copy(hdr[:], "PACK")
	binary.BigEndian.PutUint32(hdr[4:], 2)
	binary.BigEndian.PutUint32(hdr[8:], uint32(pw.idx.objs.n))
	if _, err := pw.Write(hdr[:]); err != nil {
		return err
	}
	for i := int32(0); i < int32(pw.idx.objs.n); i++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := pw.write(i); err != nil {
			return err
		}
	}
	if err := pw.bw.Flush(); err != nil {
		return err
	}
	n, err := w.Write(pw.sum.Sum(nil))
	pw.off += int64(n)
	return err
}

// Write writes to the pack, counting.
func (pw *packWriter) Write(p []byte) (int, error) {
	n, err := pw.bw.Write(p)
	pw.off += int64(n)
	return n, err
}

// writeHeader writes an entry's type and size.
func (pw *packWriter) writeHeader(typ int, size int64) error {
	var b [16]byte
	n := 0
	c := byte(typ)<<4 | byte(size&0x0f)
	size >>= 4
	for size != 0 {
		b[n] = c | 0x80
		n++
		c = byte(size & 0x7f)
		size >>= 7
	}
	b[n] = c
	n++
	_, err := pw.Write(b[:n])
	return err
}

// writeOfs writes an OFS_DELTA's base reference: how far back the base's
// entry starts.
func (pw *packWriter) writeOfs(rel int64) error {
	var b [16]byte
	i := len(b) - 1
	b[i] = byte(rel & 0x7f)
	for rel >>= 7; rel != 0; rel >>= 7 {
		rel--
		i--
		b[i] = 0x80 | byte(rel&0x7f)
	}
	_, err := pw.Write(b[i:])
	return err
}

// write writes object i, after its delta base if the pack carries the base
// and has not written it yet.
func (pw *packWriter) write(i int32) error {
	o := pw.obj(i)
	if o.state == written {
		return nil
	}
	o.state = busy
	rs := pw.repos[o.part]
	loc, err := pw.locate(rs, o.hash)
	if err == nil {
		if loc.pack != nil {
			err = pw.reuse(i, rs, loc)
		} else {
			err = pw.compress(i, rs, loc.dir, 0, nil)
		}
	}
	if err != nil {
		return rs.repo.describe(err)
	}
	pw.obj(i).state = written
	return nil
}

// reuse copies packed object i as its local packfile stores it, pointing
// a delta at its base in the new pack or on the target; a delta with a base
// in neither is sent whole.
func (pw *packWriter) reuse(i int32, rs *repoState, loc location) error {
	p, off := loc.pack, loc.off
	e, err := p.entryAt(off)
	if err != nil {
		return err
	}
	switch e.typ {
	case objOfsDelta, objRefDelta:
	default:
		pw.obj(i).off = pw.off
		pw.obj(i).depth = 0
		return pw.copyRaw(p, e, off, func() error { return pw.writeHeader(e.typ, e.size) })
	}
	base := e.baseRef
	if e.typ == objOfsDelta {
		if base, err = p.hashAt(e.baseOff); err != nil {
			return err
		}
	}
	j, ok := pw.idx.find(base)
	switch {
	case ok && j >= 0 && pw.obj(j).state != busy:
		if err := pw.write(j); err != nil {
			return err
		}
		b := pw.obj(j)
		o := pw.obj(i)
		o.off = pw.off
		o.depth = min(b.depth, 254) + 1
		pw.deltas++
		return pw.copyRaw(p, e, off, func() error {
			if err := pw.writeHeader(objOfsDelta, e.size); err != nil {
				return err
			}
			return pw.writeOfs(o.off - b.off)
		})
	case ok && j == hostHas:
		o := pw.obj(i)
		o.off = pw.off
		o.depth = 1
		pw.deltas++
		pw.thin++
		return pw.copyRaw(p, e, off, func() error {
			if err := pw.writeHeader(objRefDelta, e.size); err != nil {
				return err
			}
			_, err := pw.Write(base[:])
			return err
		})
	}
	// The base is not sent and not known to be on the target (or is
	// waiting for this very object: a delta cycle across packs): resolve
	// the chain.
	typ, data, err := rs.rd.readAt(p, off)
	if err != nil {
		return fmt.Errorf("read object %s: %w", pw.obj(i).hash, err)
	}
	return pw.compress(i, rs, 0, typ, data)
}

// copyRaw writes the entry e at off of p, its data as stored, after the
// header that header writes; the entry's crc32 is checked when the index
// has it.
func (pw *packWriter) copyRaw(p *packIdx, e entry, off int64, header func() error) error {
	f, err := p.file()
	if err != nil {
		return err
	}
	start := off + int64(e.hdrLen)
	n := e.end - start
	want, check := p.crc(e.pos)
	bad := func() error {
		return fmt.Errorf("pack %s: entry at offset %d does not match its crc32 in the index: the pack is corrupt (run `git fsck`)", p.path, off)
	}
	pw.reused++
	if n <= smallRaw {
		if int64(cap(pw.buf)) < n {
			pw.buf = make([]byte, n)
		}
		buf := pw.buf[:n]
		if _, err := f.ReadAt(buf, start); err != nil {
			return fmt.Errorf("read pack %s at %d: %w", p.path, start, err)
		}
		if check && crc32.Update(e.crc, crc32.IEEETable, buf) != want {
			return bad()
		}
		if err := header(); err != nil {
			return err
		}
		_, err := pw.Write(buf)
		return err
	}
	if err := header(); err != nil {
		return err
	}
	sum := e.crc // the header's, carried on over the data
	src := io.TeeReader(io.NewSectionReader(f, start, n), writerFunc(func(b []byte) (int, error) {
		sum = crc32.Update(sum, crc32.IEEETable, b)
		return len(b), nil
	}))
	if _, err := io.CopyN(pw, src, n); err != nil {
		return fmt.Errorf("copy from pack %s at %d: %w", p.path, start, err)
	}
	if check && sum != want {
		return bad()
	}
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// compress writes object i compressed: from its loose file in the object
// directory dir, or when data is not nil from data, of type typ (a packed
// object whose delta cannot be reused). It is
// written as a delta against the previous version of its path when the
// target has that version or the pack carries it, both are small enough
// and the delta is less than half the object.
func (pw *packWriter) compress(i int32, rs *repoState, dir int, typ int, data []byte) error {
	// The base first, when the pack carries it: it must come before.
	var base plumbing.Hash
	baseIdx := int32(-2)
	if b := pw.bases[i]; !b.IsZero() {
		if j, ok := pw.idx.find(b); ok && j >= 0 && pw.obj(j).state != busy {
			if err := pw.write(j); err != nil {
				return err
			}
			if pw.obj(j).depth < maxDepth {
				base, baseIdx = b, j
			}
		} else if ok && j == hostHas {
			base, baseIdx = b, hostHas
		}
	}

	var size int64
	var rd io.Reader
	if data != nil {
		size, rd = int64(len(data)), bytes.NewReader(data)
	} else {
		lo, err := openLoose(rs.store.loosePath(dir, pw.obj(i).hash))
		if err != nil {
			return fmt.Errorf("read object %s: %w", pw.obj(i).hash, err)
		}
		defer lo.Close()
		typ, size, rd = lo.typ, lo.size, lo.r
	}
	o := pw.obj(i)
	o.off = pw.off
	o.depth = 0

	if baseIdx != -2 && size >= minDeltaSize && size <= maxDeltaSize {
		if data == nil {
			data = make([]byte, size)
			if _, err := io.ReadFull(rd, data); err != nil {
				return fmt.Errorf("read object %s: %w", o.hash, err)
			}
		}
		if src, ok := rs.readSmall(base); ok {
			if d := makeDelta(src, data, int(size/2)); d != nil {
				pw.deltas++
				if baseIdx == hostHas {
					pw.thin++
					o.depth = 1
					if err := pw.writeHeader(objRefDelta, int64(len(d))); err != nil {
						return err
					}
					if _, err := pw.Write(base[:]); err != nil {
						return err
					}
				} else {
					b := pw.obj(baseIdx)
					o.depth = b.depth + 1
					if err := pw.writeHeader(objOfsDelta, int64(len(d))); err != nil {
						return err
					}
					if err := pw.writeOfs(o.off - b.off); err != nil {
						return err
					}
				}
				return pw.deflate(bytes.NewReader(d), int64(len(d)))
			}
		}
		rd = bytes.NewReader(data)
	}
	if err := pw.writeHeader(typ, size); err != nil {
		return err
	}
	if err := pw.deflate(rd, size); err != nil {
		return fmt.Errorf("pack object %s: %w", o.hash, err)
	}
	return nil
}

// deflate writes size bytes of r zlib-compressed. The compressors are
// made when first needed: one at zlib's default level holds about 1 MiB
// of tables, and a pack copied whole from packfiles needs none.
func (pw *packWriter) deflate(r io.Reader, size int64) error {
	var zw *zlib.Writer
	if size > fastAbove {
		if pw.zFast == nil {
			pw.zFast, _ = zlib.NewWriterLevel(pw, zlib.BestSpeed)
		}
		zw = pw.zFast
	} else {
		if pw.zDef == nil {
			pw.zDef, _ = zlib.NewWriterLevel(pw, zlib.DefaultCompression)
		}
		zw = pw.zDef
	}
	zw.Reset(pw)
	if n, err := io.Copy(zw, r); err != nil {
		return err
	} else if n != size {
		return fmt.Errorf("%d bytes of content where the header says %d", n, size)
	}
	return zw.Close()
}

// readSmall reads object h whole when it is no larger than maxDeltaSize
// (and neither is any base of its delta chain).
func (rs *repoState) readSmall(h plumbing.Hash) ([]byte, bool) {
	_, data, err := rs.rd.read(h, maxDeltaSize)
	if err != nil {
		return nil, false
	}
	return data, true
}
