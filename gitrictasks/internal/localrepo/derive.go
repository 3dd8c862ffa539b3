package localrepo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

var (
	// ErrArtifactConflict means an artifact cannot be placed in the tree:
	// a file artifact where the tree has a directory or a submodule, an
	// artifact with files under a path the tree (or another artifact) has
	// as a file, or two artifacts giving the same path.
	ErrArtifactConflict = errors.New("artifact conflicts with the tree")
	// ErrNoSubdir means a derivation's Subdir is not a directory of the
	// source commit's tree.
	ErrNoSubdir = errors.New("no such subdirectory")
)

// The author and committer of every commit DeployCommit makes.
const (
	IdentityName  = "gitric"
	IdentityEmail = "gitric@localhost"
)

// Ref namespaces DeployCommit keeps its commits under, so that `git gc`
// does not prune them. They are gitric's own: never branches, never
// checked out.
const (
	// DeployRefPrefix + <source hash> names the deploy commit of a source
	// commit with artifacts (no Subdir); the latest one made wins.
	DeployRefPrefix = "refs/gitric/deploy/"
	// SubdirRefPrefix + <source hash> + "/" + <derived hash> names each
	// commit derived with a Subdir. The derived hash is part of the name
	// because one source commit can give several derived commits (another
	// subdirectory, another Parent), and every one of them may be the
	// Parent of a later deploy.
	SubdirRefPrefix = "refs/gitric/subdir/"
)

// Derivation says what DeployCommit builds from a source commit.
type Derivation struct {
	// Source is the commit the user deploys.
	Source plumbing.Hash
	// Subdir, if set, is a slash-separated directory of Source's tree
	// ("services/api"): the derived commit's tree is that directory's, for
	// deploying one part of a monorepo. Surrounding slashes are ignored.
	// Submodules inside it are kept as gitlinks, but the .gitmodules file at
	// the top of Source's tree is not carried along.
	Subdir string
	// Parent is used only with Subdir: the derived commit the target is on
	// now (zero for a target with none), made the derived commit's parent.
	// A Subdir derivation does not descend from Source, whose history
	// holds the whole monorepo; instead each target's history is a chain
	// of derived commits, so that fast-forward checks and rollback work on
	// it. Parent must be a commit of the local repository. Setting Parent
	// without Subdir is an error.
	Parent plumbing.Hash
	// Artifacts are files to add to the tree, or to replace in it, after
	// Subdir is applied, in any order.
	Artifacts []Artifact
}

// Artifact is a local file, or directory of files, put into a derived tree.
type Artifact struct {
	// Path is where it goes in the deployed tree, slash-separated and
	// relative to its top ("bin/app"). Directories on the way are made.
	Path string
	// File is the local file to read (a symlink is followed). A regular
	// file becomes a blob at Path, mode 100755 if its owner may execute it,
	// else 100644. A directory adds every file under it below Path,
	// recursively: regular files as above, symlinks inside it as symlinks
	// (their targets as they are); empty directories are left out, as git
	// leaves them out, and other kinds of files are an error.
	File string
}

// DeployCommit writes into the local repository's object store the
// commit that d describes, with the blobs and trees it needs, and returns
// its hash. Nothing else changes: the working copy, the index, HEAD and the
// branches are left alone. The objects are loose; only missing ones are
// written, so a build output that did not change costs a read and no
// write, and keeps the blob hash it had, so it is not pushed again.
//
// The tree is Source's, or with Subdir that subdirectory's, with each
// artifact added under its Path or replacing the file already there (a
// symlink too). It is an error wrapping ErrArtifactConflict to put a file
// where the tree has a directory or a submodule, to put files under a path
// that is a file, or to give one path twice. Paths with an empty, ".",
// ".." or ".git" component are refused with ErrUnsafePath. A Subdir that is
// not a directory of Source's tree is an error wrapping ErrNoSubdir.
//
// The commit is deterministic: the same Source, Subdir, Parent and
// artifact contents and modes always give the same hash, on any machine.
// Its author and committer are IdentityName <IdentityEmail>, both dated as
// Source's committer; its message is "gitric deploy of <Source's full
// hash>\n", followed by "Subdir: <subdir>\n" when Subdir is set (SourceOf
// reads them back). Its parent is:
//
//   - without Subdir, Source itself: the target receives the full source
//     history, and a deploy commit hangs off each source commit deployed;
//   - with Subdir, Parent (none when Parent is zero).
//
// When Subdir is set and the tree comes out equal to Parent's tree, no
// commit is made and Parent is returned: the target already has what this
// deploy would give it. With neither Subdir nor Artifacts there is nothing
// to derive: Source is returned, and no ref is written.
//
// The commit returned is kept under a ref of gitric's own in the local
// repository (DeployRefPrefix or SubdirRefPrefix), so that `git gc` does
// not prune it. ctx is checked while files are read.
func (r *Repo) DeployCommit(ctx context.Context, d Derivation) (plumbing.Hash, error) {
	h, err := r.deployCommit(ctx, d)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("deploy commit of %s: %w", d.Source, err)
	}
	return h, nil
}

func (r *Repo) deployCommit(ctx context.Context, d Derivation) (plumbing.Hash, error) {
	src, err := r.git.CommitObject(d.Source)
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("%w: %w", ErrUnknownRevision, err)
	}
	subdir, err := cleanSubdir(d.Subdir)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if subdir == "" && !d.Parent.IsZero() {
		return plumbing.ZeroHash, fmt.Errorf("a Parent (%s) is only for a Subdir derivation: without Subdir the parent is the source", d.Parent)
	}
	if subdir == "" && len(d.Artifacts) == 0 {
		return d.Source, nil
	}
	var parentTree plumbing.Hash
	if !d.Parent.IsZero() {
		p, err := r.git.CommitObject(d.Parent)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("parent %s: %w: %w", d.Parent, ErrUnknownRevision, err)
		}
		parentTree = p.TreeHash
	}
	base := src.TreeHash
	if subdir != "" {
		if base, err = r.subtree(base, subdir); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	var edits []edit
	for _, a := range d.Artifacts {
		if edits, err = r.artifactEdits(ctx, a, edits); err != nil {
			return plumbing.ZeroHash, err
		}
	}
	tree, err := r.editTree(base, "", edits)
	if err != nil {
		return plumbing.ZeroHash, err
	}

	if subdir != "" && !d.Parent.IsZero() && tree == parentTree {
		return d.Parent, r.keep(SubdirRefPrefix+d.Source.String()+"/"+d.Parent.String(), d.Parent)
	}
	msg := "gitric deploy of " + d.Source.String() + "\n"
	var parents []plumbing.Hash
	ref := DeployRefPrefix + d.Source.String()
	if subdir == "" {
		parents = []plumbing.Hash{d.Source}
	} else {
		msg += "Subdir: " + subdir + "\n"
		if !d.Parent.IsZero() {
			parents = []plumbing.Hash{d.Parent}
		}
	}
	h, err := r.storeBytes(plumbing.CommitObject, encodeCommit(tree, parents, src.Committer.When, msg))
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if subdir != "" {
		ref = SubdirRefPrefix + d.Source.String() + "/" + h.String()
	}
	return h, r.keep(ref, h)
}

// encodeCommit is the raw commit object DeployCommit makes, encoded here
// rather than by go-git so that the bytes, hence the hash, depend on
// nothing but the arguments.
func encodeCommit(tree plumbing.Hash, parents []plumbing.Hash, when time.Time, msg string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "tree %s\n", tree)
	for _, p := range parents {
		fmt.Fprintf(&b, "parent %s\n", p)
	}
	sig := fmt.Sprintf("%s <%s> %d %s", IdentityName, IdentityEmail, when.Unix(), when.Format("-0700"))
	fmt.Fprintf(&b, "author %s\ncommitter %s\n\n%s", sig, sig, msg)
	return []byte(b.String())
}

// keep points ref at h. Only that ref is written: HEAD, the index and the
// branches are not touched.
func (r *Repo) keep(ref string, h plumbing.Hash) error {
	if err := r.git.Storer.SetReference(plumbing.NewHashReference(plumbing.ReferenceName(ref), h)); err != nil {
		return fmt.Errorf("write ref %s: %w", ref, err)
	}
	return nil
}

// SourceOf reads back what DeployCommit recorded in the commit derived:
// the source commit and the Subdir (empty for none). ok is false when
// derived is not a commit of the local repository, or not one DeployCommit
// made (its author, committer or message differ).
func (r *Repo) SourceOf(derived plumbing.Hash) (source plumbing.Hash, subdir string, ok bool) {
	c, err := r.git.CommitObject(derived)
	if err != nil {
		return plumbing.ZeroHash, "", false
	}
	for _, s := range []object.Signature{c.Author, c.Committer} {
		if s.Name != IdentityName || s.Email != IdentityEmail {
			return plumbing.ZeroHash, "", false
		}
	}
	first, rest, found := strings.Cut(c.Message, "\n")
	hex, isDeploy := strings.CutPrefix(first, "gitric deploy of ")
	if !found || !isDeploy || len(hex) != 40 || !plumbing.IsHash(hex) || strings.ToLower(hex) != hex {
		return plumbing.ZeroHash, "", false
	}
	if rest != "" {
		line, tail, found := strings.Cut(rest, "\n")
		sub, isSub := strings.CutPrefix(line, "Subdir: ")
		if !found || tail != "" || !isSub {
			return plumbing.ZeroHash, "", false
		}
		if clean, err := cleanSubdir(sub); err != nil || clean != sub || sub == "" {
			return plumbing.ZeroHash, "", false
		}
		subdir = sub
	}
	return plumbing.NewHash(hex), subdir, true
}

// LastDeployCommit returns the deploy commit DeployCommit last made for
// source with artifacts and no Subdir (the one DeployRefPrefix+source
// names), so that a rollback to source can ship the very binaries it
// shipped before instead of building them again. ok is false when there is
// none.
func (r *Repo) LastDeployCommit(source plumbing.Hash) (plumbing.Hash, bool) {
	ref, err := r.git.Storer.Reference(plumbing.ReferenceName(DeployRefPrefix + source.String()))
	if err != nil || ref.Type() != plumbing.HashReference {
		return plumbing.ZeroHash, false
	}
	if s, sub, ok := r.SourceOf(ref.Hash()); !ok || s != source || sub != "" {
		return plumbing.ZeroHash, false
	}
	return ref.Hash(), true
}

// cleanSubdir checks a Subdir and drops surrounding slashes.
func cleanSubdir(s string) (string, error) {
	s = strings.Trim(s, "/")
	if s == "" {
		return "", nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return "", fmt.Errorf("subdirectory %q: %w: a control character", s, ErrUnsafePath)
		}
	}
	if _, err := splitPath(s); err != nil {
		return "", fmt.Errorf("subdirectory %q: %w", s, err)
	}
	return s, nil
}

// splitPath splits a slash-separated path into its components, every one
// of which must be a name a tree can hold.
func splitPath(p string) ([]string, error) {
	parts := strings.Split(p, "/")
	for _, part := range parts {
		if err := checkEntryName(part); err != nil {
			return nil, err
		}
	}
	return parts, nil
}

// subtree is the hash of the directory at path (slash-separated) of tree.
func (r *Repo) subtree(tree plumbing.Hash, path string) (plumbing.Hash, error) {
	h := tree
	parts := strings.Split(path, "/")
	for depth, name := range parts {
		t, err := r.git.TreeObject(h)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read tree %s: %w", h, err)
		}
		i := slices.IndexFunc(t.Entries, func(e object.TreeEntry) bool { return e.Name == name })
		switch {
		case i < 0:
			return plumbing.ZeroHash, fmt.Errorf("subdirectory %s: %w in the source commit", path, ErrNoSubdir)
		case t.Entries[i].Mode != filemode.Dir:
			return plumbing.ZeroHash, fmt.Errorf("subdirectory %s: %w: %s is a %s in the source commit",
				path, ErrNoSubdir, strings.Join(parts[:depth+1], "/"), modeWord(t.Entries[i].Mode))
		}
		h = t.Entries[i].Hash
	}
	return h, nil
}

// edit is one file an artifact puts in the tree.
type edit struct {
	path []string // components from the top of the tree
	mode filemode.FileMode
	hash plumbing.Hash
	from string // the artifact, for messages
}

// artifactEdits stores a's files as blobs and appends their edits to out.
func (r *Repo) artifactEdits(ctx context.Context, a Artifact, out []edit) ([]edit, error) {
	from := fmt.Sprintf("artifact %s (%s)", a.Path, a.File)
	parts, err := splitPath(a.Path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	fi, err := os.Stat(a.File)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	if fi.Mode().IsRegular() {
		e, err := r.fileEdit(ctx, a.File, fi)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", from, err)
		}
		e.path, e.from = parts, from
		return append(out, e), nil
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a regular file or a directory", from)
	}
	top, err := filepath.EvalSymlinks(a.File) // WalkDir would not enter a symlink
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	err = filepath.WalkDir(top, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(top, p)
		if err != nil {
			return err
		}
		sub, err := splitPath(filepath.ToSlash(rel))
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		e, err := r.fileEdit(ctx, p, info)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		e.path, e.from = append(slices.Clone(parts), sub...), from
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", from, err)
	}
	return out, nil
}

// fileEdit stores the file at p (fi from Lstat, or Stat for a top-level
// artifact) and returns its edit, path left empty.
func (r *Repo) fileEdit(ctx context.Context, p string, fi fs.FileInfo) (edit, error) {
	switch {
	case fi.Mode().IsRegular():
		h, err := r.storeFile(ctx, p, fi.Size())
		if err != nil {
			return edit{}, err
		}
		mode := filemode.Regular
		if fi.Mode().Perm()&0o100 != 0 {
			mode = filemode.Executable
		}
		return edit{mode: mode, hash: h}, nil
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return edit{}, err
		}
		h, err := r.storeBytes(plumbing.BlobObject, []byte(filepath.ToSlash(target)))
		if err != nil {
			return edit{}, err
		}
		return edit{mode: filemode.Symlink, hash: h}, nil
	}
	return edit{}, fmt.Errorf("not a regular file, a symlink or a directory (%s)", fi.Mode().Type())
}

// editTree applies edits (paths relative to this tree) to the tree base
// (zero for a new, empty one), stores every tree that changes, and returns
// the new tree's hash. prefix is the tree's path, for messages.
func (r *Repo) editTree(base plumbing.Hash, prefix string, edits []edit) (plumbing.Hash, error) {
	if len(edits) == 0 {
		return base, nil
	}
	var entries []object.TreeEntry
	if !base.IsZero() {
		t, err := r.git.TreeObject(base)
		if err != nil {
			return plumbing.ZeroHash, fmt.Errorf("read tree %s: %w", base, err)
		}
		entries = slices.Clone(t.Entries)
	}
	// Group the edits by their first component, keeping their order.
	groups := make(map[string][]edit)
	var names []string
	for _, e := range edits {
		if _, seen := groups[e.path[0]]; !seen {
			names = append(names, e.path[0])
		}
		groups[e.path[0]] = append(groups[e.path[0]], e)
	}
	for _, name := range names {
		group := groups[name]
		p := prefix + name
		var leaf, deep []edit
		for _, e := range group {
			if len(e.path) == 1 {
				leaf = append(leaf, e)
			} else {
				deep = append(deep, edit{path: e.path[1:], mode: e.mode, hash: e.hash, from: e.from})
			}
		}
		switch {
		case len(leaf) > 1:
			return plumbing.ZeroHash, fmt.Errorf("%s: %w: %s and %s both give it", p, ErrArtifactConflict, leaf[0].from, leaf[1].from)
		case len(leaf) == 1 && len(deep) > 0:
			return plumbing.ZeroHash, fmt.Errorf("%s: %w: %s makes it a file, %s puts files under it", p, ErrArtifactConflict, leaf[0].from, deep[0].from)
		}
		i := slices.IndexFunc(entries, func(e object.TreeEntry) bool { return e.Name == name })
		if len(leaf) == 1 {
			if i >= 0 && (entries[i].Mode == filemode.Dir || entries[i].Mode == filemode.Submodule) {
				return plumbing.ZeroHash, fmt.Errorf("%s: %w: it is a %s in the tree, %s is a file", p, ErrArtifactConflict, modeWord(entries[i].Mode), leaf[0].from)
			}
			entries = setEntry(entries, i, object.TreeEntry{Name: name, Mode: leaf[0].mode, Hash: leaf[0].hash})
			continue
		}
		var sub plumbing.Hash
		if i >= 0 {
			if entries[i].Mode != filemode.Dir {
				return plumbing.ZeroHash, fmt.Errorf("%s: %w: it is a %s in the tree, %s puts files under it", p, ErrArtifactConflict, modeWord(entries[i].Mode), deep[0].from)
			}
			sub = entries[i].Hash
		}
		h, err := r.editTree(sub, p+"/", deep)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		entries = setEntry(entries, i, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
	}
	slices.SortFunc(entries, func(a, b object.TreeEntry) int {
		return strings.Compare(treeSortName(a), treeSortName(b))
	})
	return r.storeBytes(plumbing.TreeObject, encodeTree(entries))
}

// encodeTree is the raw tree object of entries, which must be in git's
// order.
func encodeTree(entries []object.TreeEntry) []byte {
	var b []byte
	for _, e := range entries {
		b = fmt.Appendf(b, "%o %s\x00", uint32(e.Mode), e.Name)
		b = append(b, e.Hash[:]...)
	}
	return b
}

// setEntry replaces entries[i], or appends e when i is negative.
func setEntry(entries []object.TreeEntry, i int, e object.TreeEntry) []object.TreeEntry {
	if i < 0 {
		return append(entries, e)
	}
	entries[i] = e
	return entries
}

// treeSortName is what git sorts a tree entry by: its name, with a slash
// after a directory's.
func treeSortName(e object.TreeEntry) string {
	if e.Mode == filemode.Dir {
		return e.Name + "/"
	}
	return e.Name
}

// modeWord names the kind of a tree entry, for messages.
func modeWord(m filemode.FileMode) string {
	switch m {
	case filemode.Dir:
		return "directory"
	case filemode.Submodule:
		return "submodule"
	case filemode.Symlink:
		return "symlink"
	}
	return "file"
}
