package gitrictasks

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/console"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

// reset gives a test a fresh state, as a new mage process has.
func reset(t *testing.T) {
	t.Helper()
	saved := current
	current = &state{stages: map[string]StageConfig{}}
	t.Cleanup(func() { current = saved })
}

func TestOptionsFromTargets(t *testing.T) {
	prod := StageConfig{Hosts: []string{"deploy@web1"}, Path: "app"}
	tests := []struct {
		name    string
		targets func()
		env     map[string]string
		check   func(t *testing.T, o deploy.DeployOptions)
		err     string
	}{
		{"no stage", func() {}, nil, nil, "mage prod deploy"},
		{"undefined stage", func() { Stage("staging") }, nil, nil, `SetStage("staging"`},
		{"prod", Prod, nil, func(t *testing.T, o deploy.DeployOptions) {
			if o.Stage.Name != "prod" || o.Stage.Hosts[0] != "deploy@web1" || o.AllowDirty || o.ForcePush {
				t.Errorf("%+v", o)
			}
			if o.Hints.AllowDirty != "mage allowDirty prod deploy" || o.Hints.ForcePush != "mage forcePush prod deploy" {
				t.Errorf("hints %+v", o.Hints)
			}
		}, ""},
		{"flags carry into hints", func() { AllowDirty(); Ref("v1"); Only("web"); Prod() }, nil, func(t *testing.T, o deploy.DeployOptions) {
			if !o.AllowDirty || o.Rev != "v1" || o.Role != "web" {
				t.Errorf("%+v", o)
			}
			if o.Hints.ForcePush != "mage allowDirty forcePush ref v1 prod only web deploy" {
				t.Errorf("hint %q", o.Hints.ForcePush)
			}
		}, ""},
		{"environment", Prod, map[string]string{"GITRIC_HOSTS": "a@h1, b@h2:2222", "GITRIC_BATCH": "50%", "GITRIC_PARALLEL": "3", "GITRIC_OUTPUT": "json", "GITRIC_IDENTITY": "/k"},
			func(t *testing.T, o deploy.DeployOptions) {
				if strings.Join(o.Stage.Hosts, ",") != "a@h1,b@h2:2222" || o.Batch != "50%" || o.Parallel != 3 || !o.JSON || o.SSH.IdentityFiles[0] != "/k" {
					t.Errorf("%+v", o)
				}
			}, ""},
		{"bad parallel", Prod, map[string]string{"GITRIC_PARALLEL": "many"}, nil, "GITRIC_PARALLEL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reset(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			SetStage("prod", prod)
			tt.targets()
			opts, cleanup, err := current.options(context.Background(), console.New(io.Discard, console.Options{}))
			defer cleanup()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one that says %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, opts)
		})
	}
}

func TestNoStageIsAnError(t *testing.T) {
	reset(t)
	if err := Deploy(context.Background()); !errors.Is(err, ErrNoStage) {
		t.Fatalf("Deploy without a stage = %v", err)
	}
}

// TestLocalModes deploys twice to the embedded local host in every mode,
// through the targets, as `mage local deploy` does.
func TestLocalModes(t *testing.T) {
	for _, mode := range []deploy.Mode{deploy.ModeInPlace, deploy.ModeRelease, deploy.ModeBlueGreen} {
		t.Run(string(mode), func(t *testing.T) {
			reset(t)
			src := repotest.New(t)
			src.Commit(t, "v1", map[string]string{"index.html": "v1\n"})
			t.Chdir(src.Dir)
			SetStage(LocalStage, StageConfig{Path: "site", Mode: mode, Start: "cat index.html > served"})
			Local()
			if err := Deploy(context.Background()); err != nil {
				t.Fatal(err)
			}
			src.Commit(t, "v2", map[string]string{"index.html": "v2\n"})
			if err := Deploy(context.Background()); err != nil {
				t.Fatal(err)
			}
			serving := map[deploy.Mode]string{deploy.ModeInPlace: ".", deploy.ModeRelease: "current", deploy.ModeBlueGreen: "next"}[mode]
			b, err := os.ReadFile(filepath.Join(src.Dir, ".gitric", "local", "site", serving, "served"))
			if err != nil || string(b) != "v2\n" {
				t.Fatalf("%s serves %q (%v)", serving, b, err)
			}
			if out, _ := repotest.Git(src.Dir, "status", "--porcelain"); out != "" {
				t.Errorf("the local host dirtied the working copy: %s", out)
			}
			if err := Status(context.Background()); err != nil {
				t.Errorf("status: %v", err)
			}
		})
	}
}
