package deploy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitric/gitric/gitrictasks/internal/hostscript"
)

// TestUnitAbortChangesNothing fails phase one in each of its ways on three
// local hosts: no host is cut over (no service command runs anywhere), the
// host that failed says so, and the others' audit logs say aborted.
func TestUnitAbortChangesNothing(t *testing.T) {
	t.Parallel()
	errHook := errors.New("change freeze")
	for _, c := range []struct {
		name   string
		mode   Mode
		setup  func(t *testing.T, f *unitFleet, o *DeployOptions)
		failed string // the host that failed, "" for none
		want   error  // errors.Is the deploy's error
		in     string // and its text holds this
	}{
		{
			name: "a path that cannot be created", failed: "h2", want: hostscript.ErrScript, in: "cannot create the repository path",
			setup: func(t *testing.T, f *unitFleet, o *DeployOptions) {
				// A file where the deploy root would go.
				if err := os.WriteFile(f.target(1), []byte("in the way\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "a failing Before hook", want: ErrHook, in: "change freeze",
			setup: func(t *testing.T, f *unitFleet, o *DeployOptions) {
				o.Hooks.Before = func(ctx context.Context, p *Plan) error {
					if len(p.Hosts) != 3 {
						t.Errorf("Before got %d hosts", len(p.Hosts))
					}
					return errHook
				}
			},
		},
		{
			name: "a failing run-once command", failed: "h1", in: "the run-once command failed (exit status 3)",
			setup: func(t *testing.T, f *unitFleet, o *DeployOptions) { o.Stage.Once = "exit 3" },
		},
		{
			name: "a failing build on one host (release mode)", mode: ModeRelease, failed: "h2", in: "the build failed (exit status 1)",
			setup: func(t *testing.T, f *unitFleet, o *DeployOptions) { o.Stage.Build = `test "$HOST" != h2` },
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newUnitFleet(t, 3)
			opts := f.options()
			opts.Stage.Mode = c.mode
			ran := filepath.Join(t.TempDir(), "ran")
			opts.Stage.Stop = "echo stop $HOST >>" + ran
			opts.Stage.Start = "echo start $HOST >>" + ran
			opts.Stage.HostEnv = map[string]map[string]string{}
			for _, n := range f.names {
				opts.Stage.HostEnv[n] = map[string]string{"HOST": n}
			}
			c.setup(t, f, &opts)
			res, err := Run(context.Background(), opts)
			if err == nil {
				t.Fatal("the deploy succeeded")
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("error %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.in) {
				t.Errorf("error %q lacks %q", err, c.in)
			}
			var he *HostError
			if c.failed != "" && (!errors.As(err, &he) || he.Host != c.failed) {
				t.Errorf("error %v is not %s's", err, c.failed)
			}
			if b, err := os.ReadFile(ran); err == nil {
				t.Errorf("service commands ran:\n%s", b)
			}
			for i, h := range res.Hosts {
				if got := f.head(t, i, c.mode); got != "" {
					t.Errorf("%s is on %.7s", h.Host, got)
				}
				if h.Host == c.failed {
					if h.Outcome != OutcomeFailed || h.Err == nil {
						t.Errorf("%s: outcome %q, error %v; want failed", h.Host, h.Outcome, h.Err)
					}
					continue
				}
				if h.Outcome != OutcomeAborted {
					t.Errorf("%s: outcome %q, want aborted", h.Host, h.Outcome)
				}
				log := f.audit(t, i, c.mode)
				if len(log) == 0 || log[len(log)-1].Result != OutcomeAborted || log[len(log)-1].Who != "tester@unit" {
					t.Errorf("%s: audit log %+v, want an aborted entry", h.Host, log)
				}
			}
			if c.mode == ModeRelease {
				for i := range f.names {
					if dirs, _ := filepath.Glob(filepath.Join(f.target(i), "releases", "*")); len(dirs) > 0 {
						t.Errorf("h%d keeps releases %v", i+1, dirs)
					}
				}
			}
			if !strings.Contains(f.out.String(), "no host was changed") {
				t.Errorf("the output does not say no host was changed")
			}
		})
	}
}
