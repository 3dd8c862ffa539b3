package deploy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

// Commits for audit histories: a..e sources, d1, d2 gitric's deploy
// commits made of them.
var (
	hA  = strings.Repeat("a", 40)
	hB  = strings.Repeat("b", 40)
	hC  = strings.Repeat("c", 40)
	hD1 = strings.Repeat("d", 39) + "1"
	hD2 = strings.Repeat("d", 39) + "2"
)

func dep(to string, r Outcome) AuditEntry { return AuditEntry{Action: ActionDeploy, To: to, Result: r} }
func rb(to string, r Outcome) AuditEntry {
	return AuditEntry{Action: ActionRollback, To: to, Result: r}
}
func derived(to, deployed string, a Action) AuditEntry {
	return AuditEntry{Action: a, To: to, Deployed: deployed, Result: OutcomeOK}
}

func TestUnitRollbackTarget(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name      string
		log       []AuditEntry
		top, prev string
	}{
		{name: "empty"},
		{name: "one deploy", log: []AuditEntry{dep(hA, OutcomeOK)}, top: hA},
		{name: "two deploys", log: []AuditEntry{dep(hA, OutcomeOK), dep(hB, OutcomeOK)}, top: hB, prev: hA},
		{name: "deploy after a rollback", log: []AuditEntry{dep(hA, OutcomeOK), dep(hB, OutcomeOK), rb(hA, OutcomeOK), dep(hC, OutcomeOK)}, top: hC, prev: hA},
		{name: "rollback pops", log: []AuditEntry{dep(hA, OutcomeOK), dep(hB, OutcomeOK), dep(hC, OutcomeOK), rb(hB, OutcomeOK)}, top: hB, prev: hA},
		{name: "two rollbacks", log: []AuditEntry{dep(hA, OutcomeOK), dep(hB, OutcomeOK), dep(hC, OutcomeOK), rb(hB, OutcomeOK), rb(hA, OutcomeOK)}, top: hA},
		{name: "failed, refused, aborted and rolled-back deploys do not count", log: []AuditEntry{
			dep(hA, OutcomeOK), dep(hB, OutcomeFailed), dep(hB, OutcomeRefused), dep(hB, OutcomeAborted), dep(hC, OutcomeRolledBack),
		}, top: hA},
		{name: "a failed rollback pops nothing", log: []AuditEntry{dep(hA, OutcomeOK), dep(hB, OutcomeOK), rb(hA, OutcomeFailed)}, top: hB, prev: hA},
		{name: "a rollback to a commit of an empty stack", log: []AuditEntry{rb(hA, OutcomeOK), dep(hB, OutcomeOK)}, top: hB, prev: hA},
		{name: "swaps and take-overs do not count", log: []AuditEntry{
			dep(hA, OutcomeOK), {Action: ActionSwap, Result: OutcomeOK}, dep(hB, OutcomeOK), {Action: ActionDeploy, Result: OutcomeTookOver},
		}, top: hB, prev: hA},
		{name: "derived commits are what the host checked out", log: []AuditEntry{derived(hA, hD1, ActionDeploy), derived(hB, hD2, ActionDeploy)}, top: hD2, prev: hD1},
		{name: "a rollback to a named older deploy", log: []AuditEntry{dep(hA, OutcomeOK), dep(hB, OutcomeOK), dep(hC, OutcomeOK), rb(hA, OutcomeOK)}, top: hA},
		{name: "a rollback to a derived commit", log: []AuditEntry{
			derived(hA, hD1, ActionDeploy), dep(hB, OutcomeOK), dep(hC, OutcomeOK), derived(hA, hD1, ActionRollback),
		}, top: hD1},
		{name: "a rollback to a commit the log no longer holds", log: []AuditEntry{dep(hB, OutcomeOK), dep(hC, OutcomeOK), rb(hA, OutcomeOK)}, top: hA, prev: hC},
		{name: "an old rollback entry without To pops one", log: []AuditEntry{dep(hA, OutcomeOK), dep(hB, OutcomeOK), dep(hC, OutcomeOK), rb("", OutcomeOK)}, top: hB, prev: hA},
	} {
		top, prev := rollbackTarget(c.log)
		if top != c.top || prev != c.prev {
			t.Errorf("%s: rollbackTarget = %.7s, %.7s; want %.7s, %.7s", c.name, top, prev, c.top, c.prev)
		}
	}
}

func TestUnitDeployedOf(t *testing.T) {
	t.Parallel()
	log := []AuditEntry{
		dep(hA, OutcomeOK),
		derived(hB, hD1, ActionDeploy),
		derived(hB, hD2, ActionDeploy), // the newest deploy of b wins
		dep(hC, OutcomeFailed),
		rb(hC, OutcomeOK), // a rollback is no deploy of c
	}
	for _, c := range []struct {
		source, want string
		ok           bool
	}{
		{hA, hA, true},
		{hB, hD2, true},
		{hC, "", false},
		{hD1, "", false}, // a deploy commit is not a source
		{"", "", false},
	} {
		got, ok := deployedOf(log, c.source)
		if got != c.want || ok != c.ok {
			t.Errorf("deployedOf(%.7s) = %.7s, %v; want %.7s, %v", c.source, got, ok, c.want, c.ok)
		}
	}
}

func TestUnitSourceFor(t *testing.T) {
	t.Parallel()
	log := []AuditEntry{dep(hA, OutcomeOK), derived(hB, hD1, ActionDeploy), derived(hC, hD2, ActionRollback)}
	for _, c := range []struct{ checkout, want string }{
		{hA, hA},  // not derived: itself
		{hD1, hB}, // derived: its source
		{hD2, hC}, // whichever entry recorded it
		{hB, hB},  // a source is its own
		{hC, hC},
	} {
		if got := sourceFor(log, plumbing.NewHash(c.checkout)); got.String() != c.want {
			t.Errorf("sourceFor(%.7s) = %.7s, want %.7s", c.checkout, got, c.want)
		}
	}
}

// TestUnitRollbackFlow rolls a local host back for real: one step, to a
// named older deploy, and the refusal of a host whose audit log disagrees
// with its HEAD.
func TestUnitRollbackFlow(t *testing.T) {
	t.Parallel()
	f := newUnitFleet(t, 1)
	ctx := context.Background()
	deployed := func(msg string) string {
		t.Helper()
		c := f.src.Head(t)
		if msg != "" {
			c = f.src.Commit(t, msg, map[string]string{"index.html": msg + "\n"})
		}
		if _, err := Run(ctx, f.options()); err != nil {
			t.Fatalf("deploy %s: %v", msg, err)
		}
		return c
	}
	v1, _, _ := deployed(""), deployed("v2"), deployed("v3")
	rollback := func(rev string) error {
		t.Helper()
		_, err := Rollback(ctx, RollbackOptions{Options: f.options().Options, Rev: rev})
		return err
	}
	// From v3 straight back to v1, by name.
	if err := rollback(v1); err != nil {
		t.Fatalf("rollback to v1: %v", err)
	}
	if got := f.head(t, 0, ModeInPlace); got != v1 || f.running(0) != "v1\n" {
		t.Fatalf("after a rollback to v1 the host is on %.7s serving %q", got, f.running(0))
	}
	// The log knows the host is on v1, its first deploy: nothing before it.
	if err := rollback(""); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("rollback from the first deploy: %v, want %v", err, ErrNoPrevious)
	}
	v4 := deployed("v4")
	if err := rollback(""); err != nil {
		t.Fatalf("rollback from v4: %v", err)
	}
	if got := f.head(t, 0, ModeInPlace); got != v1 {
		t.Fatalf("after a rollback from v4 the host is on %.7s, want v1 %.7s", got, v1)
	}
	// Changed outside gitric: the host's HEAD is not the log's top.
	if _, err := repotest.Git(f.target(0), "reset", "-q", "--hard", v4); err != nil {
		t.Fatal(err)
	}
	res, err := Rollback(ctx, RollbackOptions{Options: f.options().Options})
	var he *HostError
	if !errors.Is(err, ErrAuditMismatch) || !errors.As(err, &he) || he.Host != "h1" {
		t.Fatalf("rollback of a host changed outside gitric: %v, want %v from h1", err, ErrAuditMismatch)
	}
	if res.Hosts[0].Outcome != OutcomeRefused {
		t.Errorf("outcome %q, want refused", res.Hosts[0].Outcome)
	}
	if got := f.head(t, 0, ModeInPlace); got != v4 {
		t.Errorf("the refused host moved to %.7s", got)
	}
	if !strings.Contains(err.Error(), v1[:7]) || !strings.Contains(err.Error(), v4[:7]) {
		t.Errorf("the error names neither the log's %.7s nor the host's %.7s: %v", v1, v4, err)
	}
}
