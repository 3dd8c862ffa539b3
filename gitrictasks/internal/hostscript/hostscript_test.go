package hostscript

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireTool skips without the tool, except under CI=true.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI needs it)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

// The bootstrap runs the script under /bin/sh, byte for byte, whatever the
// login shell that parses the command line.
func TestCommandInEveryLoginShell(t *testing.T) {
	t.Parallel()
	script := beginMarker + "\nprintf '%s|' \"$0\" 'it'\\''s' \"a\\\\b\" '$x' \"`echo bq`\" '!x' 'semi;colon'\n" + endMarker + "\n"
	want := "/bin/sh|it's|a\\b|$x|bq|!x|semi;colon|"
	for _, shell := range []string{"bash", "dash", "zsh", "fish", "tcsh", "busybox"} {
		t.Run(shell, func(t *testing.T) {
			t.Parallel()
			path := requireTool(t, shell)
			args := []string{"-c", Command("")}
			if shell == "busybox" {
				args = append([]string{"sh"}, args...)
			}
			cmd := exec.Command(path, args...)
			cmd.Stdin = strings.NewReader(script)
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
			out, err := cmd.CombinedOutput()
			if err != nil || string(out) != want {
				t.Fatalf("%s ran %q (%v), want %q", shell, out, err, want)
			}
		})
	}
}

// A login script that eats the first line of stdin is caught before
// anything of the script runs.
func TestCommandRefusesAConsumedScript(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("/bin/sh", "-c", "read x; "+Command(""))
	cmd.Stdin = strings.NewReader(beginMarker + "\necho ran\n" + endMarker + "\n")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != ExitConsumed || strings.Contains(string(out), "ran") {
		t.Fatalf("consumed script: %q, %v", out, err)
	}
}

func TestDecoder(t *testing.T) {
	t.Parallel()
	const tok = "gitric-tok"
	tests := []struct {
		name    string
		stream  string
		words   []string // words Next must return, in order
		wantErr error
		before  string
	}{
		{"clean", "\ngitric-tok hello 2\ngitric-tok head none\ngitric-tok ready\n", []string{"head", "ready"}, nil, "\n"},
		{"junk with a newline", "Welcome!\n\ngitric-tok hello 2\ngitric-tok ready\n", []string{"ready"}, nil, "Welcome!\n\n"},
		{"junk without a newline", "\x1b]0;title\x07no newline\ngitric-tok hello 2\ngitric-tok ready\n", []string{"ready"}, nil, "\x1b]0;title\x07no newline\n"},
		{"a fake protocol line before hello", "other-tok head 0000\n\ngitric-tok hello 2\ngitric-tok head none\n", []string{"head"}, nil, "other-tok head 0000\n\n"},
		{"garbage after hello", "\ngitric-tok hello 2\nPK\x03\x04binary\n", nil, ErrProtocol, ""},
		{"a fake line after hello", "\ngitric-tok hello 2\nother-tok head 0000\n", nil, ErrProtocol, ""},
		{"a partial line at the end", "\ngitric-tok hello 2\ngitric-tok hea", nil, ErrProtocol, ""},
		{"the end instead of a word", "\ngitric-tok hello 2\n", nil, ErrProtocol, ""},
		{"an error word", "\ngitric-tok hello 2\ngitric-tok error path cannot create /x as bob\n", nil, ErrScript, ""},
		{"CRLF lines", "\r\ngitric-tok hello 2\r\ngitric-tok ready\r\n", []string{"ready"}, nil, "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewDecoder(strings.NewReader(tt.stream), tok)
			if err := d.Hello(); err != nil {
				t.Fatalf("Hello: %v", err)
			}
			if tt.before != "" && d.Before() != tt.before {
				t.Errorf("Before = %q, want %q", d.Before(), tt.before)
			}
			for _, w := range tt.words {
				l, err := d.Next(w)
				if err != nil || l.Word != w {
					t.Fatalf("Next = %+v, %v; want %s", l, err, w)
				}
			}
			if tt.wantErr == nil {
				return
			}
			_, err := d.Next("a word")
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Next = %v, want %v", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "\x03") {
				t.Errorf("the error holds raw bytes: %q", err)
			}
			var se *ScriptError
			if errors.As(err, &se) && (se.Code != "path" || se.Message != "cannot create /x as bob") {
				t.Errorf("ScriptError = %+v", se)
			}
		})
	}
}

func TestHelloWithoutScript(t *testing.T) {
	t.Parallel()
	d := NewDecoder(strings.NewReader("This account is currently not available.\n"), "gitric-tok")
	if err := d.Hello(); !errors.Is(err, io.EOF) {
		t.Fatalf("Hello = %v, want EOF", err)
	}
	if !strings.Contains(d.Before(), "not available") {
		t.Errorf("Before = %q", d.Before())
	}
}

// The status action reads a host and writes nothing, also where there is
// nothing yet.
func TestStatusOnAnEmptyHost(t *testing.T) {
	t.Parallel()
	requireTool(t, "git")
	home := t.TempDir()
	v := Vars{Action: Status, Path: "app", Mode: "inplace", AuditLog: true}
	tok := NewToken()
	cmd := exec.Command("/bin/sh", "-c", Command(""))
	cmd.Env = append(os.Environ(), "HOME="+home)
	cmd.Stdin = strings.NewReader(v.Script(tok))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	d := NewDecoder(strings.NewReader(string(out)), tok)
	if err := d.Hello(); err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{WordHead, WordReady} {
		if _, err := d.Expect(w); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(home, "app")); !os.IsNotExist(err) {
		t.Errorf("status created the path (%v)", err)
	}
}

func TestScriptIsSmall(t *testing.T) {
	v := Vars{Action: Deploy, Path: "app", StopWait: time.Second}
	// The bootstrap's read takes it byte by byte (some 30 ms for 29 KiB
	// under dash), so it must stay small.
	if n := len(v.Script(NewToken())); n > 26<<10 {
		t.Errorf("the script is %d bytes; it travels with every run", n)
	}
}
