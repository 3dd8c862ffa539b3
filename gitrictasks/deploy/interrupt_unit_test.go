package deploy

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// Ctrl-C during a phase-one build (which goes on by design) still ends the
// deploy within mage's 5 seconds, with nothing cut over.
func TestUnitInterruptDuringBuild(t *testing.T) {
	f := newUnitFleet(t, 1)
	opts := f.options()
	opts.Stage.Mode = ModeRelease
	marker := filepath.Join(t.TempDir(), "building")
	opts.Stage.Build = "touch " + marker + " && sleep 30"
	runInterrupted(t, opts, marker)
	if h := f.head(t, 0, ModeRelease); h != "" {
		t.Errorf("the host was cut over to %s", h)
	}
}

// In blue/green with a Build too (the host finishing the build by itself
// is TestBlueGreenBuildInterrupted's, over sshd: this link kills it).
func TestUnitInterruptDuringBlueGreenBuild(t *testing.T) {
	f := newUnitFleet(t, 1)
	opts := f.options()
	opts.Stage.Mode = ModeBlueGreen
	if _, err := Run(context.Background(), opts); err != nil {
		t.Fatalf("first deploy: %v", err)
	}
	v1 := f.head(t, 0, ModeBlueGreen)
	marker := filepath.Join(t.TempDir(), "building")
	opts.Stage.Build = "touch " + marker + " && sleep 30"
	opts.DiscardEdits = true // the service's file in next
	f.src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
	runInterrupted(t, opts, marker)
	if h := f.head(t, 0, ModeBlueGreen); h != v1 {
		t.Errorf("next was cut over to %s", h)
	}
}

// runInterrupted deploys with opts, interrupting the deploy (as Ctrl-C
// does) once the file marker exists, the build's sign that it runs: Run
// must return ErrInterrupted without waiting for the build, and within 40
// seconds in any case.
func runInterrupted(t *testing.T, opts DeployOptions, marker string) {
	t.Helper()
	ctx, cancel := sshdtest.CancelWhenExists(marker, 20*time.Second)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, opts)
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(40 * time.Second):
		t.Fatal("Run did not return after the interrupt")
	}
	if ctx.Err() == nil {
		t.Fatalf("the build never started: %v", err)
	}
	if took := time.Since(start); took > 25*time.Second {
		t.Fatalf("Run returned %s after it started; the build was waited for", took)
	}
	if !errors.Is(err, ErrInterrupted) {
		t.Errorf("Run = %v, want ErrInterrupted", err)
	}
}
