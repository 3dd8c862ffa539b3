package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
)

// derive makes gitric's deploy commit when the stage has artifacts or a
// subdirectory: the commit the hosts check out instead of the source.
func (d *deployOp) derive(ctx context.Context) error {
	st := d.opts.Stage
	d.target = d.commit.Hash
	if st.Artifacts == nil && st.Subdir == "" {
		return nil
	}
	var arts []localrepo.Artifact
	if a := st.Artifacts; a != nil {
		dir, done, err := d.buildDir()
		if err != nil {
			return fmt.Errorf("local build: %w", err)
		}
		defer done()
		if err := d.build(ctx, a, dir); err != nil {
			return err
		}
		sub := strings.Trim(st.Subdir, "/")
		for _, p := range a.Paths {
			rel := filepath.ToSlash(filepath.Clean(p))
			if sub != "" {
				rel = strings.TrimPrefix(rel, sub+"/")
			}
			arts = append(arts, localrepo.Artifact{Path: rel, File: filepath.Join(dir, p)})
		}
	}
	h, err := d.repo.DeployCommit(ctx, localrepo.Derivation{Source: d.commit.Hash, Subdir: st.Subdir, Artifacts: arts})
	if err != nil {
		return fmt.Errorf("stage %q: %w", st.Name, err)
	}
	d.target = h
	if d.targetTree, err = d.repo.TreeOf(h); err != nil {
		return err
	}
	return nil
}

// buildDir is an empty directory for the stage's local build, and done
// removes it. It is the same directory every time for one local
// repository and stage (in the user's cache directory), because builds
// write the directory they run in into what they make (go build without
// -trimpath puts its source paths in the binary): in a new temporary
// directory each time, no output would ever be unchanged, and every
// deploy would send every binary again. A build of the same stage that
// runs at the same time (the directory is locked) gets a temporary
// directory of its own.
func (d *deployOp) buildDir() (dir string, done func(), err error) {
	temp := func() (string, func(), error) {
		dir, err := os.MkdirTemp("", "gitric-build-*")
		return dir, func() { os.RemoveAll(dir) }, err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return temp()
	}
	sum := sha256.Sum256([]byte(d.repo.Root() + "\x00" + d.opts.Stage.Name))
	dir = filepath.Join(cache, "gitric", "build", hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return temp()
	}
	unlock, ok := tryLock(dir + ".lock")
	if !ok {
		return temp()
	}
	if err := os.RemoveAll(dir); err != nil {
		unlock()
		return temp()
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		unlock()
		return temp()
	}
	return dir, func() {
		os.RemoveAll(dir)
		unlock()
	}, nil
}

// ErrBuild means the local build of a stage's artifacts failed.
var ErrBuild = fmt.Errorf("the local build failed")

// build runs the stage's local build in a clean checkout of the commit.
func (d *deployOp) build(ctx context.Context, a *Artifacts, dir string) error {
	start := time.Now()
	if err := d.repo.Checkout(ctx, d.commit.Hash, dir); err != nil {
		return fmt.Errorf("local build: a clean checkout of %s: %w", d.commit.Short(), err)
	}
	var out bytes.Buffer
	var err error
	what := "Artifacts.Func"
	if a.Func != nil {
		err = a.Func(ctx, dir)
	} else {
		what = a.Command
		cmd := exec.CommandContext(ctx, "sh", "-c", a.Command)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GITRIC_COMMIT="+d.commit.Hash.String())
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = 5 * time.Second
		err = cmd.Run()
	}
	if err != nil {
		lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
		for _, l := range lines[max(0, len(lines)-40):] {
			d.con.Printf("build: %s", l)
		}
		return fmt.Errorf("%w: %s: %w; nothing was contacted", ErrBuild, what, err)
	}
	for _, p := range a.Paths {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			return fmt.Errorf("%w: %s did not produce %s", ErrBuild, what, p)
		}
	}
	d.con.Printf("built %s locally in %s (%s)", strings.Join(a.Paths, ", "), round(time.Since(start)), what)
	return nil
}

// inSubdir keeps, with DirtyOnlyInSubdir, the paths inside Stage.Subdir.
func (d *deployOp) inSubdir(paths []string) []string {
	sub := strings.Trim(d.opts.Stage.Subdir, "/")
	if sub == "" || !d.opts.Stage.DirtyOnlyInSubdir {
		return paths
	}
	var out []string
	for _, p := range paths {
		if p == sub || strings.HasPrefix(p, sub+"/") {
			out = append(out, p)
		}
	}
	return out
}
