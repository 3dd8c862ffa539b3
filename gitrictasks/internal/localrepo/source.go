package localrepo

import (
	"bytes"
	"errors"
	"io"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// objectSource is a repository's objects, as every reader of the
// repository gets them: go-git (through objStorage), IsAncestor and the
// pack writer. It holds one store, opened when first needed, and one
// objReader with its cache, and serialises reads, so that the
// repository's pack indexes are in memory once however many goroutines
// read.
//
// It replaces go-git's own object reading because of what that keeps:
// go-git's first read of a packed object loads the pack's index into
// structures of its own and builds a map from offsets to hashes, 2 MiB
// for a pack of 21,741 objects, kept as long as the repository is open,
// beside the copy the pack writer needs; its object cache holds decoded
// objects on top.
type objectSource struct {
	common string
	mu     sync.Mutex
	st     *store
	rd     *objReader
}

// storeLocked returns the store, opened when first needed. With refresh,
// it is opened again if its pack directories no longer list the packs it
// has (a git gc ran since): for the pack writer, which must see every
// object. The caller must hold o.mu.
func (o *objectSource) storeLocked(refresh bool) (*store, error) {
	if o.st != nil && !(refresh && o.st.stale()) {
		return o.st, nil
	}
	return o.reopenLocked()
}

// reopenLocked opens the store anew. The old store's open packs are left
// to whoever still reads them (their files close when collected).
func (o *objectSource) reopenLocked() (*store, error) {
	st, err := openStore(o.common)
	if err != nil {
		return nil, err
	}
	o.st, o.rd = st, newObjReader(st)
	return st, nil
}

// store is storeLocked, for a caller that does not hold o.mu.
func (o *objectSource) store(refresh bool) (*store, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.storeLocked(refresh)
}

// read is objReader.read. An object not found is looked for again in the
// packs of a store opened anew when the pack directories changed: an
// object that was loose may be in a new pack now, and gone as a file.
func (o *objectSource) read(h plumbing.Hash, limit int64) (int, []byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var typ int
	var data []byte
	err := o.retry(func(rd *objReader) (err error) {
		typ, data, err = rd.read(h, limit)
		return err
	})
	return typ, data, err
}

// retry runs fn with the reader, then once more, on a store opened
// again, when it did not find an object and the store is stale. The
// caller must hold o.mu.
func (o *objectSource) retry(fn func(*objReader) error) error {
	if _, err := o.storeLocked(false); err != nil {
		return err
	}
	err := fn(o.rd)
	if !errors.Is(err, plumbing.ErrObjectNotFound) || !o.st.stale() {
		return err
	}
	if _, err := o.reopenLocked(); err != nil {
		return err
	}
	return fn(o.rd)
}

// readAt is objReader.readAt, for the entry at off of p (a pack of any
// store of the repository).
func (o *objectSource) readAt(p *packIdx, off int64) (int, []byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, err := o.storeLocked(false); err != nil {
		return 0, nil, err
	}
	return o.rd.readAt(p, off, -1, 0)
}

// commit is objReader.commit.
func (o *objectSource) commit(h plumbing.Hash) (commitInfo, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var c commitInfo
	err := o.retry(func(rd *objReader) (err error) {
		c, err = rd.commit(h)
		return err
	})
	return c, err
}

// tree is objReader.tree.
func (o *objectSource) tree(h plumbing.Hash) ([]byte, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	var data []byte
	err := o.retry(func(rd *objReader) (err error) {
		data, err = rd.tree(h)
		return err
	})
	return data, err
}

// clearCache empties the reader's cache.
func (o *objectSource) clearCache() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.rd != nil {
		o.rd.cache.clear()
	}
}

// objStorage is go-git's filesystem storage of a repository with its
// object reads served by the repository's objectSource; references,
// configuration, the index and writes of objects stay go-git's.
type objStorage struct {
	*filesystem.Storage
	src *objectSource
}

// EncodedObject reads object h, of type t unless t is AnyObject. Like
// go-git's, it returns plumbing.ErrObjectNotFound itself, not wrapped,
// for an object it does not have: go-git compares errors with ==.
func (s *objStorage) EncodedObject(t plumbing.ObjectType, h plumbing.Hash) (plumbing.EncodedObject, error) {
	typ, data, err := s.src.read(h, -1)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, plumbing.ErrObjectNotFound
	}
	if err != nil {
		return nil, err
	}
	if t != plumbing.AnyObject && plumbing.ObjectType(typ) != t {
		return nil, plumbing.ErrObjectNotFound
	}
	return &storedObject{hash: h, typ: plumbing.ObjectType(typ), data: data}, nil
}

// HasEncodedObject says whether the repository has object h.
func (s *objStorage) HasEncodedObject(h plumbing.Hash) error {
	s.src.mu.Lock()
	defer s.src.mu.Unlock()
	err := s.src.retry(func(rd *objReader) error {
		if _, ok := rd.s.locate(h); !ok {
			return plumbing.ErrObjectNotFound
		}
		return nil
	})
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return plumbing.ErrObjectNotFound
	}
	return err
}

// EncodedObjectSize is the size of object h.
func (s *objStorage) EncodedObjectSize(h plumbing.Hash) (int64, error) {
	o, err := s.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return 0, err
	}
	return o.Size(), nil
}

// storedObject is an object as objStorage reads it: read-only, its
// content possibly shared with the reader's cache.
type storedObject struct {
	hash plumbing.Hash
	typ  plumbing.ObjectType
	data []byte
}

var errReadOnly = errors.New("localrepo: an object read from the repository cannot be changed")

func (o *storedObject) Hash() plumbing.Hash             { return o.hash }
func (o *storedObject) Type() plumbing.ObjectType       { return o.typ }
func (o *storedObject) SetType(plumbing.ObjectType)     {}
func (o *storedObject) Size() int64                     { return int64(len(o.data)) }
func (o *storedObject) SetSize(int64)                   {}
func (o *storedObject) Writer() (io.WriteCloser, error) { return nil, errReadOnly }
func (o *storedObject) Reader() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(o.data)), nil
}
