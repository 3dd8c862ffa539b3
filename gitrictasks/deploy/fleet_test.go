package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/remote"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// fleet is a local repository and n real sshd acting as distinct hosts
// (see sshdtest.Fleet): the same relative stage path is a different
// repository on each.
type fleet struct {
	*sshdtest.Fleet
	src   *repotest.Repo
	hosts []*sshdtest.Server
	out   *sshdtest.Buffer
}

// failBuildOnHost1 deploys with a build that fails on host 1 alone (the
// stage's Build exits 7 where $HOME/broken exists) and checks that the
// deploy says so: the host, the build's last lines, no host changed.
func (f *fleet) failBuildOnHost1(t *testing.T, opts deploy.DeployOptions) {
	t.Helper()
	broken := filepath.Join(f.Homes[1], "broken")
	if err := os.WriteFile(broken, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(broken)
	start := len(f.out.String())
	_, err := runDeploy(t, opts)
	var he *deploy.HostError
	if !errors.As(err, &he) || he.Step != "build" || !strings.Contains(err.Error(), "build failed (exit status 7)") {
		t.Fatalf("deploy with a failing build = %v", err)
	}
	if !strings.Contains(he.Host, f.hosts[1].Addr) {
		t.Errorf("the failure names %s, not host 1 (%s)", he.Host, f.hosts[1].Addr)
	}
	out := f.out.String()[start:]
	if !strings.Contains(out, "compiler says no on "+f.Homes[1]) || !strings.Contains(out, "no host was changed") {
		t.Errorf("output lacks the build's last lines or the verdict:\n%s", out)
	}
}

func newFleet(t *testing.T, n int) *fleet {
	t.Helper()
	sshdtest.Require(t)
	t.Parallel()
	f := &fleet{Fleet: sshdtest.StartFleet(t, n), src: repotest.New(t), out: &sshdtest.Buffer{}}
	f.hosts = f.Servers
	f.src.Commit(t, "v1", map[string]string{"index.html": "v1\n"})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("deploy output:\n%s", f.out.String())
		}
	})
	return f
}

func (f *fleet) options() deploy.DeployOptions {
	return deploy.DeployOptions{
		Options: deploy.Options{
			Stage: deploy.Stage{
				Name: "fleet", Hosts: f.Addresses(len(f.Servers)), Path: "app",
				// The "service": a file that exists while it runs.
				Stop:  "rm -f running",
				Start: "cp index.html running",
			},
			Dir: f.src.Dir,
			SSH: deploy.SSH{KnownHostsFiles: []string{f.KnownHostsFile}, IdentityFiles: []string{f.ClientKeyFile}, IdentitiesOnly: true},
			Out: f.out,
			Who: "tester@ci",
		},
	}
}

func (f *fleet) target(i int) string { return filepath.Join(f.Homes[i], "app") }

func (f *fleet) head(t *testing.T, i int) string {
	t.Helper()
	out, err := repotest.Git(f.target(i), "rev-parse", "-q", "--verify", "HEAD")
	if err != nil {
		return ""
	}
	return out
}

// running is what the host's "service" serves, "" when it is stopped.
func (f *fleet) running(i int) string {
	b, _ := os.ReadFile(filepath.Join(f.target(i), "running"))
	return string(b)
}

func (f *fleet) audit(t *testing.T, i int) []deploy.AuditEntry {
	t.Helper()
	file, err := os.Open(filepath.Join(f.target(i), ".git", "gitric", "audit.log"))
	if err != nil {
		return nil
	}
	defer file.Close()
	var out []deploy.AuditEntry
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var e deploy.AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("host %d: audit line %q: %v", i, sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

func (f *fleet) unlocked(t *testing.T) {
	t.Helper()
	for i := range f.hosts {
		// Lstat: the lock is a symlink to nothing.
		if _, err := os.Lstat(filepath.Join(f.target(i), ".git", "gitric", "lock")); err == nil {
			t.Errorf("host %d is still locked", i)
		}
	}
}

func TestFleetDeployAndAudit(t *testing.T) {
	f := newFleet(t, 4)
	opts := f.options()
	opts.Batch = "50%"
	v1 := f.src.Head(t)
	if _, err := deploy.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	res, err := deploy.Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.hosts {
		if f.head(t, i) != v2 || f.running(i) != "v2\n" {
			t.Errorf("host %d: HEAD %s serving %q", i, f.head(t, i), f.running(i))
		}
		if r := res.Hosts[i]; r.Outcome != deploy.OutcomeOK || r.From != v1 {
			t.Errorf("host %d: result %+v", i, r)
		}
		log := f.audit(t, i)
		if len(log) != 2 {
			t.Fatalf("host %d: %d audit lines, want 2", i, len(log))
		}
		if e := log[1]; e.Action != "deploy" || e.Result != "ok" || e.From != v1 || e.To != v2 || e.Who != "tester@ci" || e.DowntimeMS < 0 {
			t.Errorf("host %d: audit %+v", i, e)
		}
	}
	out := f.out.String()
	for _, want := range []string{"phase 1/2", "batch 1/2", "batch 2/2", "result"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	f.unlocked(t)
}

func TestFleetUnreachableHostChangesNothing(t *testing.T) {
	f := newFleet(t, 2)
	opts := f.options()
	opts.Stage.Hosts = append(opts.Stage.Hosts, "root@"+sshdtest.ClosedPort(t))
	_, err := deploy.Run(context.Background(), opts)
	if !errors.Is(err, remote.ErrUnreachable) {
		t.Fatalf("deploy with an unreachable host = %v", err)
	}
	for i := range f.hosts {
		if h := f.head(t, i); h != "" {
			t.Errorf("host %d was cut over to %s although another host failed to seed", i, h)
		}
		if log := f.audit(t, i); len(log) != 1 || log[0].Result != "aborted" {
			t.Errorf("host %d audit: %+v", i, log)
		}
	}
	f.unlocked(t)
	if !strings.Contains(f.out.String(), "no host was changed") {
		t.Errorf("output does not say nothing changed:\n%s", f.out)
	}
}

func TestFleetFailedBatchRollsBack(t *testing.T) {
	f := newFleet(t, 4)
	opts := f.options()
	// The start command fails on host 1 for v2 only.
	opts.Stage.Start = `if grep -q v2 index.html && test -f "$HOME/broken"; then exit 1; fi; cp index.html running`
	v1 := f.src.Head(t)
	if _, err := deploy.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(f.Homes[1], "broken"), nil, 0o644)
	v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	res, err := deploy.Run(context.Background(), opts)
	if err == nil || !strings.Contains(err.Error(), "start command failed") {
		t.Fatalf("deploy with a failing start = %v", err)
	}
	want := []struct {
		head   string
		result deploy.Outcome
	}{{v2, "ok"}, {v1, "rolled-back"}, {v1, "aborted"}, {v1, "aborted"}}
	for i, w := range want {
		if h := f.head(t, i); h != w.head {
			t.Errorf("host %d on %.7s, want %.7s", i, h, w.head)
		}
		if res.Hosts[i].Outcome != w.result {
			t.Errorf("host %d result %q, want %q", i, res.Hosts[i].Outcome, w.result)
		}
		if log := f.audit(t, i); log[len(log)-1].Result != w.result {
			t.Errorf("host %d audit %+v", i, log[len(log)-1])
		}
	}
	for i, want := range []string{"v2\n", "v1\n", "v1\n", "v1\n"} {
		if got := f.running(i); got != want {
			t.Errorf("host %d serves %q, want %q", i, got, want)
		}
	}
	f.unlocked(t)
}

func TestFleetConcurrentDeploys(t *testing.T) {
	f := newFleet(t, 3)
	opts := f.options()
	opts.Stage.Stop = "sleep 1; rm -f running"
	if _, err := deploy.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := opts
			o.Out = &sshdtest.Buffer{}
			o.Who = fmt.Sprintf("deployer%d@ci", i)
			_, errs[i] = deploy.Run(context.Background(), o)
		}()
	}
	wg.Wait()
	var ok, locked int
	for _, err := range errs {
		var le *deploy.LockedError
		switch {
		case err == nil:
			ok++
		case errors.As(err, &le):
			locked++
			if !strings.Contains(err.Error(), "locked by deployer") || !strings.Contains(err.Error(), "since") {
				t.Errorf("lock refusal: %v", err)
			}
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || locked != 1 {
		t.Fatalf("%d deploys went through and %d were refused; want 1 and 1: %v", ok, locked, errs)
	}
	for i := range f.hosts {
		if f.head(t, i) != v2 || f.running(i) != "v2\n" {
			t.Errorf("host %d: HEAD %.7s serving %q", i, f.head(t, i), f.running(i))
		}
	}
	f.unlocked(t)
}

func TestFleetInterruptDuringCutover(t *testing.T) {
	f := newFleet(t, 4)
	opts := f.options()
	opts.Stage.Stop = "sleep 0.3; rm -f running"
	v1 := f.src.Head(t)
	if _, err := deploy.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	ctx, cancel := context.WithCancel(context.Background())
	out := &sshdtest.Buffer{}
	opts.Out = out
	// Cancel (as Ctrl-C does) once the first batch is cutting over.
	go func() {
		for !strings.Contains(out.String(), "batch 1/4") {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	_, err := deploy.Run(ctx, opts)
	if !errors.Is(err, deploy.ErrInterrupted) {
		t.Fatalf("interrupted deploy = %v, want ErrInterrupted", err)
	}
	var moved int
	for i := range f.hosts {
		h, r := f.head(t, i), f.running(i)
		switch {
		case h == v2 && r == "v2\n":
			moved++
		case h == v1 && r == "v1\n":
		default:
			t.Errorf("host %d half-deployed: HEAD %.7s serving %q", i, h, r)
		}
	}
	if moved == 0 || moved == len(f.hosts) {
		t.Errorf("%d of %d hosts moved; the interrupt should stop the rollout part way", moved, len(f.hosts))
	}
	f.unlocked(t)
}

func TestFleetStatusAndRollback(t *testing.T) {
	f := newFleet(t, 2)
	opts := f.options()
	v1 := f.src.Head(t)
	if _, err := deploy.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	v2 := f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	if _, err := deploy.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	rep, err := deploy.Status(context.Background(), statusOptions(opts))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range rep.Hosts {
		if s.Head != v2 || !s.Current || s.Subject != "v2" || s.Deployed == nil || s.Deployed.Who != "tester@ci" {
			t.Errorf("status %+v", s)
		}
	}
	if !strings.Contains(rep.Verdict, "no drift") {
		t.Errorf("verdict %q", rep.Verdict)
	}

	if _, err := deploy.Rollback(context.Background(), rollbackOptions(opts)); err != nil {
		t.Fatal(err)
	}
	for i := range f.hosts {
		if f.head(t, i) != v1 || f.running(i) != "v1\n" {
			t.Errorf("host %d after rollback: %.7s %q", i, f.head(t, i), f.running(i))
		}
		log := f.audit(t, i)
		if e := log[len(log)-1]; e.Action != "rollback" || e.From != v2 || e.To != v1 || e.Result != "ok" {
			t.Errorf("host %d rollback audit %+v", i, e)
		}
	}
	// Nothing older to go back to now.
	if _, err := deploy.Rollback(context.Background(), rollbackOptions(opts)); !errors.Is(err, deploy.ErrNoPrevious) {
		t.Errorf("second rollback = %v, want ErrNoPrevious", err)
	}
	// Drift: one host moved by hand.
	f.hosts[1].Run(t, "cd "+f.target(1)+" && git reset -q --hard "+v2+" && echo edit >> index.html")
	rep, err = deploy.Status(context.Background(), statusOptions(opts))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rep.Verdict, "DRIFT") || !strings.Contains(rep.Verdict, "local modifications") {
		t.Errorf("verdict %q", rep.Verdict)
	}
	f.unlocked(t)
}

func TestUnlockStaleLock(t *testing.T) {
	f := newFleet(t, 1)
	opts := f.options()
	if _, err := deploy.Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	lock := filepath.Join(f.target(0), ".git", "gitric", "lock")
	os.Mkdir(lock, 0o755)
	os.WriteFile(filepath.Join(lock, "owner"), []byte("ghost@gone since 2020-01-01T00:00:00Z (deploy 1234567)\n"), 0o644)
	f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	_, err := deploy.Run(context.Background(), opts)
	if !errors.Is(err, deploy.ErrLocked) || !strings.Contains(err.Error(), "locked by ghost@gone since 2020-01-01T00:00:00Z (deploy 1234567)") {
		t.Fatalf("deploy over a stale lock = %v", err)
	}
	rep, _ := deploy.Status(context.Background(), statusOptions(opts))
	if rep.Hosts[0].Locked == "" {
		t.Errorf("status does not show the lock")
	}
	if err := deploy.Unlock(context.Background(), opts.Options); err != nil {
		t.Fatal(err)
	}
	if _, err := deploy.Run(context.Background(), opts); err != nil {
		t.Fatalf("deploy after unlock: %v", err)
	}
}
