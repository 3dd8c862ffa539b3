package localrepo

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	format "github.com/go-git/go-git/v5/plumbing/format/config"
	"github.com/go-git/go-git/v5/plumbing/format/gitignore"
)

// The dirty check is git status's, done as git does it and read-only: the
// index is read by a reader of this file; HEAD's tree is compared with it
// (not when its cache-tree says it is HEAD's tree); each entry with its
// file, by stat data, the content hashed only when those are not
// conclusive; and the working copy is walked for untracked files. Nothing
// is written, not even the stat data git status would refresh.
//
// Files are hashed as they are, without text conversion. When a regular
// file's hash differs from its entry's and the repository may convert
// content (core.autocrlf, or an attributes file naming text, eol, crlf,
// filter, ident or working-tree-encoding), go-git's Worktree.Status
// answers instead (changesGoGit), as it did before; so it does for an
// index this reader does not read (split or sparse index, another version
// or required extension). go-git converts nothing either: the fallback
// keeps the former answers for those repositories, no more.

// status is one run of the dirty check.
type status struct {
	r   *Repo
	cfg statusConfig
	idx *gitIndex
	// converts says whether the repository may convert content; see
	// mayConvert.
	converts func() bool
}

// changes is Changes; fallback says why go-git's Worktree.Status made the
// answer, empty when this file did.
func (r *Repo) changes(opts StatusOptions) (paths []string, fallback string, err error) {
	s := &status{r: r, cfg: readStatusConfig(r.common)}
	s.converts = sync.OnceValue(s.mayConvert)
	if s.idx, err = readIndex(filepath.Join(r.gitdir, "index")); err != nil {
		return nil, "", fmt.Errorf("status of %s: %w", r.root, err)
	}
	fallback = s.idx.unsupported
	if fallback == "" {
		paths, err = s.staged()
	}
	if fallback == "" && err == nil {
		// Nearly all the rest is waiting on lstat and readdir: the
		// entries are checked in chunks while the walk runs.
		ents := s.idx.entries
		n := max(1, min(runtime.GOMAXPROCS(0), len(ents)/256, 8))
		errs, falls := make([]error, n+1), make([]string, n)
		var untracked []string
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { falls[i], errs[i] = s.worktree(ents[i*len(ents)/n : (i+1)*len(ents)/n]) })
		}
		if !opts.IgnoreUntracked {
			wg.Go(func() { untracked, errs[n] = s.untracked() })
		}
		wg.Wait()
		err, fallback, paths = cmp.Or(errs...), cmp.Or(falls...), append(paths, untracked...)
	}
	if err != nil {
		return nil, "", fmt.Errorf("status of %s: %w", r.root, err)
	}
	if fallback != "" {
		if paths, err = r.changesGoGit(opts); err != nil {
			err = fmt.Errorf("%w (go-git's answer, asked because of the %s)", err, fallback)
		}
		return paths, fallback, err
	}
	for _, e := range s.idx.entries {
		if e.dirty {
			paths = append(paths, e.path)
		}
	}
	slices.Sort(paths)
	return slices.Compact(paths), "", nil
}

// Bits of an index entry's flags, extended flags and mode.
const (
	flagAssumeValid = 0x8000
	flagExtended    = 0x4000
	flagStage       = 0x3000
	extSkipWorktree = 0x4000
	extIntentToAdd  = 0x2000
	modeType        = 0o170000
	modeFile        = 0o100000
	modeLink        = 0o120000
)

// indexEntry is an entry of the index.
type indexEntry struct {
	path        string // slash-separated
	st          statData
	hash        plumbing.Hash
	flags, ext  uint16 // the flags, and the extended flags (version 3 on)
	dirty, skip bool   // found dirty; not to be compared with its file
}

// statData is the stat data of a file as the index records it, cut to 32
// bits.
type statData struct {
	ctime, ctimeNs, mtime, mtimeNs, dev, ino, mode, uid, gid, size uint32
}

// gitIndex is an index file.
type gitIndex struct {
	entries     []indexEntry // by path (bytewise), then stage
	mtime       int64        // the file's, in seconds: entries as new are racily clean
	tree        []byte       // the cache-tree (TREE extension), if any
	unsupported string       // what the reader does not read, if anything
}

var errCorruptIndex = errors.New("corrupt index")

// readIndex reads the index file at path, of version 2, 3 or 4. A missing
// file is an empty index, as for git.
func readIndex(path string) (*gitIndex, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &gitIndex{}, nil
	}
	var fi fs.FileInfo
	if err == nil {
		fi, err = os.Stat(path)
	}
	if err != nil {
		return nil, err
	}
	bad := func(what string, i int) error { return fmt.Errorf("%s: %w: %s %d", path, errCorruptIndex, what, i) }
	if len(data) < 32 || string(data[:4]) != "DIRC" {
		return nil, bad("header", 0)
	}
	body, sum := data[:len(data)-20], [20]byte(data[len(data)-20:])
	if sum != [20]byte{} && sha1.Sum(body) != sum { // zero with index.skipHash
		return nil, bad("checksum", 0)
	}
	idx := &gitIndex{mtime: fi.ModTime().Unix()}
	ver, n := be32(data[4:]), int(be32(data[8:]))
	if ver < 2 || ver > 4 {
		idx.unsupported = fmt.Sprintf("index version %d", ver)
		return idx, nil
	}
	idx.entries = make([]indexEntry, n)
	str, off, prev := string(body), 12, "" // names are strings of str, or made (version 4)
	for i := range idx.entries {
		e, b := &idx.entries[i], body[min(off, len(body)):]
		if len(b) < 64 {
			return nil, bad("entry", i)
		}
		w := func(k int) uint32 { return be32(b[4*k:]) }
		e.st = statData{w(0), w(1), w(2), w(3), w(4), w(5), w(6), w(7), w(8), w(9)}
		e.hash, e.flags = plumbing.Hash(b[40:60]), binary.BigEndian.Uint16(b[60:])
		hdr := 62
		if e.flags&flagExtended != 0 && ver >= 3 {
			e.ext, hdr = binary.BigEndian.Uint16(b[62:]), 64
		}
		if ver == 4 { // the previous name less its last strip bytes, then the rest
			strip, k := indexVarint(b[hdr:])
			nul := bytes.IndexByte(b[hdr+k:], 0)
			if k == 0 || strip > uint64(len(prev)) || nul < 0 {
				return nil, bad("entry", i)
			}
			e.path = prev[:len(prev)-int(strip)] + str[off+hdr+k:off+hdr+k+nul]
			off += hdr + k + nul + 1
		} else {
			l := int(e.flags & 0xfff)
			if l == 0xfff {
				l = bytes.IndexByte(b[hdr:], 0)
			}
			if l < 0 || hdr+l > len(b) {
				return nil, bad("entry", i)
			}
			e.path = str[off+hdr : off+hdr+l]
			off += (hdr + l + 8) &^ 7 // NUL-padded to a multiple of 8
		}
		prev = e.path
	}
	for off+8 <= len(body) {
		sig, size := string(body[off:off+4]), int(be32(body[off+4:]))
		if off+8+size > len(body) {
			return nil, bad("extension at", off)
		}
		switch {
		case sig == "TREE":
			idx.tree = body[off+8 : off+8+size]
		case sig[0] < 'A' || sig[0] > 'Z': // required to understand the index
			kind := map[string]string{"link": "split index ", "sdir": "sparse index "}[sig]
			idx.unsupported = fmt.Sprintf("%sindex extension %q", kind, sig)
		}
		off += 8 + size
	}
	return idx, nil
}

func be32(b []byte) uint32 { return binary.BigEndian.Uint32(b) }

// indexVarint reads a number of index version 4's offset encoding; n is
// how many bytes it took, 0 if it is cut short.
func indexVarint(b []byte) (v uint64, n int) {
	for ; n < len(b) && n < 10; n++ {
		if n > 0 {
			v++
		}
		if v = v<<7 | uint64(b[n]&0x7f); b[n]&0x80 == 0 {
			return v, n + 1
		}
	}
	return 0, 0
}

// cacheTrees reads the valid trees of a cache-tree by directory ("" for
// the root); with rootOnly, the root's alone.
func cacheTrees(data []byte, rootOnly bool) map[string]plumbing.Hash {
	trees := map[string]plumbing.Hash{}
	var node func(dir string) bool
	node = func(dir string) bool { // a node, then its subtrees
		// "<name>\0<entries> <subtrees>\n", then the hash unless entries is -1
		name, rest, ok1 := bytes.Cut(data, []byte{0})
		line, rest, ok2 := bytes.Cut(rest, []byte{'\n'})
		count, sub, _ := strings.Cut(string(line), " ")
		n, err1 := strconv.Atoi(count)
		k, err2 := strconv.Atoi(sub)
		if !ok1 || !ok2 || err1 != nil || err2 != nil || n >= 0 && len(rest) < 20 {
			return false
		}
		path := joinPath(dir, string(name))
		if data = rest; n >= 0 {
			trees[path], data = plumbing.Hash(data[:20]), data[20:]
		}
		for ; k > 0 && !rootOnly; k-- {
			if !node(path) {
				return false
			}
		}
		return true
	}
	node("")
	return trees
}

// staged marks the index entries that differ from HEAD's tree, and
// returns the paths of HEAD's tree the index does not have. On an unborn
// branch every entry is staged. Conflicts and intent-to-add entries are
// changes, whatever HEAD has.
func (s *status) staged() (deleted []string, err error) {
	ents := s.idx.entries
	for i := range ents {
		e := &ents[i]
		e.dirty = e.flags&flagStage != 0 || e.ext&extIntentToAdd != 0
		e.skip = e.dirty || e.ext&extSkipWorktree != 0 || e.flags&flagAssumeValid != 0 // as git, which trusts these
	}
	head, err := s.r.git.Head()
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		for i := range ents {
			ents[i].dirty = true
		}
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read HEAD: %w", err)
	}
	c, err := s.r.source().commit(head.Hash())
	if err != nil || cacheTrees(s.idx.tree, true)[""] == c.tree {
		return nil, err // git's shortcut: the index is HEAD's tree
	}
	var items []treeItem
	if err := s.flatten(c.tree, "", cacheTrees(s.idx.tree, false), &items); err != nil {
		return nil, err
	}
	for i, j := 0, 0; i < len(items) || j < len(ents); {
		c := 1 // which is first: HEAD's item (< 0), the index's entry (> 0), or both
		switch {
		case j < len(ents) && ents[j].dirty:
			j++
			continue
		case j == len(ents):
			c = -1
		case i == len(items):
		case items[i].skip && strings.HasPrefix(ents[j].path, items[i].path):
			j++
			continue
		default:
			c = strings.Compare(items[i].path, ents[j].path)
		}
		switch {
		case c < 0 && !items[i].skip:
			deleted = append(deleted, items[i].path)
		case c > 0:
			ents[j].dirty = true
		case c == 0:
			ents[j].dirty = ents[j].hash != items[i].hash || ents[j].st.mode != items[i].mode
		}
		if c <= 0 {
			i++
		}
		if c >= 0 {
			j++
		}
	}
	return deleted, nil
}

// treeItem is a file, symlink or gitlink of a tree, or (skip) a subtree
// "dir/" the cache-tree has as it is.
type treeItem struct {
	path string
	mode uint32
	hash plumbing.Hash
	skip bool
}

// flatten lists the items of tree, at dir, in the index's order.
func (s *status) flatten(tree plumbing.Hash, dir string, trees map[string]plumbing.Hash, out *[]treeItem) error {
	if h, ok := trees[dir]; ok && h == tree && dir != "" {
		*out = append(*out, treeItem{path: dir + "/", skip: true})
		return nil
	}
	data, err := s.r.source().tree(tree)
	if err != nil {
		return err
	}
	it := treeIter{data: data}
	for mode, name, h, ok := it.next(); ok; mode, name, h, ok = it.next() {
		p := joinPath(dir, string(name))
		switch { // as git reads the 100664 and such of old trees
		case mode&modeType == modeFile && mode&0o100 != 0:
			mode = modeFile | 0o755
		case mode&modeType == modeFile:
			mode = modeFile | 0o644
		}
		if mode == modeDir {
			err = s.flatten(h, p, trees, out)
		} else {
			*out = append(*out, treeItem{path: p, mode: mode, hash: h})
		}
		if err != nil {
			return err
		}
	}
	return it.err
}

// checker compares index entries with their files, for one goroutine.
type checker struct {
	*status
	dirs     map[string]bool // directories without a symlink leading to them
	lastDir  string          // dirsOK's last, and its answer
	lastOK   bool
	sha      hash.Hash
	buf      []byte
	fallback string
}

// worktree marks the entries that differ from their files, and says why
// go-git must answer instead, if it must.
func (s *status) worktree(ents []indexEntry) (fallback string, err error) {
	c := &checker{status: s, dirs: map[string]bool{}}
	for i := range ents {
		if e := &ents[i]; !e.dirty && !e.skip {
			if e.dirty, err = c.changed(e); err != nil || c.fallback != "" {
				return c.fallback, err
			}
		}
	}
	return "", nil
}

// changed compares an entry with its file as git's ie_modified does. The
// type and, with core.filemode, the owner's exec bit must be the entry's;
// then the stat data, or the content when those differ or the entry is
// racily clean (not older than the index: the file may have changed after
// git looked). A size other than the size git recorded is a change without
// hashing. A gitlink is a directory whose checkout, if it has one, is at
// the entry's commit: changes inside a submodule are not looked for, as
// go-git's Status did not.
func (c *checker) changed(e *indexEntry) (bool, error) {
	full := c.r.fullPath(e.path)
	if !c.dirsOK(e.path) {
		return true, nil
	}
	fi, err := os.Lstat(full)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return true, nil
	} else if err != nil {
		return false, err
	}
	m := fi.Mode()
	switch e.st.mode & modeType {
	case modeSubmodule:
		h, ok := submoduleHead(full)
		return !m.IsDir() || ok && h != e.hash, nil
	case modeLink: // a file where core.symlinks is false
		if m&fs.ModeSymlink == 0 && (c.cfg.symlinks || !m.IsRegular()) {
			return true, nil
		}
	case modeFile:
		if !m.IsRegular() || c.cfg.fileMode && (e.st.mode&0o100 == 0) != (m&0o100 == 0) {
			return true, nil
		}
	default:
		return true, nil
	}
	if e.st.size != uint32(fi.Size()) && e.st.size != 0 { // 0: not recorded (read-tree), or smudged as racy
		return true, nil
	}
	if c.sameStat(e, fi) && c.idx.mtime > int64(e.st.mtime) {
		return false, nil
	}
	h, err := c.hashFile(full, fi)
	if err == nil && h != e.hash && m.IsRegular() && c.converts() {
		c.fallback = fmt.Sprintf("content of %s, which may be converted (core.autocrlf or attributes)", e.path)
	}
	return h != e.hash, err
}

// fullPath is the working copy's path of slash-separated path.
func (r *Repo) fullPath(path string) string {
	return r.root + string(filepath.Separator) + filepath.FromSlash(path)
}

// sameStat compares an entry's stat data with its file's: size, mtime,
// ctime (unless core.trustctime is false), inode, uid and gid (unless
// core.checkStat is minimal), to the nanosecond where the index has them.
func (c *checker) sameStat(e *indexEntry, fi fs.FileInfo) bool {
	mt := fi.ModTime()
	if e.st.size != uint32(fi.Size()) || e.st.mtime != uint32(mt.Unix()) || e.st.mtimeNs != 0 && e.st.mtimeNs != uint32(mt.Nanosecond()) {
		return false
	}
	x, ok := sysStatOf(fi)
	if !ok || !c.cfg.checkStat {
		return true
	}
	ctime := !c.cfg.trustCtime || e.st.ctime == x.ctime && (e.st.ctimeNs == 0 || e.st.ctimeNs == x.ctimeNs)
	return ctime && e.st.ino == x.ino && e.st.uid == x.uid && e.st.gid == x.gid
}

// hashFile is the blob hash of a file, untouched: a symlink's target, a
// file's content.
func (c *checker) hashFile(full string, fi fs.FileInfo) (plumbing.Hash, error) {
	if c.sha == nil {
		c.sha, c.buf = sha1.New(), make([]byte, 32<<10)
	}
	c.sha.Reset()
	if fi.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(full)
		fmt.Fprintf(c.sha, "blob %d\x00%s", len(target), target)
		return plumbing.Hash(c.sha.Sum(nil)), err
	}
	f, err := os.Open(full)
	if err != nil {
		return plumbing.ZeroHash, err
	}
	defer f.Close()
	fmt.Fprintf(c.sha, "blob %d\x00", fi.Size())
	_, err = io.CopyBuffer(c.sha, f, c.buf)
	return plumbing.Hash(c.sha.Sum(nil)), err
}

// dirsOK says whether the directories leading to path are directories,
// not gone nor symlinks: git has a file under a symlink as deleted.
func (c *checker) dirsOK(path string) bool {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return true
	}
	if dir := path[:i]; dir != c.lastDir {
		ok, seen := c.dirs[dir]
		if !seen {
			fi, err := os.Lstat(c.r.fullPath(dir))
			ok = err == nil && fi.IsDir() && c.dirsOK(dir)
			c.dirs[dir] = ok
		}
		c.lastDir, c.lastOK = dir, ok
	}
	return c.lastOK
}

// submoduleHead is the commit checked out in the submodule at dir; ok is
// false when there is none (not initialised, or an unborn branch).
func submoduleHead(dir string) (h plumbing.Hash, ok bool) {
	gitdir, common := gitDirs(dir)
	data, err := os.ReadFile(filepath.Join(gitdir, "HEAD"))
	for n := 0; err == nil && n < 5; n++ {
		line := strings.TrimSpace(string(data))
		ref, sym := strings.CutPrefix(line, "ref: ")
		if !sym {
			return parseHex([]byte(line))
		}
		if data, err = os.ReadFile(filepath.Join(common, filepath.FromSlash(ref))); errors.Is(err, fs.ErrNotExist) {
			packed, _ := os.ReadFile(filepath.Join(common, "packed-refs"))
			for _, l := range strings.Split(string(packed), "\n") {
				if hex, name, _ := strings.Cut(l, " "); name == ref {
					return parseHex([]byte(hex))
				}
			}
		}
	}
	return h, false
}

// sysStat is the stat data a FileInfo holds only in its Sys(), cut to 32
// bits as the index has it; see sysStatOf in stat_*.go.
type sysStat struct{ ctime, ctimeNs, ino, uid, gid uint32 }

// untracked lists the files neither in the index nor ignored (by
// .gitignore files, info/exclude and core.excludesFile, in git's order of
// precedence), walking the working copy but not .git, ignored directories
// or gitlinks. A directory with a repository of its own is listed once, as
// "dir/", as git does; an empty one is not listed.
func (s *status) untracked() ([]string, error) {
	ps, _ := globalExcludes()
	ps = append(ps, readPatterns(filepath.Join(s.r.gitDir(), "info", "exclude"))...)
	var out []string
	err := s.walk("", s.idx.entries, ps, make([]string, 0, 16), false, &out)
	return out, err
}

// walk lists the untracked files of directory dir ("" at the top; parts,
// its names) whose index entries are ents, under patterns ps and its own
// .gitignore. A fresh directory has no entries: listed itself if it holds
// a repository.
func (s *status) walk(dir string, ents []indexEntry, ps []gitignore.Pattern, parts []string, fresh bool, out *[]string) error {
	full, plen := s.r.root, 0
	if dir != "" {
		full, plen = s.r.fullPath(dir), len(dir)+1
	}
	f, err := os.Open(full)
	if errors.Is(err, fs.ErrNotExist) && dir != "" {
		return nil // gone since it was listed
	} else if err != nil {
		return err
	}
	list, err := f.ReadDir(-1)
	f.Close()
	if err != nil {
		return err
	}
	for _, de := range list {
		switch {
		case fresh && de.Name() == ".git" && isRepo(full):
			*out = append(*out, dir+"/")
			return nil
		case de.Name() == ".gitignore" && de.Type().IsRegular():
			data, _ := os.ReadFile(filepath.Join(full, ".gitignore"))
			ps = append(slices.Clip(ps), parsePatterns(data, parts)...)
		}
	}
	m := gitignore.NewMatcher(ps)
	for _, de := range list {
		name, t := de.Name(), de.Type()
		if name == ".git" || !t.IsDir() && !t.IsRegular() && t&fs.ModeSymlink == 0 {
			continue // nor sockets, fifos or devices
		}
		i := search(ents, plen, name, 0)
		tracked := i < len(ents) && ents[i].path[plen:] == name && (!t.IsDir() || ents[i].st.mode&modeType == modeSubmodule)
		if p := append(parts, name); tracked || m.Match(p, t.IsDir()) {
			continue
		} else if t.IsDir() {
			sub := ents[search(ents, plen, name, '/'):search(ents, plen, name, '/'+1)]
			err = s.walk(joinPath(dir, name), sub, ps, p, len(sub) == 0, out)
		} else {
			*out = append(*out, joinPath(dir, name))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// search is the first of ents (by path) whose path from plen on is not
// less than name followed by the byte tail (0: nothing).
func search(ents []indexEntry, plen int, name string, tail byte) int {
	lo, hi := 0, len(ents)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		rest := ents[mid].path[plen:]
		n := min(len(rest), len(name))
		c := strings.Compare(rest[:n], name[:n])
		if c < 0 || c == 0 && (len(rest) < len(name) || tail != 0 && (len(rest) == len(name) || rest[n] < tail)) {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo
}

// parsePatterns reads the patterns of a .gitignore in the directory whose
// names are domain.
func parsePatterns(data []byte, domain []string) []gitignore.Pattern {
	var ps []gitignore.Pattern
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimRight(line, "\r"); strings.TrimSpace(line) != "" && !strings.HasPrefix(line, "#") {
			ps = append(ps, gitignore.ParsePattern(line, domain))
		}
	}
	return ps
}

// joinPath is dir/name, or name at the top (dir "").
func joinPath(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// isRepo says whether dir has a repository of its own: a .git file that
// names one, or a .git directory with a HEAD.
func isRepo(dir string) bool {
	_, isFile := readGitFile(filepath.Join(dir, ".git"))
	_, err := os.Stat(filepath.Join(dir, ".git", "HEAD"))
	return isFile || err == nil
}

// statusConfig is what the dirty check reads of git's configuration.
type statusConfig struct {
	fileMode, trustCtime, checkStat, symlinks bool
	autocrlf                                  bool   // true or input
	attributesFile                            string // core.attributesFile, or git's default
}

// readStatusConfig reads the user's configuration ($XDG_CONFIG_HOME/git/
// config, then ~/.gitconfig), then the repository's (common/config), a
// later setting winning. The system's, a worktree's and include
// directives are not read.
func readStatusConfig(common string) statusConfig {
	c := statusConfig{fileMode: true, trustCtime: true, checkStat: true, symlinks: true}
	home, _ := os.UserHomeDir()
	xdg := cmp.Or(os.Getenv("XDG_CONFIG_HOME"), filepath.Join(home, ".config"))
	c.attributesFile = filepath.Join(xdg, "git", "attributes")
	for _, name := range []string{filepath.Join(xdg, "git", "config"), filepath.Join(home, ".gitconfig"), filepath.Join(common, "config")} {
		data, err := os.ReadFile(name)
		cfg := format.New()
		if err != nil || format.NewDecoder(bytes.NewReader(data)).Decode(cfg) != nil {
			continue
		}
		core := cfg.Section("core")
		for key, v := range map[string]*bool{"filemode": &c.fileMode, "trustctime": &c.trustCtime, "symlinks": &c.symlinks, "autocrlf": &c.autocrlf} {
			if core.HasOption(key) {
				*v = !slices.Contains([]string{"false", "no", "off", "0"}, strings.ToLower(core.Option(key)))
			}
		}
		if core.HasOption("checkstat") {
			c.checkStat = !strings.EqualFold(core.Option("checkstat"), "minimal")
		}
		if a := core.Option("attributesfile"); a != "" {
			c.attributesFile = a
			if rest, ok := strings.CutPrefix(a, "~/"); ok {
				c.attributesFile = filepath.Join(home, rest)
			}
		}
	}
	return c
}

// mayConvert says whether git may convert the content of files it stages:
// core.autocrlf is set, or an attributes file (a tracked .gitattributes,
// info/attributes, core.attributesFile) names an attribute that converts,
// set or not: a mention only sends the check to go-git.
func (s *status) mayConvert() bool {
	files := []string{filepath.Join(s.r.common, "info", "attributes"), s.cfg.attributesFile}
	for _, e := range s.idx.entries {
		if e.path == ".gitattributes" || strings.HasSuffix(e.path, "/.gitattributes") {
			files = append(files, s.r.fullPath(e.path))
		}
	}
	for _, f := range files {
		data, _ := os.ReadFile(f)
		for _, w := range strings.Fields(string(data)) {
			name, _, _ := strings.Cut(strings.TrimLeft(w, "-!"), "=")
			if slices.Contains([]string{"text", "eol", "crlf", "filter", "ident", "working-tree-encoding"}, name) {
				return true
			}
		}
	}
	return s.cfg.autocrlf
}

// changesGoGit is the dirty check as go-git's Worktree.Status makes it,
// which Changes was before it had its own, for what Changes does not
// handle. Where its answer is not git's: it lists an untracked
// repository's files one by one, checks assume-unchanged entries, ignores
// core.filemode, compares only size, mode and mtime, to the nanosecond (a
// change with the mtime restored, or racy within the index's second, is
// missed), ranks info/exclude over .gitignore files, has a submodule
// replaced by a file clean, and loses a staged deletion of a file still
// there when untracked files are left out.
func (r *Repo) changesGoGit(opts StatusOptions) ([]string, error) {
	wt, err := r.git.Worktree()
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", r.root, err)
	}
	// go-git reads .gitignore files itself, but its worktree filesystem
	// will not open paths inside .git, so info/exclude is read here.
	wt.Excludes = append(wt.Excludes, readPatterns(filepath.Join(r.gitDir(), "info", "exclude"))...)
	if global, err := globalExcludes(); err == nil {
		wt.Excludes = append(wt.Excludes, global...)
	}
	st, err := wt.Status()
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", r.root, err)
	}
	var paths []string
	for path, s := range st {
		untracked := s.Worktree == git.Untracked && s.Staging == git.Untracked
		if !(untracked && opts.IgnoreUntracked) && !(s.Worktree == git.Unmodified && s.Staging == git.Unmodified) {
			paths = append(paths, path)
		}
	}
	slices.Sort(paths)
	return paths, nil
}
