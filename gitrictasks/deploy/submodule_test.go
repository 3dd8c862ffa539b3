package deploy_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// nestedSubmodules gives the fixture's repository a submodule libs/lib
// (the repository lib) that has a submodule of its own, vendor/inner.
func nestedSubmodules(t *testing.T, f *fixture) {
	t.Helper()
	inner := repotest.New(t)
	inner.Commit(t, "inner v1", map[string]string{"inner.txt": "inner v1\n"})
	lib := repotest.New(t)
	lib.Commit(t, "lib v1", map[string]string{"lib.txt": "lib v1\n"})
	lib.AddSubmodule(t, "inner", inner.Dir, "vendor/inner")
	lib.Git(t, "commit", "-qm", "add inner")
	f.src.AddSubmodule(t, "lib", lib.Dir, "libs/lib")
	f.src.Git(t, "commit", "-qm", "add lib")
	f.src.Submodule(t, "update", "--init", "--recursive")
}

// innerV2 commits inner v2 in the nested submodule of nestedSubmodules,
// records it in lib, then lib in the fixture's repository.
func innerV2(t *testing.T, f *fixture) {
	t.Helper()
	innerDir := filepath.Join(f.src.Dir, "libs/lib/vendor/inner")
	repotest.Git(innerDir, "checkout", "-q", "-b", "work")
	os.WriteFile(filepath.Join(innerDir, "inner.txt"), []byte("inner v2\n"), 0o644)
	repotest.Git(innerDir, "commit", "-qam", "inner v2")
	libDir := filepath.Join(f.src.Dir, "libs/lib")
	repotest.Git(libDir, "checkout", "-q", "-b", "work")
	repotest.Git(libDir, "commit", "-qam", "inner v2")
	f.src.Git(t, "commit", "-qam", "lib with inner v2")
}

// TestSubmodules deploys a superproject with a submodule that has a nested
// submodule, changes the nested one, deploys again, and rolls back, in
// place and in release mode. The host never fetches: its submodule
// repositories borrow the objects gitric pushed.
func TestSubmodules(t *testing.T) {
	for _, mode := range []deploy.Mode{deploy.ModeInPlace, deploy.ModeRelease} {
		t.Run(string(mode), func(t *testing.T) {
			f := newFixture(t, sshdtest.Options{})
			nestedSubmodules(t, f)

			opts := f.options()
			opts.Stage.Mode = mode
			opts.Stage.Submodules = true
			work := f.target
			if mode == deploy.ModeRelease {
				work = filepath.Join(f.target, "current")
			}
			read := func(p string) string {
				b, err := os.ReadFile(filepath.Join(work, p))
				if err != nil {
					return err.Error()
				}
				return string(b)
			}
			f.deploy(t, opts)
			if read("libs/lib/lib.txt") != "lib v1\n" || read("libs/lib/vendor/inner/inner.txt") != "inner v1\n" {
				t.Fatalf("submodules not deployed: %q %q", read("libs/lib/lib.txt"), read("libs/lib/vendor/inner/inner.txt"))
			}

			innerV2(t, f)
			f.deploy(t, opts)
			if read("libs/lib/vendor/inner/inner.txt") != "inner v2\n" {
				t.Fatalf("nested submodule not updated: %q", read("libs/lib/vendor/inner/inner.txt"))
			}
			if out, err := repotest.Git(filepath.Join(work, "libs/lib"), "status", "--porcelain"); err != nil || out != "" {
				t.Errorf("the host's submodule is not clean: %q %v", out, err)
			}

			if _, err := deploy.Rollback(context.Background(), rollbackOptions(opts)); err != nil {
				t.Fatal(err)
			}
			if read("libs/lib/vendor/inner/inner.txt") != "inner v1\n" {
				t.Errorf("rollback left the nested submodule at %q", read("libs/lib/vendor/inner/inner.txt"))
			}
		})
	}
}

func TestSubmoduleMissingLocally(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	lib := repotest.New(t)
	lib.Commit(t, "lib v1", map[string]string{"lib.txt": "lib v1\n"})
	f.src.AddSubmodule(t, "lib", lib.Dir, "libs/lib")
	f.src.Git(t, "commit", "-qm", "add lib")
	f.src.Submodule(t, "deinit", "-q", "--all")
	os.RemoveAll(filepath.Join(f.src.Dir, ".git", "modules"))
	opts := f.options()
	opts.Stage.Submodules = true
	_, err := deploy.Run(context.Background(), opts)
	if !errors.Is(err, localrepo.ErrSubmoduleMissing) {
		t.Fatalf("deploy with a submodule missing locally = %v", err)
	}
	if _, err := os.Stat(f.target); !os.IsNotExist(err) {
		t.Errorf("a host was touched before the refusal")
	}
}
