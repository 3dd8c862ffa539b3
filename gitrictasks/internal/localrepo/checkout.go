package localrepo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// ErrUnsafePath means a path in a tree, or one given for a derivation,
// cannot be written safely: it has an empty, ".", ".." or ".git" component
// (".git" in any case), or a NUL.
var ErrUnsafePath = errors.New("unsafe path")

// Checkout writes the tree of commit into dir, an empty directory the
// caller made (a temporary directory, typically), as `git checkout` would
// lay it out: regular files (mode 0644, or 0755 for executable ones, less
// the umask), symlinks with their targets, and directories. A submodule
// becomes an empty directory, as it does in a checkout that has not run
// `git submodule update`: its files are not written. No .git is made.
//
// Checkout reads the objects only: the repository's working copy, index,
// HEAD and refs are left alone, so it is safe to use while the user works.
// Blobs are streamed to their files, so memory use does not grow with file
// sizes. Every path is written through an os.Root opened on dir, so a tree
// with hostile entries (a ".." or ".git" name, a symlink leading out) can
// write nothing outside dir; such names are refused with ErrUnsafePath.
//
// dir must exist and be empty. On an error, or when ctx is cancelled
// (checked between files), dir is left with what was written so far: the
// caller that made it removes it.
func (r *Repo) Checkout(ctx context.Context, commit plumbing.Hash, dir string) error {
	c, err := r.git.CommitObject(commit)
	if err != nil {
		return fmt.Errorf("checkout of %s: %w: %w", commit, ErrUnknownRevision, err)
	}
	tree, err := r.git.TreeObject(c.TreeHash)
	if err != nil {
		return fmt.Errorf("checkout of %s: read tree %s: %w", commit, c.TreeHash, err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("checkout of %s: %w", commit, err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("checkout of %s: %s is not empty", commit, dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("checkout of %s: %w", commit, err)
	}
	defer root.Close()
	if err := r.checkoutTree(ctx, root, tree, ""); err != nil {
		return fmt.Errorf("checkout of %s into %s: %w", commit, dir, err)
	}
	return nil
}

// checkoutTree writes the entries of t under prefix ("" or ending in a
// slash) in root.
func (r *Repo) checkoutTree(ctx context.Context, root *os.Root, t *object.Tree, prefix string) error {
	for _, e := range t.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := checkEntryName(e.Name); err != nil {
			return fmt.Errorf("%s%s: %w", prefix, e.Name, err)
		}
		p := prefix + e.Name
		switch e.Mode {
		case filemode.Dir:
			sub, err := r.git.TreeObject(e.Hash)
			if err != nil {
				return fmt.Errorf("%s: read tree %s: %w", p, e.Hash, err)
			}
			if err := root.Mkdir(p, 0o755); err != nil {
				return err
			}
			if err := r.checkoutTree(ctx, root, sub, p+"/"); err != nil {
				return err
			}
		case filemode.Submodule:
			if err := root.Mkdir(p, 0o755); err != nil {
				return err
			}
		case filemode.Symlink:
			target, err := r.readBlob(e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
			if err := root.Symlink(target, p); err != nil {
				return err
			}
		case filemode.Regular, filemode.Deprecated, filemode.Executable:
			perm := os.FileMode(0o644)
			if e.Mode == filemode.Executable {
				perm = 0o755
			}
			if err := r.writeBlobFile(root, p, e.Hash, perm); err != nil {
				return fmt.Errorf("%s: %w", p, err)
			}
		default:
			return fmt.Errorf("%s: unknown mode %o in tree %s", p, e.Mode, t.Hash)
		}
	}
	return nil
}

// writeBlobFile streams blob h into a new file p of root.
func (r *Repo) writeBlobFile(root *os.Root, p string, h plumbing.Hash, perm os.FileMode) (err error) {
	b, err := r.git.BlobObject(h)
	if err != nil {
		return fmt.Errorf("read blob %s: %w", h, err)
	}
	rd, err := b.Reader()
	if err != nil {
		return fmt.Errorf("read blob %s: %w", h, err)
	}
	defer rd.Close()
	f, err := root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if _, err := io.Copy(f, rd); err != nil {
		return fmt.Errorf("write blob %s: %w", h, err)
	}
	return nil
}

// readBlob returns the content of blob h, for the small ones (symlink
// targets).
func (r *Repo) readBlob(h plumbing.Hash) (string, error) {
	b, err := r.git.BlobObject(h)
	if err != nil {
		return "", fmt.Errorf("read blob %s: %w", h, err)
	}
	rd, err := b.Reader()
	if err != nil {
		return "", fmt.Errorf("read blob %s: %w", h, err)
	}
	defer rd.Close()
	data, err := io.ReadAll(rd)
	if err != nil {
		return "", fmt.Errorf("read blob %s: %w", h, err)
	}
	return string(data), nil
}

// checkEntryName refuses a tree entry name that cannot be written as one
// file or directory of a checkout.
func checkEntryName(name string) error {
	switch {
	case name == "", name == ".", name == "..":
		return fmt.Errorf("%w: component %q", ErrUnsafePath, name)
	case strings.EqualFold(name, ".git"):
		return fmt.Errorf("%w: a .git component", ErrUnsafePath)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("%w: %q holds a slash or a NUL", ErrUnsafePath, name)
	}
	return nil
}
