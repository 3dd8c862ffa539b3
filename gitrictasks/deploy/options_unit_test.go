package deploy

import (
	"errors"
	"testing"
)

// Values that reach the host script unquoted, or an rm -rf in a release,
// are refused before anything is contacted.
func TestUnitValidateHostBound(t *testing.T) {
	base := func() Options {
		return Options{Stage: Stage{Name: "s", Hosts: []string{"h"}, Path: "app", Mode: ModeRelease}}
	}
	tests := []struct {
		name string
		edit func(*Options)
		ok   bool
	}{
		{"plain env", func(o *Options) { o.Stage.Env = map[string]string{"PORT": "8080; not code"} }, true},
		{"env name with code", func(o *Options) { o.Stage.Env = map[string]string{"A=1; rm -rf ~; B": "x"} }, false},
		{"host env name", func(o *Options) { o.Stage.HostEnv = map[string]map[string]string{"h": {"$(id)": "x"}} }, false},
		{"secret name", func(o *Options) { o.Stage.Secrets = []string{"TOKEN", "a b"} }, false},
		{"shared file and dir", func(o *Options) { o.Stage.Shared = []string{".env", "data/", "log/app/"} }, true},
		{"shared outside", func(o *Options) { o.Stage.Shared = []string{"../../etc"} }, false},
		{"shared absolute", func(o *Options) { o.Stage.Shared = []string{"/etc/passwd"} }, false},
		{"shared dot", func(o *Options) { o.Stage.Shared = []string{"./"} }, false},
		{"shared unclean", func(o *Options) { o.Stage.Shared = []string{"a/../../b"} }, false},
		{"shared .git", func(o *Options) { o.Stage.Shared = []string{".git/hooks"} }, false},
		{"shared newline", func(o *Options) { o.Stage.Shared = []string{"a\nb"} }, false},
		{"http check", func(o *Options) { o.Stage.HTTPCheck = "http://127.0.0.1:8080/health" }, true},
		{"http check without scheme", func(o *Options) { o.Stage.HTTPCheck = "127.0.0.1:8080/health" }, false},
		{"http check other scheme", func(o *Options) { o.Stage.HTTPCheck = "file:///etc/passwd" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base()
			tt.edit(&o)
			err := o.Validate()
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("Validate = %v, want ErrInvalidOptions", err)
			}
		})
	}
}
