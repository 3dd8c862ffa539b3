package deploy_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// The end-to-end tests of a blue/green stage with a Build, against real
// sshd: next's new copy is built in phase one, beside next, while both
// colours run, and renamed into place at the cutover.

// bgHost is what one blue/green host looks like from outside.
type bgHost struct {
	live, next         string // the colours the links point at
	liveHead, nextHead string
	liveIno, nextIno   uint64 // the colours' directories
	running            string // next's "service"
	extra              []string
}

func colorOf(root, link string) string {
	target, _ := os.Readlink(filepath.Join(root, link))
	return filepath.Base(target)
}

func headIn(dir string) string {
	out, err := repotest.Git(dir, "rev-parse", "-q", "--verify", "HEAD")
	if err != nil {
		return ""
	}
	return out
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

// lookBG describes a blue/green root: its links, heads, directories, and
// whatever lies beside the colours (a copy gitric left behind).
func lookBG(t *testing.T, root string) bgHost {
	t.Helper()
	h := bgHost{live: colorOf(root, "live"), next: colorOf(root, "next")}
	h.liveHead, h.nextHead = headIn(filepath.Join(root, "live")), headIn(filepath.Join(root, "next"))
	h.liveIno, h.nextIno = inode(t, filepath.Join(root, "live")), inode(t, filepath.Join(root, "next"))
	h.running = readFile(t, filepath.Join(root, "next", "running"))
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		switch e.Name() {
		case "repo", "blue", "green", "live", "next", "shared":
		default:
			h.extra = append(h.extra, e.Name())
		}
	}
	return h
}

// builtInNewGreen checks host i's journal: the commands ran are want
// (words), the first being the build, in green's new copy beside the
// colours of root, with green's settings. It returns the journal.
func builtInNewGreen(t *testing.T, i int, journal, root, want string) []journalLine {
	t.Helper()
	lines := readJournal(t, journal)
	if got := strings.Join(words(lines), " "); got != want {
		t.Fatalf("host %d ran %s, want %s", i, got, want)
	}
	if dir := filepath.Join(root, "green.gitric-new") + " green 8082"; lines[0].rest != dir {
		t.Errorf("host %d built in %q, want %q", i, lines[0].rest, dir)
	}
	return lines
}

// worktrees checks git's record of a blue/green root's working copies:
// blue and green, where they are, and nothing else, also after a prune.
func worktrees(t *testing.T, root string) {
	t.Helper()
	repo := filepath.Join(root, "repo")
	if _, err := repotest.Git(root, "--git-dir="+repo, "worktree", "prune"); err != nil {
		t.Fatal(err)
	}
	out, err := repotest.Git(root, "--git-dir="+repo, "worktree", "list", "--porcelain")
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, l := range strings.Split(out, "\n") {
		if p, ok := strings.CutPrefix(l, "worktree "); ok && p != repo {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	if want := []string{filepath.Join(root, "blue"), filepath.Join(root, "green")}; strings.Join(paths, " ") != strings.Join(want, " ") {
		t.Errorf("git's worktrees after a prune: %v, want %v", paths, want)
	}
	for _, c := range []string{"blue", "green"} {
		if st, err := repotest.Git(filepath.Join(root, c), "status", "--porcelain", "--untracked-files=no"); err != nil || st != "" {
			t.Errorf("%s: git status %q (%v)", c, st, err)
		}
	}
}

// TestBlueGreenBuildFleet drives a blue/green fleet of three hosts with a
// Build through first deploys, builds before next's stop, swaps, a
// failing build on one host, a failing start, a rollback and untracked
// files in next.
func TestBlueGreenBuildFleet(t *testing.T) {
	f := newFleet(t, 3)
	// What the service writes in its working copy is ignored, or the
	// next deploy would be refused for losing it with the old copy.
	f.src.Commit(t, "ignore the service's file", map[string]string{".gitignore": "running\n"})
	opts := f.options()
	opts.Stage.Mode = deploy.ModeBlueGreen
	opts.Stage.Colors = map[string]map[string]string{"blue": {"PORT": "8081"}, "green": {"PORT": "8082"}}
	opts.Stage.Build = `if [ -f "$HOME/broken" ]; then echo "compiler says no on $HOME" >&2; exit 7; fi; ` +
		note("build", "$PWD $GITRIC_COLOR $PORT") + `; echo "built $(cat index.html)" > built.txt`
	opts.Stage.Stop = note("stop", "$PWD") + `; rm -f running`
	opts.Stage.Start = `grep -q bad index.html && exit 5; ` + note("start", "$PWD $GITRIC_COLOR") + `; cat built.txt > running`
	journal := func(i int) string { return filepath.Join(f.Homes[i], "journal") }
	clear := func() {
		for i := range f.hosts {
			os.Remove(journal(i))
		}
	}
	looks := func() []bgHost {
		var hs []bgHost
		for i := range f.hosts {
			hs = append(hs, lookBG(t, f.target(i)))
		}
		return hs
	}

	v1 := f.src.Head(t)
	mustDeploy(t, opts)
	for i, h := range looks() {
		root := f.target(i)
		if h.live != "blue" || h.next != "green" || h.liveHead != v1 || h.nextHead != v1 || len(h.extra) > 0 {
			t.Fatalf("host %d after the first deploy: %+v", i, h)
		}
		if h.running != "built v1\n" {
			t.Errorf("host %d: next serves %q", i, h.running)
		}
		builtInNewGreen(t, i, journal(i), root, "build start")
		worktrees(t, root)
	}

	t.Run("build before next's stop, live untouched", func(t *testing.T) {
		clear()
		before := looks()
		v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
		mustDeploy(t, opts)
		var lastBuild, firstStop int64
		for i, h := range looks() {
			root := f.target(i)
			if h.live != "blue" || h.next != "green" || h.nextHead != v2 || len(h.extra) > 0 {
				t.Errorf("host %d: %+v", i, h)
			}
			if h.liveHead != v1 || h.liveIno != before[i].liveIno {
				t.Errorf("host %d: live changed: %+v, before %+v", i, h, before[i])
			}
			if h.nextIno == before[i].nextIno {
				t.Errorf("host %d: next is the old directory", i)
			}
			if h.running != "built v2\n" {
				t.Errorf("host %d: next serves %q", i, h.running)
			}
			lines := builtInNewGreen(t, i, journal(i), root, "build stop start")
			if want := filepath.Join(root, "next"); lines[1].rest != want || !strings.HasPrefix(lines[2].rest, want+" green") {
				t.Errorf("host %d stopped in %q and started in %q, want next", i, lines[1].rest, lines[2].rest)
			}
			lastBuild = max(lastBuild, lines[0].ns)
			if firstStop == 0 || lines[1].ns < firstStop {
				firstStop = lines[1].ns
			}
			worktrees(t, root)
		}
		// One clock: the hosts are one machine.
		if lastBuild >= firstStop {
			t.Errorf("the last build (%d) is not before the first stop (%d)", lastBuild, firstStop)
		}
		if !strings.Contains(f.out.String(), "built green.gitric-new in") {
			t.Errorf("the output does not report the build:\n%s", f.out)
		}
	})

	t.Run("swap after a built deploy serves the built code", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), deployTimeout)
		defer cancel()
		if _, err := deploy.Swap(ctx, swapOptions(opts)); err != nil {
			t.Fatal(err)
		}
		for i := range f.hosts {
			root := f.target(i)
			if c := colorOf(root, "live"); c != "green" || readFile(t, filepath.Join(root, "live", "built.txt")) != "built v2\n" {
				t.Errorf("host %d: live is %s, built %q", i, c, readFile(t, filepath.Join(root, "live", "built.txt")))
			}
		}
		clear()
		v3 := f.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
		mustDeploy(t, opts) // to next: blue
		for i, h := range looks() {
			root := f.target(i)
			lines := readJournal(t, journal(i))
			if got := strings.Join(words(lines), " "); got != "build stop start" {
				t.Fatalf("host %d ran %s", i, got)
			}
			if want := filepath.Join(root, "blue.gitric-new") + " blue 8081"; lines[0].rest != want {
				t.Errorf("host %d built in %q, want %q", i, lines[0].rest, want)
			}
			if h.next != "blue" || h.nextHead != v3 || h.running != "built v3\n" || h.live != "green" || len(h.extra) > 0 {
				t.Errorf("host %d: %+v", i, h)
			}
			if got := readFile(t, filepath.Join(root, "live", "built.txt")); got != "built v2\n" {
				t.Errorf("host %d: live's build output is %q", i, got)
			}
			worktrees(t, root)
		}
		if _, err := deploy.Swap(ctx, swapOptions(opts)); err != nil {
			t.Fatal(err)
		}
		for i := range f.hosts {
			root := f.target(i)
			if c := colorOf(root, "live"); c != "blue" || headIn(filepath.Join(root, "live")) != v3 || readFile(t, filepath.Join(root, "live", "built.txt")) != "built v3\n" {
				t.Errorf("host %d: live is %s on %.7s", i, c, headIn(filepath.Join(root, "live")))
			}
		}
	})

	t.Run("failing build on one host of three changes none", func(t *testing.T) {
		clear()
		before := looks()
		never := f.src.Commit(t, "v4", map[string]string{"index.html": "v4\n"})
		f.failBuildOnHost1(t, opts)
		for i, h := range looks() {
			if h.live != before[i].live || h.next != before[i].next || h.liveHead != before[i].liveHead || h.nextHead != before[i].nextHead ||
				h.liveIno != before[i].liveIno || h.nextIno != before[i].nextIno || h.running != before[i].running || len(h.extra) > 0 {
				t.Errorf("host %d changed: %+v, before %+v", i, h, before[i])
			}
			for _, l := range readJournal(t, journal(i)) {
				if l.word != "build" {
					t.Errorf("host %d ran %s during a deploy whose build failed", i, l.word)
				}
			}
			log := f.auditOf(t, i)
			want := deploy.OutcomeAborted
			if i == 1 {
				want = deploy.OutcomeFailed
			}
			if last := log[len(log)-1]; last.To != never || last.Result != want {
				t.Errorf("host %d: last audit line %+v, want %s", i, last, want)
			}
			worktrees(t, f.target(i))
		}
		f.unlockedBG(t)
	})

	t.Run("failed start goes back to the old next without a rebuild", func(t *testing.T) {
		clear()
		before := looks()
		f.src.Commit(t, "bad", map[string]string{"index.html": "bad\n"})
		res, err := runDeploy(t, opts)
		if !errors.Is(err, deploy.ErrRolledBack) || !strings.Contains(err.Error(), "start command failed (exit status 5)") {
			t.Fatalf("deploy of a version that does not start = %v", err)
		}
		// One host at a time: the first fails and goes back, the batches
		// after it are not cut over, and their prepared copies go.
		for i, h := range looks() {
			b := before[i]
			if h.next != b.next || h.nextHead != b.nextHead || h.nextIno != b.nextIno || h.running != b.running || h.liveIno != b.liveIno || len(h.extra) > 0 {
				t.Errorf("host %d is not back on its old next: %+v, before %+v", i, h, b)
			}
			lines := readJournal(t, journal(i))
			log := f.auditOf(t, i)
			n := len(log)
			if i > 0 {
				if got := strings.Join(words(lines), " "); res.Hosts[i].Outcome != deploy.OutcomeAborted || got != "build" {
					t.Errorf("host %d: %s, ran %s; want aborted after its build", i, res.Hosts[i].Outcome, got)
				}
				if log[n-1].Result != deploy.OutcomeAborted {
					t.Errorf("host %d: audit log ends %+v", i, log[n-1])
				}
				continue
			}
			if res.Hosts[i].Outcome != deploy.OutcomeRolledBack {
				t.Errorf("host %d: outcome %s", i, res.Hosts[i].Outcome)
			}
			// The failed start notes nothing; the old copy is not rebuilt.
			if got := strings.Join(words(lines), " "); got != "build stop stop start" {
				t.Errorf("host %d ran %s, want build stop stop start", i, got)
			}
			if n < 2 || log[n-2].Result != deploy.OutcomeFailed || log[n-1].Result != deploy.OutcomeRolledBack || log[n-1].To != b.nextHead {
				t.Errorf("host %d: audit log ends %+v", i, log[max(0, n-2):])
			}
			worktrees(t, f.target(i))
		}
	})

	t.Run("rollback builds the old commit in phase one", func(t *testing.T) {
		v5 := f.src.Commit(t, "v5", map[string]string{"index.html": "v5\n"})
		mustDeploy(t, opts) // next: green
		clear()
		ctx, cancel := context.WithTimeout(context.Background(), deployTimeout)
		defer cancel()
		if _, err := deploy.Rollback(ctx, rollbackOptions(opts)); err != nil {
			t.Fatalf("rollback: %v", err)
		}
		for i, h := range looks() {
			root := f.target(i)
			// The deploy before v5 in the audit log is v3's (to blue).
			if h.next != "green" || h.nextHead == v5 || h.running != "built v3\n" || len(h.extra) > 0 {
				t.Errorf("host %d after the rollback: %+v", i, h)
			}
			builtInNewGreen(t, i, journal(i), root, "build stop start")
			worktrees(t, root)
		}
	})

	t.Run("untracked files in next are protected", func(t *testing.T) {
		root := f.target(2)
		os.WriteFile(filepath.Join(root, "next", "notes.txt"), []byte("the host's own\n"), 0o644)
		before := looks()
		f.src.Commit(t, "v6", map[string]string{"index.html": "v6\n"})
		_, err := runDeploy(t, opts)
		var ue *deploy.UntrackedError
		// built.txt, the build's output, is not in the way.
		if !errors.As(err, &ue) || strings.Join(ue.Paths, " ") != "notes.txt" {
			t.Fatalf("deploy over an untracked file in next = %v", err)
		}
		for i, h := range looks() {
			if h.nextIno != before[i].nextIno || h.nextHead != before[i].nextHead || len(h.extra) > 0 {
				t.Errorf("host %d changed: %+v", i, h)
			}
		}
		plan, err := deploy.MakePlan(context.Background(), opts)
		if plan == nil || len(plan.Hosts) != 3 || len(plan.Hosts[0].Refusals) > 0 || !strings.Contains(errors.Join(plan.Hosts[2].Refusals...).Error(), "notes.txt") {
			t.Fatalf("plan = %+v, %v; want host 2 refused for notes.txt alone", plan, err)
		}
		var steps []string
		for _, s := range plan.Hosts[0].Steps {
			steps = append(steps, s.Name)
		}
		if got := strings.Join(steps, " "); got != "build stop switch start" {
			t.Errorf("plan steps %s, want build stop switch start", got)
		}
		opts := opts
		opts.DiscardEdits = true
		mustDeploy(t, opts)
		if _, err := os.Stat(filepath.Join(root, "next", "notes.txt")); !os.IsNotExist(err) {
			t.Errorf("notes.txt is still in next (%v)", err)
		}
	})
}

// auditOf reads host i's blue/green audit log.
func (f *fleet) auditOf(t *testing.T, i int) []deploy.AuditEntry {
	t.Helper()
	var out []deploy.AuditEntry
	for _, l := range strings.Split(strings.TrimSpace(readFile(t, filepath.Join(f.target(i), "repo", "gitric", "audit.log"))), "\n") {
		var e deploy.AuditEntry
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("host %d: audit line %q: %v", i, l, err)
		}
		out = append(out, e)
	}
	return out
}

// unlockedBG checks that no blue/green host of the fleet is locked.
func (f *fleet) unlockedBG(t *testing.T) {
	t.Helper()
	for i := range f.hosts {
		if _, err := os.Lstat(filepath.Join(f.target(i), "repo", "gitric", "lock")); err == nil {
			t.Errorf("host %d is still locked", i)
		}
	}
}

// TestBlueGreenBuildSubmodulesShared deploys a superproject with a nested
// submodule and shared paths to a blue/green stage with a Build: the
// copies renamed into place (and back) keep their submodules working, and
// the shared data survives every deploy, swap and rollback.
func TestBlueGreenBuildSubmodulesShared(t *testing.T) {
	f := newFixture(t, sshdtest.Options{})
	root := f.target
	nestedSubmodules(t, f)
	if err := os.MkdirAll(filepath.Join(root, "shared"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "shared", ".env"), []byte("KEY=kept\n"), 0o600)

	opts := f.options()
	opts.Stage.Mode = deploy.ModeBlueGreen
	opts.Stage.Submodules = true
	opts.Stage.Shared = []string{".env", "data/"}
	opts.Stage.Build = `cat libs/lib/lib.txt libs/lib/vendor/inner/inner.txt > built.txt && cat .env >> data/builds`
	// running.log: ignored (*.log), as what a service writes must be.
	opts.Stage.Start = `grep -q bad index.html && exit 5; cat built.txt > running.log; cat index.html >> data/starts`
	// sub checks next's submodules: their files, a clean status, and
	// their core.worktree, which must be where they are now.
	sub := func(when, lib, inner string) {
		t.Helper()
		next, _ := filepath.EvalSymlinks(filepath.Join(root, "next"))
		if got := readFile(t, filepath.Join(next, "built.txt")); got != lib+inner {
			t.Errorf("%s: the build saw %q, want %q", when, got, lib+inner)
		}
		if got := readFile(t, filepath.Join(next, "running.log")); got != lib+inner {
			t.Errorf("%s: next serves %q", when, got)
		}
		for _, p := range []string{"libs/lib", "libs/lib/vendor/inner"} {
			dir := filepath.Join(next, p)
			if st, err := repotest.Git(dir, "status", "--porcelain"); err != nil || st != "" {
				t.Errorf("%s: %s: status %q (%v)", when, p, st, err)
			}
			if wt, err := repotest.Git(dir, "rev-parse", "--show-toplevel"); err != nil || wt != dir {
				t.Errorf("%s: %s: git works in %q (%v), want %s", when, p, wt, err, dir)
			}
		}
		if st, err := repotest.Git(next, "status", "--porcelain"); err != nil || st != "" {
			t.Errorf("%s: next: status %q (%v)", when, st, err)
		}
		for _, p := range []string{".env", "data"} {
			if target, err := os.Readlink(filepath.Join(next, p)); err != nil || target != filepath.Join(root, "shared", p) {
				t.Errorf("%s: next/%s links to %q (%v)", when, p, target, err)
			}
		}
		if h := lookBG(t, root); len(h.extra) > 0 {
			t.Errorf("%s: left beside the colours: %v", when, h.extra)
		}
		worktrees(t, root)
	}
	f.deploy(t, opts)
	sub("first deploy", "lib v1\n", "inner v1\n")

	innerV2(t, f)
	f.deploy(t, opts)
	sub("second deploy", "lib v1\n", "inner v2\n")

	ctx, cancel := context.WithTimeout(context.Background(), deployTimeout)
	defer cancel()
	if _, err := deploy.Swap(ctx, swapOptions(opts)); err != nil {
		t.Fatal(err)
	}
	f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	f.deploy(t, opts) // to blue
	sub("deploy to blue", "lib v1\n", "inner v2\n")
	if c := colorOf(root, "next"); c != "blue" {
		t.Errorf("next is %s", c)
	}

	f.src.Commit(t, "bad", map[string]string{"index.html": "bad\n"})
	if _, err := runDeploy(t, opts); !errors.Is(err, deploy.ErrRolledBack) {
		t.Fatalf("deploy of a version that does not start = %v", err)
	}
	sub("back after a failed start", "lib v1\n", "inner v2\n")

	if got := readFile(t, filepath.Join(root, "shared", "data", "builds")); got != strings.Repeat("KEY=kept\n", 4) {
		t.Errorf("the builds saw .env as %q", got)
	}
	// The first deploy started green, the others their next; the failed
	// one did not get that far, and the rollback started blue again.
	if got := readFile(t, filepath.Join(root, "shared", "data", "starts")); got != "v1\nv1\nv2\nv2\n" {
		t.Errorf("data/starts = %q", got)
	}
}

// TestBuildInterrupted: Ctrl-C during a phase-one build (of a release,
// or of next's new copy) ends the deploy within mage's window, over real
// SSH too; the host finishes the build by itself and releases its lock
// (in blue/green, removing the copy nothing will use). What serves is as
// it was.
func TestBuildInterrupted(t *testing.T) {
	for _, mode := range []deploy.Mode{deploy.ModeRelease, deploy.ModeBlueGreen} {
		t.Run(string(mode), func(t *testing.T) {
			f := newFixture(t, sshdtest.Options{})
			root := f.target
			opts := f.options()
			opts.Stage.Mode = mode
			opts.Stage.Build = "echo quick > built.txt"
			opts.Stage.Start = "cp index.html running.log"
			f.deploy(t, opts)
			link := "current"
			if mode == deploy.ModeBlueGreen {
				link = "next"
			}
			served := inode(t, filepath.Join(root, link))
			v1 := headIn(filepath.Join(root, link))
			before := lookBG(t, root)
			dir := t.TempDir()
			marker, finished := filepath.Join(dir, "building"), filepath.Join(dir, "finished")
			slow := opts
			slow.Stage.Build = "touch " + marker + " && sleep 15 && touch " + finished
			f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			ctx, cancel := sshdtest.CancelWhenExists(marker, 20*time.Second)
			defer cancel()
			start := time.Now()
			_, err := deploy.Run(ctx, slow)
			if ctx.Err() == nil {
				t.Fatalf("the build never started: %v", err)
			}
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("Run returned %s after it started; the build was waited for", took)
			}
			if !errors.Is(err, deploy.ErrInterrupted) {
				t.Errorf("Run = %v, want ErrInterrupted", err)
			}
			lock := filepath.Join(root, "repo", "gitric", "lock")
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
				if _, err := os.Lstat(lock); err != nil {
					break
				}
			}
			if _, err := os.Lstat(lock); err == nil {
				t.Fatal("the host did not release its lock")
			}
			if _, err := os.Stat(finished); err != nil {
				t.Errorf("the build did not run to its end: %v", err)
			}
			if headIn(filepath.Join(root, link)) != v1 || inode(t, filepath.Join(root, link)) != served || readFile(t, filepath.Join(root, link, "running.log")) != "v1\n" {
				t.Errorf("%s changed", link)
			}
			if mode == deploy.ModeBlueGreen {
				if h := lookBG(t, root); h.next != before.next || h.liveIno != before.liveIno || len(h.extra) > 0 {
					t.Errorf("the host changed: %+v, before %+v", h, before)
				}
				worktrees(t, root)
			}
			// The next deploy goes through.
			f.deploy(t, opts)
			if got := headIn(filepath.Join(root, link)); got != f.src.Head(t) {
				t.Errorf("after the next deploy %s is on %.7s", link, got)
			}
		})
	}
}
