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
	script := frame("gitric-tok", "printf '%s|' \"$0\" 'it'\\''s' \"a\\\\b\" '$x' \"`echo bq`\" '!x' 'semi;colon'\n")
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

// headBin is a directory for PATH that holds only a head: the system's,
// busybox's, a shell script standing in for one, or none at all.
func headBin(t *testing.T, head string) string {
	t.Helper()
	bin := t.TempDir()
	switch {
	case head == "":
	case strings.HasPrefix(head, "#!"):
		if err := os.WriteFile(filepath.Join(bin, "head"), []byte(head), 0o755); err != nil {
			t.Fatal(err)
		}
	default:
		if err := os.Symlink(requireTool(t, head), filepath.Join(bin, "head")); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

// The bootstrap reads the script and not a byte more, with every sh that
// may be /bin/sh and every head: the line gitric writes after the script
// has said hello reaches the script. Where head has no -c, or there is no
// head, read takes over; a head that stops short stops the run.
func TestBootstrapReadsExactlyTheScript(t *testing.T) {
	t.Parallel()
	const tok = "gitric-tok"
	// A line like the end marker, inside a value, does not end the script;
	// the run's own end line does.
	body := "v='\n" + endMarker + "\n'\n" +
		"[ \"${" + bootVar + ":-}\" = 1 ] || exit 98\n" +
		"printf '%s hello " + Version + "\\n' \"$T\"\n" +
		"IFS= read -r x\n" +
		"printf 'got %s, %s\\n' \"$x\" \"$v\"\n"
	script := frame(tok, "T="+tok+"\n"+body)
	heads := []struct {
		name, head string
		works      bool
	}{
		{"GNU head", "head", true},
		{"busybox head", "busybox", true},
		{"no head", "", true},
		{"a head without -c", "#!/bin/sh\necho 'head: invalid option -- c' >&2\nexit 1\n", true},
		{"a head that stops short", "#!/bin/sh\nexec /bin/dd bs=1 count=40 2>/dev/null\n", false},
	}
	for _, sh := range []string{"dash", "bash", "busybox"} {
		for _, h := range heads {
			t.Run(sh+"/"+h.name, func(t *testing.T) {
				t.Parallel()
				path := requireTool(t, sh)
				args := []string{"-c", bootstrap()}
				if sh == "busybox" {
					args = append([]string{"sh"}, args...)
				}
				cmd := exec.Command(path, args...)
				cmd.Env = []string{"PATH=" + headBin(t, h.head), "HOME=" + t.TempDir()}
				stdin, d, stderr := startScript(t, cmd, script, tok)
				if !h.works {
					_ = stdin.Close()
					err := cmd.Wait()
					var ee *exec.ExitError
					if !errors.As(err, &ee) || ee.ExitCode() != ExitConsumed || d.Hello() == nil {
						t.Fatalf("exit %v (%s), want %d before hello", err, stderr.String(), ExitConsumed)
					}
					return
				}
				// As gitric does: nothing more until the script's hello.
				if err := d.Hello(); err != nil {
					t.Fatalf("hello: %v (%s)", err, stderr.String())
				}
				if _, err := io.WriteString(stdin, "after the script\n"); err != nil {
					t.Fatal(err)
				}
				_ = stdin.Close()
				rest, _ := io.ReadAll(d.Reader())
				if want := "got after the script, \n" + endMarker + "\n\n"; string(rest) != want {
					t.Fatalf("the script printed %q (%s), want %q", rest, stderr.String(), want)
				}
				if err := cmd.Wait(); err != nil {
					t.Fatalf("exit: %v (%s)", err, stderr.String())
				}
			})
		}
	}
}

// startScript starts cmd (a bootstrap, as sshd would run it) and writes
// script to its standard input, as gitric does; the session's standard
// input, the decoder of its output and its standard error are returned.
// cmd is killed, if it still runs, when the test ends.
func startScript(t *testing.T, cmd *exec.Cmd, script, tok string) (io.WriteCloser, *Decoder, *strings.Builder) {
	t.Helper()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if _, err := io.WriteString(stdin, script); err != nil {
		t.Fatal(err)
	}
	return stdin, NewDecoder(stdout, tok), stderr
}

// A login script that reads standard input, or a script that arrives
// incomplete, is caught before anything of the script runs.
func TestCommandRefusesAConsumedScript(t *testing.T) {
	t.Parallel()
	script := frame("gitric-tok", "echo ran\n")
	tests := []struct {
		name  string
		shell string // the login shell
		rc    string // its startup file's name and text, name=text
		stdin string
		head  bool // head on the PATH
	}{
		{name: "the first line read", shell: "sh", rc: "read x", stdin: script, head: true},
		{name: "part of the first line read", shell: "sh", rc: "/bin/dd bs=1 count=5 of=/dev/null 2>/dev/null", stdin: script, head: true},
		{name: "two lines read", shell: "sh", rc: "read x; read y", stdin: script, head: true},
		{name: "bashrc reads a line", shell: "bash", rc: ".bashrc=read x", stdin: script, head: true},
		{name: "zshenv reads a line", shell: "zsh", rc: ".zshenv=read x", stdin: script, head: true},
		{name: "incomplete", shell: "sh", stdin: script[:len(script)-20], head: true},
		{name: "incomplete, no head", shell: "sh", stdin: script[:len(script)-20]},
		{name: "only the first line", shell: "sh", stdin: script[:strings.Index(script, "\n")+1], head: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := requireTool(t, tt.shell)
			home := t.TempDir()
			env := []string{"HOME=" + home, "ZDOTDIR=" + home}
			env = append(env, "PATH="+headBin(t, map[bool]string{true: "head"}[tt.head]))
			cmdline := Command("")
			if name, text, ok := strings.Cut(tt.rc, "="); ok && strings.HasPrefix(name, ".") {
				rc := filepath.Join(home, name)
				if err := os.WriteFile(rc, []byte(text+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				if name == ".bashrc" {
					env = append(env, "BASH_ENV="+rc) // what a login over ssh reads
				}
			} else if tt.rc != "" {
				cmdline = tt.rc + "; " + cmdline
			}
			cmd := exec.Command(path, "-c", cmdline)
			cmd.Env = env
			cmd.Stdin = strings.NewReader(tt.stdin)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != ExitConsumed || strings.Contains(string(out), "ran") {
				t.Fatalf("consumed script: %q, %v", out, err)
			}
		})
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
	// head -c reads it in a few system calls; without head on the PATH
	// the shell reads it byte by byte, so it must stay small (32 KiB: some
	// tens of milliseconds that way).
	if n := len(v.Script(NewToken())); n > 32<<10 {
		t.Errorf("the script is %d bytes; it travels with every run", n)
	}
}

// TestNoHereDocuments keeps here-documents out of the host script: some
// shells (bash before 5.1, /bin/sh on older RHEL) write them to a file in
// $TMPDIR, so that on a full disk a here-document reads empty, and what
// it carried (the host's commit, its edits) would look like nothing.
func TestNoHereDocuments(t *testing.T) {
	for i, line := range strings.Split(source, "\n") {
		code := strings.TrimSpace(line)
		if strings.HasPrefix(code, "#") {
			continue
		}
		if strings.Contains(code, "<<") {
			t.Errorf("host.sh:%d: a here-document: %s", i+1, code)
		}
	}
}
