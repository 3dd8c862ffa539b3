package deploy_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// opsBound bounds each fleet operation test: a hang is a failure.
const opsBound = 2 * time.Minute

// boundedContext is the test's context, cancelled after opsBound.
func boundedContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), opsBound)
	t.Cleanup(cancel)
	return ctx
}

// treeState is every entry under a directory, recursively and .git
// included, by path relative to it: type and mode, size, modification
// time (nanoseconds), and the content's hash or the symlink's target. Two
// equal states mean nothing was written there, not even git's index.
type treeState map[string]string

// stateOf reads dir's treeState, leaving out the paths skip names.
func stateOf(t *testing.T, dir string, skip func(rel string) bool) treeState {
	t.Helper()
	s := treeState{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if skip != nil && rel != "." && skip(filepath.ToSlash(rel)) {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", info.Mode(), info.Size(), info.ModTime().UnixNano())
		switch {
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case info.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		}
		s[filepath.ToSlash(rel)] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", dir, err)
	}
	return s
}

// diff lists what changed from s to after.
func (s treeState) diff(after treeState) []string {
	var out []string
	for p, d := range s {
		switch a, ok := after[p]; {
		case !ok:
			out = append(out, "removed "+p)
		case a != d:
			out = append(out, fmt.Sprintf("changed %s: %s => %s", p, d, a))
		}
	}
	for p := range after {
		if _, ok := s[p]; !ok {
			out = append(out, "added "+p)
		}
	}
	slices.Sort(out)
	return out
}

// outsideState skips gitric's own state directory (the lock that a
// refused operation takes and releases, the audit log it appends to).
func outsideState(rel string) bool {
	return rel == ".git/gitric" || rel == "repo/gitric"
}

// snapshotAll reads every host's treeState.
func (f *fleet) snapshotAll(t *testing.T, skip func(string) bool) []treeState {
	t.Helper()
	out := make([]treeState, len(f.hosts))
	for i := range f.hosts {
		out[i] = stateOf(t, f.target(i), skip)
	}
	return out
}

// unchanged fails the test for every host whose state is not before's.
func (f *fleet) unchanged(t *testing.T, before []treeState, skip func(string) bool) {
	t.Helper()
	for i, b := range before {
		if d := b.diff(stateOf(t, f.target(i), skip)); len(d) > 0 {
			t.Errorf("host %d changed:\n%s", i, strings.Join(d, "\n"))
		}
	}
}

// hostOptions is opts limited to the hosts with the given indexes.
func (f *fleet) hostOptions(opts deploy.DeployOptions, idx ...int) deploy.DeployOptions {
	all := f.Addresses(len(f.hosts))
	opts.Stage.Hosts = nil
	for _, i := range idx {
		opts.Stage.Hosts = append(opts.Stage.Hosts, all[i])
	}
	return opts
}

func mustRun(t *testing.T, ctx context.Context, opts deploy.DeployOptions) *deploy.Result {
	t.Helper()
	res, err := deploy.Run(ctx, opts)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	return res
}

// linesAbout are the output lines that name host.
func linesAbout(out, host string) string {
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, host) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// waitFor polls cond every 10ms until it holds, failing the test after
// opsBound.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(opsBound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFleetOpsPlan plans a deploy on three hosts in three states: current,
// one commit behind, and edited on the host. Each gets its own verdict,
// the edited one's refusal is the plan's error, and no byte, mode or
// modification time changes on any host, .git/index included.
func TestFleetOpsPlan(t *testing.T) {
	f := newFleet(t, 3)
	ctx := boundedContext(t)
	opts := f.options()
	v1 := f.src.Head(t)
	mustRun(t, ctx, opts)
	v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	mustRun(t, ctx, f.hostOptions(opts, 0))
	// An edit by hand, which leaves the index's stat data stale: a plain
	// git status would rewrite .git/index.
	if err := os.WriteFile(filepath.Join(f.target(2), "index.html"), []byte("edited on the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := f.snapshotAll(t, nil)

	out := &sshdtest.Buffer{}
	opts.Out = out
	p, err := deploy.MakePlan(ctx, opts)
	var se *deploy.ServerEditsError
	if !errors.As(err, &se) || !errors.Is(err, deploy.ErrServerEdits) {
		t.Fatalf("plan = %v, want the edited host's ServerEditsError", err)
	}
	if p == nil || len(p.Hosts) != 3 {
		t.Fatalf("plan %+v", p)
	}
	if se.Host != p.Hosts[2].Host || !slices.ContainsFunc(se.Paths, func(s string) bool { return strings.Contains(s, "index.html") }) {
		t.Errorf("refusal names host %s, paths %v; want %s, index.html", se.Host, se.Paths, p.Hosts[2].Host)
	}
	if !p.Refused() || p.Commit.Hash != v2 {
		t.Errorf("plan refused %v, commit %s", p.Refused(), p.Commit.Hash)
	}

	tests := []struct {
		name     string
		from     string
		already  bool
		refusals int
		says     []string
	}{
		{"current", v2, true, 0, []string{"already on " + v2[:7]}},
		{"behind", v1, false, 0, []string{v1[:7] + " -> " + v2[:7] + ": 1 commit(s) (v2), 1 file(s) changed, +1 -1", "would run stop: rm -f running (downtime)", "would run switch", "would run start: cp index.html running"}},
		{"edited", v1, false, 1, []string{"refused:", "index.html", "working copy edited on the host"}},
	}
	for i, tt := range tests {
		h := p.Hosts[i]
		if h.From != tt.from || h.To != v2 || h.Already != tt.already || len(h.Refusals) != tt.refusals {
			t.Errorf("%s host: from %.7s to %.7s already %v, %d refusal(s) %v", tt.name, h.From, h.To, h.Already, len(h.Refusals), h.Refusals)
		}
		lines := linesAbout(out.String(), h.Host)
		for _, s := range tt.says {
			if !strings.Contains(lines, s) {
				t.Errorf("%s host: the plan does not say %q:\n%s", tt.name, s, lines)
			}
		}
	}
	if h := p.Hosts[1]; h.Commits != 1 || h.Files != 1 || h.Bytes <= 0 || len(h.Steps) == 0 {
		t.Errorf("behind host plan %+v", h)
	}
	if !strings.Contains(out.String(), "the deploy would be refused") {
		t.Errorf("no refused verdict:\n%s", out)
	}
	f.unchanged(t, before, nil)

	// The deploy itself refuses the edited host, and its audit log says so.
	out = &sshdtest.Buffer{}
	opts.Out = out
	if _, err := deploy.Run(ctx, f.hostOptions(opts, 2)); !errors.As(err, &se) {
		t.Fatalf("deploy to the edited host = %v, want ServerEditsError", err)
	}
	log := f.audit(t, 2)
	if e := log[len(log)-1]; e.Result != deploy.OutcomeRefused || e.Reason != "working copy edited on the host" || e.To != v2 {
		t.Errorf("audit of the refused deploy: %+v", e)
	}
	if strings.Contains(out.String(), "could not write the audit log") {
		t.Errorf("the audit log was not written:\n%s", out)
	}
}

// TestFleetOpsReleases lists the history of five deploys and a rollback:
// newest first, the rollback's commit live, every message kept.
func TestFleetOpsReleases(t *testing.T) {
	f := newFleet(t, 2)
	ctx := boundedContext(t)
	opts := f.options()
	commits := []string{f.src.Head(t)}
	for i := 2; i <= 5; i++ {
		commits = append(commits, f.src.Commit(t, fmt.Sprintf("v%d", i), map[string]string{"index.html": fmt.Sprintf("v%d\n", i)}))
	}
	for i, c := range commits {
		o := opts
		o.Rev, o.Message = c, fmt.Sprintf("release %d", i+1)
		mustRun(t, ctx, o)
	}
	o := opts
	o.Message = "v5 is broken"
	if _, err := deploy.Rollback(ctx, rollbackOptions(o)); err != nil {
		t.Fatal(err)
	}
	out := &sshdtest.Buffer{}
	opts.Out = out
	rels, err := deploy.Releases(ctx, opts.Options)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		commit, subject string
		action          deploy.Action
		message         string
		live            bool
	}
	want := []row{{commits[3], "v4", deploy.ActionRollback, "v5 is broken", true}}
	for i := 4; i >= 0; i-- {
		want = append(want, row{commits[i], fmt.Sprintf("v%d", i+1), deploy.ActionDeploy, fmt.Sprintf("release %d", i+1), false})
	}
	if len(rels) != 2 {
		t.Fatalf("%d hosts", len(rels))
	}
	for i, r := range rels {
		if r.Err != nil {
			t.Errorf("host %d: %v", i, r.Err)
		}
		var got []row
		for j, d := range r.Deployments {
			got = append(got, row{d.Commit.Hash, d.Commit.Subject, d.Action, d.Message, d.Live})
			if d.Result != deploy.OutcomeOK || d.Who != "tester@ci" || d.Time.IsZero() {
				t.Errorf("host %d deployment %d: %+v", i, j, d)
			}
			if j > 0 && d.Time.After(r.Deployments[j-1].Time) {
				t.Errorf("host %d: deployment %d is newer than the one listed before it", i, j)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("host %d releases:\n got %v\nwant %v", i, got, want)
		}
		lines := linesAbout(out.String(), r.Host)
		if !strings.Contains(lines, "* ") || !strings.Contains(lines, "rollback by tester@ci: ok (v5 is broken)") {
			t.Errorf("host %d: the listing does not mark the live rollback:\n%s", i, lines)
		}
	}
}

// TestFleetOpsRollbackToTag rolls back to a tag two deploys back, and
// refuses, changing nothing, targets the hosts never had.
func TestFleetOpsRollbackToTag(t *testing.T) {
	f := newFleet(t, 2)
	ctx := boundedContext(t)
	opts := f.options()
	v1 := f.src.Head(t)
	f.src.Git(t, "tag", "v1")
	mustRun(t, ctx, opts)
	f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	mustRun(t, ctx, opts)
	v3 := f.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
	mustRun(t, ctx, opts)
	never := f.src.Commit(t, "v4, never deployed", map[string]string{"index.html": "v4\n"})

	for _, rev := range []string{never, "no-such-tag"} {
		t.Run("refused "+rev, func(t *testing.T) {
			before := f.snapshotAll(t, outsideState)
			o := opts
			o.Rev = rev
			_, err := deploy.Rollback(ctx, rollbackOptions(o))
			if !errors.Is(err, deploy.ErrNeverDeployed) {
				t.Fatalf("rollback to %s = %v, want ErrNeverDeployed", rev, err)
			}
			f.unchanged(t, before, outsideState)
			f.unlocked(t)
		})
	}

	o := opts
	o.Rev = "v1"
	res, err := deploy.Rollback(ctx, rollbackOptions(o))
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.hosts {
		if f.head(t, i) != v1 || f.running(i) != "v1\n" {
			t.Errorf("host %d after the rollback to v1: %.7s serving %q", i, f.head(t, i), f.running(i))
		}
		if r := res.Hosts[i]; r.From != v3 || r.To != v1 || r.Outcome != deploy.OutcomeOK {
			t.Errorf("host %d result %+v", i, r)
		}
		log := f.audit(t, i)
		if e := log[len(log)-1]; e.Action != deploy.ActionRollback || e.From != v3 || e.To != v1 || e.Result != deploy.OutcomeOK {
			t.Errorf("host %d audit %+v", i, e)
		}
	}
	f.unlocked(t)
}

// TestFleetOpsRollbackPrunedRelease refuses, in release mode with Keep 2,
// a rollback to a release that was pruned, before any host changes.
func TestFleetOpsRollbackPrunedRelease(t *testing.T) {
	f := newFleet(t, 2)
	ctx := boundedContext(t)
	opts := f.options()
	opts.Stage.Mode, opts.Stage.Keep = deploy.ModeRelease, 2
	f.src.Git(t, "tag", "v1")
	mustRun(t, ctx, opts)
	v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	mustRun(t, ctx, opts)
	f.src.Git(t, "tag", "v2")
	v3 := f.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
	mustRun(t, ctx, opts)
	for i := range f.hosts {
		if rels, _ := filepath.Glob(filepath.Join(f.target(i), "releases", "*")); len(rels) != 2 {
			t.Fatalf("host %d keeps %d releases, want 2: %v", i, len(rels), rels)
		}
	}
	before := f.snapshotAll(t, outsideState)
	o := opts
	o.Rev = "v1"
	_, err := deploy.Rollback(ctx, rollbackOptions(o))
	if !errors.Is(err, deploy.ErrNoPrevious) || !strings.Contains(err.Error(), "pruned") {
		t.Fatalf("rollback to a pruned release = %v, want ErrNoPrevious (pruned)", err)
	}
	f.unchanged(t, before, outsideState)
	live := func(i int) string {
		h, _ := repotest.Git(filepath.Join(f.target(i), "current"), "rev-parse", "HEAD")
		return h
	}
	for i := range f.hosts {
		if live(i) != v3 {
			t.Errorf("host %d is on %.7s", i, live(i))
		}
	}
	// The release before it is kept: a rollback to it goes through.
	o.Rev = "v2"
	if _, err := deploy.Rollback(ctx, rollbackOptions(o)); err != nil {
		t.Fatal(err)
	}
	for i := range f.hosts {
		if live(i) != v2 {
			t.Errorf("host %d is on %.7s after the rollback to v2", i, live(i))
		}
	}
	f.unlocked(t)
}

// slowDeploy starts a deploy of rev whose start command takes two
// seconds, and returns once it is cutting over (and so holds every
// host's lock); wait returns its error.
func (f *fleet) slowDeploy(t *testing.T, ctx context.Context, opts deploy.DeployOptions, rev string) (out *sshdtest.Buffer, wait func() error) {
	t.Helper()
	out = &sshdtest.Buffer{}
	opts.Rev, opts.Out = rev, out
	opts.Stage.Start = "sleep 2; cp index.html running"
	errc := make(chan error, 1)
	go func() {
		_, err := deploy.Run(ctx, opts)
		errc <- err
	}()
	waitFor(t, "the first deploy's cutover", func() bool { return strings.Contains(out.String(), "phase 2/2") })
	var once sync.Once
	var err error
	return out, func() error {
		once.Do(func() { err = <-errc })
		return err
	}
}

// TestFleetOpsLockWait: a deploy that meets a live deploy's lock with
// LockWait waits for it to end, then deploys.
func TestFleetOpsLockWait(t *testing.T) {
	f := newFleet(t, 2)
	ctx := boundedContext(t)
	opts := f.options()
	mustRun(t, ctx, opts)
	v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	v3 := f.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
	first, wait := f.slowDeploy(t, ctx, opts, v2)
	t.Cleanup(func() { wait() })

	out := &sshdtest.Buffer{}
	o := opts
	o.Rev, o.LockWait, o.Out, o.Who = v3, 30*time.Second, out, "second@ci"
	start := time.Now()
	res, err := deploy.Run(ctx, o)
	if err != nil {
		t.Fatalf("deploy with LockWait: %v\n%s", err, out)
	}
	if err := wait(); err != nil {
		t.Fatalf("the first deploy: %v\n%s", err, first)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("the second deploy took %v: it did not wait", took)
	}
	if !strings.Contains(out.String(), "waiting up to 30s") {
		t.Errorf("the output does not say it waits:\n%s", out)
	}
	for i := range f.hosts {
		if f.head(t, i) != v3 || f.running(i) != "v3\n" || res.Hosts[i].From != v2 {
			t.Errorf("host %d: %.7s serving %q, result %+v", i, f.head(t, i), f.running(i), res.Hosts[i])
		}
		log := f.audit(t, i)
		var tos []string
		for _, e := range log[1:] {
			tos = append(tos, e.To+" "+string(e.Result))
		}
		if want := []string{v2 + " ok", v3 + " ok"}; !slices.Equal(tos, want) {
			t.Errorf("host %d audit after the first deploy: %v, want %v", i, tos, want)
		}
	}
	f.unlocked(t)
}

// TestFleetOpsMessage: a deploy's message is in its lock (a concurrent
// deploy refused by it shows it), in the audit log and in Releases.
func TestFleetOpsMessage(t *testing.T) {
	f := newFleet(t, 1)
	ctx := boundedContext(t)
	opts := f.options()
	mustRun(t, ctx, opts)
	v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	const msg = "hotfix for #123"
	o := opts
	o.Message = msg
	first, wait := f.slowDeploy(t, ctx, o, v2)
	t.Cleanup(func() { wait() })

	o = opts
	o.Who = "other@ci"
	_, err := deploy.Run(ctx, o)
	var le *deploy.LockedError
	if !errors.As(err, &le) || !errors.Is(err, deploy.ErrLocked) {
		t.Fatalf("a deploy during another = %v, want LockedError", err)
	}
	if !strings.Contains(le.Owner, "tester@ci") || !strings.HasSuffix(le.Owner, ": "+msg) || strings.Contains(le.Owner, "pid=") {
		t.Errorf("lock owner %q does not name the deploy and its message", le.Owner)
	}
	if err := wait(); err != nil {
		t.Fatalf("the first deploy: %v\n%s", err, first)
	}
	log := f.audit(t, 0)
	var found bool
	for _, e := range log {
		if e.To == v2 && e.Result == deploy.OutcomeOK {
			found = true
			if e.Message != msg {
				t.Errorf("audit entry %+v lacks the message", e)
			}
		}
		if e.Who == "other@ci" && (e.Result != deploy.OutcomeRefused || e.Message != "") {
			t.Errorf("the refused deploy's audit entry: %+v", e)
		}
	}
	if !found {
		t.Errorf("no audit entry of the deploy: %+v", log)
	}
	out := &sshdtest.Buffer{}
	opts.Out = out
	rels, err := deploy.Releases(ctx, opts.Options)
	if err != nil {
		t.Fatal(err)
	}
	if d := rels[0].Deployments[0]; d.Commit.Hash != v2 || d.Message != msg || !d.Live {
		t.Errorf("newest release %+v", d)
	}
	if !strings.Contains(out.String(), "("+msg+")") {
		t.Errorf("the listing lacks the message:\n%s", out)
	}
}

// TestFleetOpsHooks: Before gets the plan, AfterHost each host's result,
// After the whole result, in that order; a failing Before aborts the
// deploy with nothing changed.
func TestFleetOpsHooks(t *testing.T) {
	f := newFleet(t, 2)
	ctx := boundedContext(t)
	opts := f.options()
	v1 := f.src.Head(t)
	mustRun(t, ctx, opts)
	v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	hosts := f.Addresses(2)
	for i, h := range hosts {
		hosts[i] = strings.TrimPrefix(h, f.hosts[i].User+"@")
	}

	var mu sync.Mutex
	var calls []string
	record := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, fmt.Sprintf(format, args...))
	}
	hooks := func(before error) deploy.Hooks {
		return deploy.Hooks{
			Before: func(ctx context.Context, p *deploy.Plan) error {
				var hs []string
				for _, h := range p.Hosts {
					hs = append(hs, fmt.Sprintf("%s %.7s->%.7s already=%v steps=%d", h.Host, h.From, h.To, h.Already, len(h.Steps)))
				}
				record("before %.7s %s", p.Commit.Hash, strings.Join(hs, ", "))
				return before
			},
			AfterHost: func(ctx context.Context, r deploy.HostResult) error {
				record("afterhost %s %.7s->%.7s %s", r.Host, r.From, r.To, r.Outcome)
				return errors.New("the chat is down") // reported, not fatal
			},
			After: func(ctx context.Context, r *deploy.Result, err error) {
				var hs []string
				for _, h := range r.Hosts {
					hs = append(hs, fmt.Sprintf("%s %s", h.Host, h.Outcome))
				}
				record("after %.7s %s err=%v", r.Commit.Hash, strings.Join(hs, ", "), err != nil)
			},
		}
	}

	o := opts
	o.Hooks = hooks(nil)
	if _, err := deploy.Run(ctx, o); err != nil {
		t.Fatal(err)
	}
	// Stop, switch, start: the steps of a host that has a deploy.
	want := []string{
		fmt.Sprintf("before %.7s %s %.7s->%.7s already=false steps=3, %s %.7s->%.7s already=false steps=3", v2, hosts[0], v1, v2, hosts[1], v1, v2),
		fmt.Sprintf("afterhost %s %.7s->%.7s ok", hosts[0], v1, v2),
		fmt.Sprintf("afterhost %s %.7s->%.7s ok", hosts[1], v1, v2),
		fmt.Sprintf("after %.7s %s ok, %s ok err=false", v2, hosts[0], hosts[1]),
	}
	if !slices.Equal(calls, want) {
		t.Errorf("hook calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(f.out.String(), "the AfterHost hook failed: the chat is down") {
		t.Errorf("the AfterHost error is not reported:\n%s", f.out)
	}

	calls = nil
	v3 := f.src.Commit(t, "v3", map[string]string{"index.html": "v3\n"})
	veto := errors.New("change freeze")
	o.Hooks = hooks(veto)
	res, err := deploy.Run(ctx, o)
	if !errors.Is(err, deploy.ErrHook) || !errors.Is(err, veto) {
		t.Fatalf("deploy vetoed by Before = %v, want ErrHook and the hook's error", err)
	}
	want = []string{
		fmt.Sprintf("before %.7s %s %.7s->%.7s already=false steps=3, %s %.7s->%.7s already=false steps=3", v3, hosts[0], v2, v3, hosts[1], v2, v3),
		fmt.Sprintf("after %.7s %s aborted, %s aborted err=true", v3, hosts[0], hosts[1]),
	}
	if !slices.Equal(calls, want) {
		t.Errorf("hook calls of the vetoed deploy:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	for i := range f.hosts {
		if f.head(t, i) != v2 || f.running(i) != "v2\n" || res.Hosts[i].Outcome != deploy.OutcomeAborted {
			t.Errorf("host %d after the veto: %.7s serving %q, result %+v", i, f.head(t, i), f.running(i), res.Hosts[i])
		}
		log := f.audit(t, i)
		if e := log[len(log)-1]; e.To != v3 || e.Result != deploy.OutcomeAborted {
			t.Errorf("host %d audit %+v, want aborted", i, e)
		}
	}
	f.unlocked(t)
}

// TestFleetOpsSubdir deploys a monorepo's subdirectory: the host tree is
// that subdirectory only, gitric's commit of it is the same wherever it is
// made, and a commit outside it finds the hosts already there.
func TestFleetOpsSubdir(t *testing.T) {
	f := newFleet(t, 2)
	ctx := boundedContext(t)
	source := f.src.Commit(t, "api v1", map[string]string{
		"services/api/main.txt": "api v1\n", "services/api/conf/app.conf": "port=1\n", "web/index.html": "web\n",
	})
	opts := f.options()
	opts.Stage.Subdir = "services/api"
	opts.Stage.Start = "cp main.txt running"

	res := mustRun(t, ctx, f.hostOptions(opts, 0))
	if r := res.Hosts[0]; r.To != source || r.From != "" || r.Outcome != deploy.OutcomeOK {
		t.Errorf("result %+v", r)
	}
	files, err := repotest.Git(f.target(0), "ls-files")
	if err != nil || files != "conf/app.conf\nmain.txt" {
		t.Fatalf("host tree %q (%v), want the subdirectory only", files, err)
	}
	checkout := f.head(t, 0)
	if checkout == source || f.running(0) != "api v1\n" {
		t.Fatalf("host on %.7s serving %q", checkout, f.running(0))
	}
	if e := f.audit(t, 0)[0]; e.To != source || e.Deployed != checkout {
		t.Errorf("audit %+v: want to the source, deployed the checkout", e)
	}
	// Made again from scratch, for the other host: the same commit.
	for _, ref := range strings.Fields(f.src.Git(t, "for-each-ref", "--format=%(refname)", "refs/gitric/")) {
		f.src.Git(t, "update-ref", "-d", ref)
	}
	mustRun(t, ctx, f.hostOptions(opts, 1))
	if got := f.head(t, 1); got != checkout {
		t.Errorf("the second derivation checked out %.7s, the first %.7s", got, checkout)
	}

	outside := f.src.Commit(t, "web only", map[string]string{"web/index.html": "web 2\n"})
	out := &sshdtest.Buffer{}
	opts.Out = out
	res = mustRun(t, ctx, opts)
	for i, r := range res.Hosts {
		if !r.Skipped || r.Outcome != deploy.OutcomeOK || f.head(t, i) != checkout {
			t.Errorf("host %d after a commit outside the subdirectory: result %+v, on %.7s", i, r, f.head(t, i))
		}
	}
	if !strings.Contains(out.String(), "already on "+outside[:7]) {
		t.Errorf("the output does not say already there:\n%s", out)
	}
}

// TestFleetOpsArtifacts builds a Go binary locally for a host that has no
// Go toolchain: the binary runs there, a new source commit that leaves it
// as it was does not send it again, and a rollback brings the old one
// back.
func TestFleetOpsArtifacts(t *testing.T) {
	f := newFixture(t, sshdtest.Options{ExtraConfig: []string{"SetEnv PATH=/usr/bin:/bin"}, FastShell: true})
	ctx := boundedContext(t)
	mainGo := func(greeting string) string {
		return "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"" + greeting + "\") }\n"
	}
	s1 := f.src.Commit(t, "app v1", map[string]string{
		"go.mod": "module example.com/app\n\ngo 1.26\n", "cmd/app/main.go": mainGo("hello v1"),
	})
	opts := f.options()
	opts.Stage.Artifacts = &deploy.Artifacts{Command: "go build -o bin/app ./cmd/app", Paths: []string{"bin/app"}}
	if got := f.srv.Run(t, "command -v go || echo none"); strings.TrimSpace(got) != "none" {
		t.Fatalf("the host has a Go toolchain: %s", got)
	}
	app := filepath.Join(f.target, "bin", "app")
	runs := func(want string) {
		t.Helper()
		if got := strings.TrimSpace(f.srv.Run(t, app)); got != want {
			t.Errorf("the host's bin/app says %q, want %q", got, want)
		}
	}
	blob := func() string {
		t.Helper()
		b, err := repotest.Git(f.target, "rev-parse", "HEAD:bin/app")
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	res := f.deploy(t, opts)
	runs("hello v1")
	binary := blob()
	if r := res.Hosts[0]; r.To != s1 || r.Bytes < 100_000 {
		t.Errorf("first deploy: result %+v, want to %.7s with the binary sent", r, s1)
	}
	d1 := f.targetHead(t)

	s2 := f.src.Commit(t, "docs", map[string]string{"README": "the app\n"})
	res = f.deploy(t, opts)
	if r := res.Hosts[0]; r.To != s2 || r.From != s1 || r.Bytes > 20_000 {
		t.Errorf("second deploy: result %+v, want from %.7s to %.7s without the binary", r, s1, s2)
	}
	if blob() != binary {
		t.Errorf("the binary changed with a commit that does not touch it")
	}
	runs("hello v1")
	d2 := f.targetHead(t)

	f.src.Commit(t, "app v2", map[string]string{"cmd/app/main.go": mainGo("hello v2")})
	f.deploy(t, opts)
	runs("hello v2")

	res, err := deploy.Rollback(ctx, rollbackOptions(opts))
	if err != nil {
		t.Fatal(err)
	}
	runs("hello v1")
	if got := f.targetHead(t); got != d2 || got == d1 || res.Hosts[0].To != s2 {
		t.Errorf("rolled back to %.7s (result to %.7s), want gitric's commit %.7s of %.7s", got, res.Hosts[0].To, d2, s2)
	}
}

// TestFleetOpsTakeOver: a lock whose holder on the host is dead is taken
// over at once by a deploy, which says so, records it in the audit log
// before its own line, and deploys.
func TestFleetOpsTakeOver(t *testing.T) {
	f := newFleet(t, 2)
	ctx := boundedContext(t)
	opts := f.options()
	mustRun(t, ctx, opts)
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		t.Skipf("no boot id here: %v", err)
	}
	owner := fmt.Sprintf("pid=%d boot=%s ghost@gone since 2026-01-01T00:00:00Z (deploy 1234567)", dead.Process.Pid, strings.TrimSpace(string(boot)))
	if err := os.Symlink(owner, filepath.Join(f.target(0), ".git", "gitric", "lock")); err != nil {
		t.Fatal(err)
	}
	v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	mustRun(t, ctx, opts)
	if !strings.Contains(f.out.String(), "took over the lock of a deploy that is gone: ghost@gone") {
		t.Errorf("the output does not say the lock was taken over:\n%s", f.out)
	}
	log := f.audit(t, 0)
	var got []string
	for _, e := range log[1:] {
		got = append(got, string(e.Result)+" "+e.Reason)
	}
	if want := []string{"took-over stale lock of ghost@gone since 2026-01-01T00:00:00Z (deploy 1234567)", "ok "}; !slices.Equal(got, want) {
		t.Errorf("host 0 audit %q, want %q", got, want)
	}
	for i := range f.hosts {
		if f.head(t, i) != v2 {
			t.Errorf("host %d on %.7s", i, f.head(t, i))
		}
	}
	f.unlocked(t)
}
