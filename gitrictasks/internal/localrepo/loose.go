package localrepo

import (
	"bytes"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/go-git/go-git/v5/plumbing"
)

// errChanged means a local file changed while it was being stored.
var errChanged = errors.New("changed while it was read (is a build still writing it?)")

// has reports whether the repository's object store holds h.
func (r *Repo) has(h plumbing.Hash) bool {
	return r.git.Storer.HasEncodedObject(h) == nil
}

// storeFile stores the file at name, of the given size, as a blob, and
// returns the blob's hash. The file is read once to hash it and, only when
// the repository lacks that blob, once more to write it: an unchanged
// build output costs a read, not a write. A file whose size or content
// changes between the two reads is an error wrapping errChanged.
func (r *Repo) storeFile(ctx context.Context, name string, size int64) (plumbing.Hash, error) {
	h, err := hashFile(ctx, name, size)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if r.has(h) {
		return h, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	defer f.Close()
	if err := r.writeLoose(plumbing.BlobObject, size, ctxReader{ctx, f}, h); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("%s: %w", name, err)
	}
	return h, nil
}

// storeBytes stores data as an object of type typ, unless the repository
// has it already, and returns its hash.
func (r *Repo) storeBytes(typ plumbing.ObjectType, data []byte) (plumbing.Hash, error) {
	h := plumbing.ComputeHash(typ, data)
	if r.has(h) {
		return h, nil
	}
	if err := r.writeLoose(typ, int64(len(data)), bytes.NewReader(data), h); err != nil {
		return plumbing.ZeroHash, err
	}
	return h, nil
}

// hashFile is the blob hash of the file at name, which must hold exactly
// size bytes.
func hashFile(ctx context.Context, name string, size int64) (plumbing.Hash, error) {
	f, err := os.Open(name)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	defer f.Close()
	sum := objectHasher(plumbing.BlobObject, size)
	if err := copyExactly(sum, ctxReader{ctx, f}, size); err != nil {
		return plumbing.ZeroHash, fmt.Errorf("%s: %w", name, err)
	}
	return plumbing.Hash(sum.Sum(nil)), nil
}

// objectHasher is a SHA-1 that has been fed the object header git hashes
// before an object's content.
func objectHasher(typ plumbing.ObjectType, size int64) hash.Hash {
	sum := sha1.New()
	sum.Write(objectHeader(typ, size))
	return sum
}

func objectHeader(typ plumbing.ObjectType, size int64) []byte {
	return []byte(typ.String() + " " + strconv.FormatInt(size, 10) + "\x00")
}

// copyExactly copies size bytes from rd to w and makes sure rd then ends.
func copyExactly(w io.Writer, rd io.Reader, size int64) error {
	if _, err := io.CopyN(w, rd, size); err == io.EOF {
		return errChanged
	} else if err != nil {
		return err
	}
	var one [1]byte
	if m, _ := io.ReadFull(rd, one[:]); m > 0 {
		return errChanged
	}
	return nil
}

// writeLoose writes an object as a loose object of the repository, as git
// does: zlib-compressed (at git's default loose level) into a temporary
// file in the objects directory, synced, made read-only, then renamed to
// objects/xx/yyyy…. size bytes are read from rd, which must then end, and
// their hash must be want, or nothing is stored; a reader with errors
// leaves nothing behind either. An object that appears meanwhile (another
// writer) is kept and the temporary file dropped.
func (r *Repo) writeLoose(typ plumbing.ObjectType, size int64, rd io.Reader, want plumbing.Hash) (err error) {
	objects := filepath.Join(r.common, "objects")
	hex := want.String()
	final := filepath.Join(objects, hex[:2], hex[2:])
	tmp, err := os.CreateTemp(objects, "tmp_obj_")
	if err != nil {
		return fmt.Errorf("store %s %s: %w", typ, want, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("store %s %s: %w", typ, want, err)
		}
	}()
	zw, err := zlib.NewWriterLevel(tmp, zlib.BestSpeed)
	if err != nil {
		return err
	}
	sum := sha1.New()
	header := objectHeader(typ, size)
	sum.Write(header)
	if _, err := zw.Write(header); err != nil {
		return err
	}
	if err := copyExactly(io.MultiWriter(zw, sum), rd, size); err != nil {
		return err
	}
	if got := plumbing.Hash(sum.Sum(nil)); got != want {
		return fmt.Errorf("content hashes to %s: %w", got, errChanged)
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Chmod(0o444); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	if _, err := os.Lstat(final); err == nil {
		return os.Remove(tmp.Name())
	}
	return os.Rename(tmp.Name(), final)
}

// ctxReader is a reader that stops with ctx's error once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
