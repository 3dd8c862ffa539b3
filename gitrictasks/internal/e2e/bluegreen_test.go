package e2e_test

// Blue/green with a Build: what a crash leaves beside the colours, and
// the hosts' busybox applets.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// builtOptions are e's options for a blue/green stage whose build notes
// each run in the scratch directory, and whose service is a log file.
func (e *env) builtOptions() deploy.DeployOptions {
	opts := e.options()
	opts.Stage.Build = fmt.Sprintf(`echo "$PWD" >> '%s/builds'; echo "built $(cat index.html)" > built.txt`, e.scratch)
	opts.Stage.Start = `grep -q bad index.html && exit 5; cat built.txt > running.log`
	return opts
}

// builds are the directories the builds of e ran in, one per build.
func (e *env) builds(t *testing.T) []string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(e.scratch, "builds"))
	return strings.Fields(string(b))
}

// beside lists what lies in e's root besides the layout.
func (e *env) beside(t *testing.T) []string {
	t.Helper()
	var out []string
	entries, _ := os.ReadDir(e.dir)
	for _, d := range entries {
		switch d.Name() {
		case "repo", "blue", "green", "live", "next", "shared":
		default:
			out = append(out, d.Name())
		}
	}
	return out
}

// colours checks git's record of the working copies: blue and green, at
// their places, after a prune too.
func (e *env) colours(t *testing.T) {
	t.Helper()
	if _, err := repotest.Git(e.dir, "--git-dir="+e.gitDir(), "worktree", "prune"); err != nil {
		t.Fatal(err)
	}
	out, _ := repotest.Git(e.dir, "--git-dir="+e.gitDir(), "worktree", "list", "--porcelain")
	var wts []string
	for _, l := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(l, "worktree "); ok && p != e.gitDir() {
			wts = append(wts, p)
		}
	}
	sort.Strings(wts)
	if want := filepath.Join(e.dir, "blue") + " " + filepath.Join(e.dir, "green"); strings.Join(wts, " ") != want {
		t.Errorf("git's worktrees %v, want blue and green", wts)
	}
}

// Item 4, for blue/green with a Build: a copy of next that a crash left
// behind (half-made, or looking whole) is removed and never used, and a
// colour that a crash left moved aside is put back.
func TestBlueGreenCrashLeftovers(t *testing.T) {
	t.Parallel()
	l := newLab(t, sshdtest.Options{FastShell: true})
	for _, tt := range []struct {
		name  string
		crash func(t *testing.T, e *env, v2 string)
	}{
		{"half-made", func(t *testing.T, e *env, v2 string) {
			half := filepath.Join(e.dir, "green.gitric-new")
			if _, err := repotest.Git(e.dir, "--git-dir="+e.gitDir(), "worktree", "add", "-q", "--detach", half, v2); err != nil {
				t.Fatal(err)
			}
			_ = os.Remove(filepath.Join(half, "index.html"))
		}},
		{"looks-whole", func(t *testing.T, e *env, v2 string) {
			whole := filepath.Join(e.dir, "green.gitric-new")
			if _, err := repotest.Git(e.dir, "--git-dir="+e.gitDir(), "worktree", "add", "-q", "--detach", whole, v2); err != nil {
				t.Fatal(err)
			}
			gd, _ := repotest.Git(whole, "rev-parse", "--absolute-git-dir")
			writeFile(t, gd, "gitric-complete", "")
			writeFile(t, whole, "built.txt", "stale\n")
		}},
		{"moved-aside", func(t *testing.T, e *env, v2 string) {
			// Between the two renames: next's colour is aside, next
			// points at nothing, the new copy waits.
			whole := filepath.Join(e.dir, "green.gitric-new")
			if _, err := repotest.Git(e.dir, "--git-dir="+e.gitDir(), "worktree", "add", "-q", "--detach", whole, v2); err != nil {
				t.Fatal(err)
			}
			writeFile(t, whole, "built.txt", "stale\n")
			if err := os.Rename(filepath.Join(e.dir, "green"), filepath.Join(e.dir, "green.gitric-old")); err != nil {
				t.Fatal(err)
			}
		}},
		{"renamed-in", func(t *testing.T, e *env, v2 string) {
			// After both renames, before git's record followed them.
			whole := filepath.Join(e.dir, "green.gitric-new")
			if _, err := repotest.Git(e.dir, "--git-dir="+e.gitDir(), "worktree", "add", "-q", "--detach", whole, v2); err != nil {
				t.Fatal(err)
			}
			writeFile(t, whole, "built.txt", "built v2\n")
			if err := os.Rename(filepath.Join(e.dir, "green"), filepath.Join(e.dir, "green.gitric-old")); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(whole, filepath.Join(e.dir, "green")); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, l.login(t, nil), deploy.ModeBlueGreen)
			e.src.Commit(t, "ignore logs", map[string]string{".gitignore": "*.log\n"})
			opts := e.builtOptions()
			if _, err := e.run(opts); err != nil {
				t.Fatal(err)
			}
			v2 := e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n", "more.txt": "more\n"})
			e.src.Git(t, "push", "-q", e.gitDir(), v2+":refs/gitric/seed")
			tt.crash(t, e, v2)
			v3 := e.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
			if _, err := e.run(opts); err != nil {
				t.Fatalf("the deploy after the crash: %v", err)
			}
			e.expect(t, host{head: v3, files: map[string]string{"index.html": "v3\n", "more.txt": "more\n", "built.txt": "built v3\n", "running.log": "built v3\n"}, audit: deploy.OutcomeOK})
			if b := e.builds(t); len(b) != 2 || b[1] != filepath.Join(e.dir, "green.gitric-new") {
				t.Errorf("builds ran in %v, want a new one in green.gitric-new", b)
			}
			if got := e.beside(t); len(got) > 0 {
				t.Errorf("left beside the colours: %v", got)
			}
			if c, _ := os.Readlink(filepath.Join(e.dir, "next")); c != "green" {
				t.Errorf("next is %q", c)
			}
			e.colours(t)
		})
	}
}

// Item 4: a cutover that stopped between its two renames left next's
// colour moved aside, with an edit made on the host in it. The next deploy
// puts the colour back before it looks at next, so the edit is found and
// refused (not lost with the old copy), and next is what it was.
func TestBlueGreenCrashAsideEdited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newLab(t, sshdtest.Options{FastShell: true}).login(t, nil), deploy.ModeBlueGreen)
	opts := e.builtOptions()
	if _, err := e.run(opts); err != nil {
		t.Fatal(err)
	}
	green := filepath.Join(e.dir, "green")
	writeFile(t, green, "index.html", "edited on the host\n")
	if err := os.Rename(green, green+".gitric-old"); err != nil {
		t.Fatal(err)
	}
	e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	_, err := e.run(opts)
	var se *deploy.ServerEditsError
	if !errors.As(err, &se) || !slices.ContainsFunc(se.Paths, func(p string) bool { return strings.Contains(p, "index.html") }) {
		t.Fatalf("deploy over a colour a crash moved aside, edited = %v, want the edit refused", err)
	}
	if b, err := os.ReadFile(filepath.Join(e.dir, "next", "index.html")); err != nil || string(b) != "edited on the host\n" {
		t.Errorf("next's index.html = %q, %v; want the edit, in place", b, err)
	}
	if got := e.beside(t); len(got) > 0 {
		t.Errorf("left beside the colours: %v", got)
	}
}

// Item 4: a swap that stopped between its two links left live and next on
// one colour. The next deploy finishes the swap first: it goes to the
// other colour, and what serves is neither stopped nor changed.
func TestBlueGreenCrashHalfSwap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, newLab(t, sshdtest.Options{FastShell: true}).login(t, nil), deploy.ModeBlueGreen)
	opts := e.options()
	opts.Stage.Stop = fmt.Sprintf(`pwd -P >> '%s/stops'`, e.scratch)
	if _, err := e.run(opts); err != nil {
		t.Fatal(err)
	}
	e.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	if _, err := e.run(opts); err != nil {
		t.Fatal(err)
	}
	// live is blue (v1), next green (v2); the swap's first link, alone.
	live := filepath.Join(e.dir, "live")
	if err := os.Remove(live); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("green", live); err != nil {
		t.Fatal(err)
	}
	_ = os.Remove(filepath.Join(e.scratch, "stops"))
	e.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
	if _, err := e.run(opts); err != nil {
		t.Fatalf("the deploy after half a swap: %v", err)
	}
	for link, want := range map[string]string{"live": "green", "next": "blue"} {
		if c, _ := os.Readlink(filepath.Join(e.dir, link)); c != want {
			t.Errorf("%s is %q, want %q", link, c, want)
		}
	}
	for colour, want := range map[string]string{"green": "v2\n", "blue": "v3\n"} {
		if b, _ := os.ReadFile(filepath.Join(e.dir, colour, "index.html")); string(b) != want {
			t.Errorf("%s serves %q, want %q", colour, b, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(e.scratch, "stops")); strings.TrimSpace(string(b)) != filepath.Join(e.dir, "blue") {
		t.Errorf("the deploy stopped %q, want blue only", b)
	}
}

// Item 3, for blue/green with a Build: with busybox's applets first on
// the PATH (mv, awk, sed...), builds, renames, swaps and the rollback of
// a failed start work, and a reader through live never misses a file.
func TestBlueGreenBuildBusybox(t *testing.T) {
	t.Parallel()
	l, bin := busyboxLab(t)
	e := newEnv(t, l.login(t, nil), deploy.ModeBlueGreen)
	e.src.Commit(t, "ignore logs", map[string]string{".gitignore": "*.log\n", "index.html": "v0\n"})
	opts := e.builtOptions()
	opts.Stage.Build += `; command -v mv > which-mv.log`
	if _, err := e.run(opts); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(e.read("which-mv.log")); got != filepath.Join(bin, "mv") {
		t.Fatalf("the host's mv is %q, want busybox's in %s", got, bin)
	}
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		bad := 0
		for {
			select {
			case <-stop:
				done <- bad
				return
			default:
			}
			if b, err := os.ReadFile(filepath.Join(e.dir, "live", "index.html")); err != nil || len(b) == 0 {
				bad++
			}
			time.Sleep(time.Millisecond)
		}
	}()
	swap := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), deployBound)
		defer cancel()
		if _, err := deploy.Swap(ctx, swapOptions(opts)); err != nil {
			t.Fatalf("swap: %v", err)
		}
	}
	var last string
	for v := 1; v <= 3; v++ {
		last = e.src.Commit(t, fmt.Sprintf("v%d", v), map[string]string{"index.html": fmt.Sprintf("v%d\n", v)})
		if _, err := e.run(opts); err != nil {
			t.Fatal(err)
		}
		e.expect(t, host{head: last, files: map[string]string{"running.log": fmt.Sprintf("built v%d\n", v)}, audit: deploy.OutcomeOK})
		swap()
	}
	close(stop)
	if bad := <-done; bad > 0 {
		t.Errorf("%d reads through live missed index.html", bad)
	}
	if got := headIn(t, filepath.Join(e.dir, "live")); got != last {
		t.Errorf("live is on %.7s, want %.7s", got, last)
	}
	swap() // next: the last deploy again
	before, _ := os.Stat(filepath.Join(e.dir, "next"))
	e.src.Commit(t, "bad", map[string]string{"index.html": "bad\n"})
	_, err := e.run(opts)
	wantIs(t, err, deploy.ErrRolledBack)
	e.expect(t, host{head: last, files: map[string]string{"running.log": "built v3\n"}, audit: deploy.OutcomeRolledBack})
	if after, _ := os.Stat(filepath.Join(e.dir, "next")); !os.SameFile(before, after) {
		t.Errorf("next is not the directory it was before the failed deploy")
	}
	if got := e.beside(t); len(got) > 0 {
		t.Errorf("left beside the colours: %v", got)
	}
	e.colours(t)
}

func headIn(t *testing.T, dir string) string {
	t.Helper()
	out, _ := repotest.Git(dir, "rev-parse", "-q", "--verify", "HEAD")
	return out
}
