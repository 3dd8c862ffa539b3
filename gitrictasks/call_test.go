package gitrictasks

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/gitric/gitric/gitrictasks/internal/console"
)

// TestHintsFromTheCall runs the targets of a call as mage would, up to its
// first action, and checks what the action makes of the call: the hints
// in the form the user typed, or a refusal of setters after the action.
func TestHintsFromTheCall(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		run        func() // the targets before the first action, as mage runs them
		allowDirty string
		unlock     string
		err        string
	}{
		{"root import", []string{"prod", "deploy"}, Prod,
			"mage allowDirty prod deploy", "mage prod unlock", ""},
		{"namespace", []string{"gitric:prod", "gitric:deploy"}, Prod,
			"mage gitric:allowDirty gitric:prod gitric:deploy", "mage gitric:prod gitric:unlock", ""},
		{"namespace as typed", []string{"GITRIC:Prod", "gitric:Deploy"}, Prod,
			"mage gitric:allowDirty GITRIC:Prod gitric:Deploy", "mage GITRIC:Prod gitric:unlock", ""},
		{"modifiers and the magefile's own targets", []string{"build", "gitric:ref", "v1", "gitric:prod", "gitric:only", "web", "gitric:deploy", "notify"},
			func() { Ref("v1"); Prod(); Only("web") },
			"mage build gitric:allowDirty gitric:ref v1 gitric:prod gitric:only web gitric:deploy notify",
			"mage build gitric:prod gitric:only web gitric:unlock", ""},
		{"a magefile target named like ours", []string{"status", "gitric:prod", "gitric:deploy"}, Prod,
			"mage status gitric:allowDirty gitric:prod gitric:deploy", "mage status gitric:prod gitric:unlock", ""},
		{"stage by name", []string{"gitric:stage", "prod", "gitric:deploy"}, func() { Stage("prod") },
			"mage gitric:allowDirty gitric:stage prod gitric:deploy", "mage gitric:stage prod gitric:unlock", ""},
		{"a stage from the magefile's own target", []string{"staging", "gitric:deploy"}, func() { Stage("prod") },
			"mage staging gitric:allowDirty gitric:deploy", "mage staging gitric:unlock", ""},
		{"a modifier between two actions is the second one's", []string{"prod", "deploy", "allowDirty", "local", "deploy"}, Prod,
			"mage allowDirty prod deploy allowDirty local deploy", "mage prod unlock", ""},
		{"the action in a target of the magefile", []string{"ship"}, Prod,
			"mage allowDirty prod deploy", "mage prod unlock", ""},
		{"modifier after the action", []string{"gitric:prod", "gitric:deploy", "gitric:allowDirty"}, Prod,
			"", "", "gitric:allowDirty comes after gitric:deploy in this call, and mage runs targets in the order given, so it would apply to nothing; put it before gitric:deploy: mage gitric:allowDirty gitric:prod gitric:deploy"},
		{"case does not hide it", []string{"GITRIC:prod", "gitric:Deploy", "Gitric:ForcePush"}, Prod,
			"", "", "put it before gitric:Deploy: mage Gitric:ForcePush GITRIC:prod gitric:Deploy"},
		{"stage after the action", []string{"deploy", "prod"}, func() {},
			"", "", "prod comes after deploy in this call, and mage runs targets in the order given, so it would apply to nothing; put it before deploy: mage prod deploy"},
		{"after the last of two actions", []string{"prod", "deploy", "local", "deploy", "forcePush", "ref", "v2"}, Prod,
			"", "", "forcePush, ref v2 come after deploy in this call, and mage runs targets in the order given, so they would apply to nothing; put them before deploy: mage prod deploy forcePush ref v2 local deploy"},
		{"no stage", []string{"gitric:deploy"}, func() {},
			"", "", "put a stage target before deploy, e.g. mage gitric:prod gitric:deploy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reset(t)
			SetStage("prod", StageConfig{Hosts: []string{"deploy@web1"}, Path: "app"})
			current.args = tt.args
			tt.run()
			set("deploy", func(*state) {})
			opts, cleanup, err := current.options(context.Background(), console.New(io.Discard, console.Options{}))
			defer cleanup()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v\nwant one that says %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if opts.Hints.AllowDirty != tt.allowDirty {
				t.Errorf("allowDirty hint %q, want %q", opts.Hints.AllowDirty, tt.allowDirty)
			}
			if tt.unlock != "" && opts.Hints.Unlock != tt.unlock {
				t.Errorf("unlock hint %q, want %q", opts.Hints.Unlock, tt.unlock)
			}
		})
	}
}

// TestModifierThatDoesNothing refuses a modifier given to an action that
// does not read it, and says the call without it; a modifier of an
// earlier action in the same call is that action's.
func TestModifierThatDoesNothing(t *testing.T) {
	tests := []struct {
		name string
		args []string
		run  func() // the targets before the action, as mage runs them
		act  string
		err  string // "" for none
	}{
		{"allowDirty before rollback", []string{"allowDirty", "prod", "rollback"}, func() { AllowDirty(); Prod() }, "rollback",
			"allowDirty does nothing for rollback (it reads only, acceptNew, ref, message, discardEdits and the stage); without it: mage prod rollback"},
		{"namespaced, two of them", []string{"gitric:forcePush", "gitric:prod", "gitric:ignoreUntracked", "gitric:status"}, func() { ForcePush(); Prod(); IgnoreUntracked() }, "status",
			"gitric:forcePush, gitric:ignoreUntracked do nothing for status (it reads only, acceptNew, ref and the stage); without them: mage gitric:prod gitric:status"},
		{"ref for status compares", []string{"ref", "v1", "prod", "status"}, func() { Ref("v1"); Prod() }, "status", ""},
		{"message for a rollback", []string{"message", "why", "prod", "rollback"}, func() { Message("why"); Prod() }, "rollback", ""},
		{"the deploy's modifier is not the status's", []string{"allowDirty", "prod", "deploy", "status"}, func() { AllowDirty(); Prod(); set("deploy", func(*state) {}) }, "status", ""},
		{"deploy reads them all", []string{"allowDirty", "forcePush", "prod", "deploy"}, func() { AllowDirty(); ForcePush(); Prod() }, "deploy", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reset(t)
			SetStage("prod", StageConfig{Hosts: []string{"deploy@web1"}, Path: "app"})
			current.args = tt.args
			tt.run()
			set(tt.act, func(*state) {})
			_, cleanup, err := current.options(context.Background(), console.New(io.Discard, console.Options{}))
			defer cleanup()
			switch {
			case tt.err == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.err != "" && (!errors.Is(err, ErrNotApplicable) || !strings.Contains(err.Error(), tt.err)):
				t.Fatalf("err = %v\nwant ErrNotApplicable saying %q", err, tt.err)
			}
		})
	}
}

func TestLateSetterRefusedBeforeAnything(t *testing.T) {
	reset(t)
	current.args = []string{"local", "deploy", "allowDirty"}
	t.Chdir(t.TempDir()) // no repository: the local host would fail to start
	Local()
	if err := Deploy(context.Background()); !errors.Is(err, ErrOrder) {
		t.Fatalf("Deploy = %v, want ErrOrder", err)
	}
	if _, err := os.Stat(".gitric"); !os.IsNotExist(err) {
		t.Errorf("the refused call set up the local host: %v", err)
	}
}

func TestCommandLine(t *testing.T) {
	tests := []struct {
		args, want []string
	}{
		{[]string{"gitric:prod", "gitric:deploy"}, []string{"gitric:prod", "gitric:deploy"}},
		{[]string{"-v", "-t", "5m", "prod", "deploy"}, []string{"prod", "deploy"}},
		{[]string{"-t=5m", "--v", "prod"}, []string{"prod"}},
		{[]string{"--", "-odd", "deploy"}, []string{"-odd", "deploy"}},
		{nil, nil},
	}
	for _, tt := range tests {
		saved := os.Args
		os.Args = append([]string{"/home/u/.magefile/3f2a"}, tt.args...)
		got := commandLine()
		os.Args = saved
		if !slices.Equal(got, tt.want) {
			t.Errorf("commandLine(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}
