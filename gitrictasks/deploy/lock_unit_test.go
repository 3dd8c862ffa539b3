package deploy

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A dead deploy's lock is taken over even when a taker died holding the
// takeover guard: the guard, held for a moment by a live taker, is cleared.
func TestUnitStaleTakeoverGuard(t *testing.T) {
	f := newUnitFleet(t, 1)
	opts := f.options()
	if _, err := Run(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	g := filepath.Join(f.target(0), ".git", "gitric")
	// pid 2^22+1 is above Linux's pid_max: no such process.
	if err := os.Symlink("pid=4194305 boot= ghost@gone since 2020 (deploy x)", filepath.Join(g, "lock")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(g, "lock.takeover"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := Run(ctx, opts); err != nil {
		t.Fatalf("deploy over a dead lock with a leftover guard: %v", err)
	}
	if got := f.running(0); got != "v2\n" {
		t.Errorf("the host serves %q, want v2", got)
	}
	log := f.audit(t, 0, ModeInPlace)
	var took bool
	for _, e := range log {
		took = took || e.Result == OutcomeTookOver
	}
	if !took {
		t.Errorf("the audit log does not record the take-over: %+v", log)
	}
	for _, name := range []string{"lock", "lock.takeover"} {
		if _, err := os.Lstat(filepath.Join(g, name)); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", name, err)
		}
	}
}
