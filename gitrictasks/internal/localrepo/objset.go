package localrepo

import (
	"hash/maphash"

	"github.com/go-git/go-git/v5/plumbing"
)

// objIndex is what the pack writer knows of the objects its walk met: the
// objects the pack carries, in the order they were listed, and those the
// target holds, each found by hash.
//
// It is built for the size of a first deploy's walk, tens of thousands of
// objects for an ordinary project and millions for a large one: each
// hash is stored once, in the list it belongs to, and the table that finds
// them holds 4-byte references to the lists, so an object costs its
// sendObj and 5 to 11 bytes of table rather than the ~40 a
// map[plumbing.Hash]int32 takes. The lists grow by fixed chunks, never
// copied: a growing slice would briefly hold the old and the new copy, at
// the moment the walk's memory is at its highest.
type objIndex struct {
	objs objList
	held hashList // objects the target holds
	// slots is an open-addressing table (linear probing, a power of two
	// long): 0 is an empty slot, k > 0 the object objs.at(k-1), k < 0 the
	// hash held.at(-k-1).
	slots []int32
	used  int
	seed  maphash.Seed
}

// find says what is known of h: the index in objs of an object the pack
// carries, or hostHas for one the target holds; ok is false when h is
// unknown.
func (x *objIndex) find(h plumbing.Hash) (ref int32, ok bool) {
	if len(x.slots) == 0 {
		return 0, false
	}
	mask := len(x.slots) - 1
	for i := x.slot(h); ; i = (i + 1) & mask {
		k := x.slots[i]
		switch {
		case k == 0:
			return 0, false
		case k > 0 && x.objs.at(k-1).hash == h:
			return k - 1, true
		case k < 0 && *x.held.at(-k - 1) == h:
			return hostHas, true
		}
	}
}

// send lists h, which must be unknown, as an object the pack carries, from
// part, and returns its index.
func (x *objIndex) send(h plumbing.Hash, part uint16) int32 {
	i := int32(x.objs.n)
	o := x.objs.grow()
	o.hash, o.part = h, part
	x.insert(h, i+1)
	return i
}

// hold records h, which must be unknown, as held by the target.
func (x *objIndex) hold(h plumbing.Hash) {
	k := int32(x.held.n)
	*x.held.grow() = h
	x.insert(h, -k-1)
}

func (x *objIndex) slot(h plumbing.Hash) int {
	return int(maphash.Bytes(x.seed, h[:])) & (len(x.slots) - 1)
}

func (x *objIndex) insert(h plumbing.Hash, k int32) {
	// At most three quarters full: linear probing stays short.
	if (x.used+1)*4 > len(x.slots)*3 {
		x.rehash()
	}
	mask := len(x.slots) - 1
	i := x.slot(h)
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = k
	x.used++
}

// rehash doubles the table.
func (x *objIndex) rehash() {
	if len(x.slots) == 0 {
		x.seed = maphash.MakeSeed()
	}
	old := x.slots
	x.slots = make([]int32, max(1024, 2*len(old)))
	mask := len(x.slots) - 1
	for _, k := range old {
		if k == 0 {
			continue
		}
		var h plumbing.Hash
		if k > 0 {
			h = x.objs.at(k - 1).hash
		} else {
			h = *x.held.at(-k - 1)
		}
		i := x.slot(h)
		for x.slots[i] != 0 {
			i = (i + 1) & mask
		}
		x.slots[i] = k
	}
}

// listChunk is how many items a chunk of objList or hashList holds.
const listChunk = 1024

// objList is a list of sendObj in chunks of listChunk.
type objList struct {
	chunks [][]sendObj
	n      int
}

func (l *objList) at(i int32) *sendObj { return &l.chunks[i/listChunk][i%listChunk] }

// grow adds a zero sendObj at the end and returns it.
func (l *objList) grow() *sendObj {
	if l.n%listChunk == 0 {
		l.chunks = append(l.chunks, make([]sendObj, listChunk))
	}
	l.n++
	return l.at(int32(l.n - 1))
}

// hashList is a list of hashes in chunks of listChunk.
type hashList struct {
	chunks [][]plumbing.Hash
	n      int
}

func (l *hashList) at(i int32) *plumbing.Hash { return &l.chunks[i/listChunk][i%listChunk] }

func (l *hashList) grow() *plumbing.Hash {
	if l.n%listChunk == 0 {
		l.chunks = append(l.chunks, make([]plumbing.Hash, listChunk))
	}
	l.n++
	return l.at(int32(l.n - 1))
}
