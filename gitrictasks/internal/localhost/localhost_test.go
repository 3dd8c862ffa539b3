//go:build unix

package localhost

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gitric/gitric/gitrictasks/internal/stream"
)

func startServer(t *testing.T) *Server {
	t.Helper()
	root := filepath.Join(t.TempDir(), "deploy", "root")
	srv, err := Start(t.Context(), root)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	srv.SetLogf(t.Logf)
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return srv
}

func clientConfig(srv *Server, user string, auth ...ssh.AuthMethod) *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            user,
		Auth:            auth,
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey()),
		Timeout:         10 * time.Second,
	}
}

func dial(t *testing.T, srv *Server) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", srv.Addr(), clientConfig(srv, srv.User(), ssh.PublicKeys(srv.ClientSigner())))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newSession(t *testing.T, c *ssh.Client) *ssh.Session {
	t.Helper()
	s, err := c.NewSession()
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no procfs: assume alive
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func waitDead(t *testing.T, pid int, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive after %v", pid, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %v", path, err)
	}
	return pid
}

// killLater makes sure a background process started by a test goes away.
func killLater(t *testing.T, pid int) {
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
}

func TestStartCreatesRoot(t *testing.T) {
	srv := startServer(t)
	fi, err := os.Stat(srv.Root())
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm()&0o700 != 0o700 {
		t.Errorf("root mode = %v", fi.Mode())
	}
	if !filepath.IsAbs(srv.Root()) {
		t.Errorf("Root() = %q, want absolute", srv.Root())
	}
	host, _, err := net.SplitHostPort(srv.Addr())
	if err != nil || host != "127.0.0.1" {
		t.Errorf("Addr() = %q", srv.Addr())
	}
	if srv.User() == "" {
		t.Error("User() is empty")
	}
	if srv.HostKey().Type() != ssh.KeyAlgoED25519 || srv.ClientSigner().PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Error("keys are not ed25519")
	}
}

func TestStartRootIsFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if srv, err := Start(t.Context(), f); err == nil {
		srv.Close()
		t.Fatal("Start with a file as root succeeded")
	}
}

func TestExec(t *testing.T) {
	srv := startServer(t)
	c := dial(t, srv)

	tests := []struct {
		name       string
		env        map[string]string
		cmd        string
		wantOut    string
		wantErrOut string
		wantStatus int    // expected exit status; 0 means success
		wantSignal string // expected exit signal
	}{
		{name: "pwd", cmd: "pwd", wantOut: srv.Root() + "\n"},
		{name: "relative paths", cmd: "echo hi >f && cat " + filepath.Join(srv.Root(), "f"), wantOut: "hi\n"},
		{name: "home", cmd: `echo "$HOME"`, wantOut: srv.Root() + "\n"},
		{name: "user", cmd: `echo "$USER $LOGNAME $SHELL"`, wantOut: srv.User() + " " + srv.User() + " /bin/sh\n"},
		{name: "path", cmd: `test -n "$PATH" && echo ok`, wantOut: "ok\n"},
		{name: "stderr", cmd: "echo out; echo err >&2", wantOut: "out\n", wantErrOut: "err\n"},
		{name: "exit 3", cmd: "exit 3", wantStatus: 3},
		{name: "exit 255", cmd: "echo partial; exit 255", wantOut: "partial\n", wantStatus: 255},
		{name: "not found", cmd: "no-such-command-gitric", wantStatus: 127, wantErrOut: "*"},
		{name: "killed", cmd: "kill -TERM $$", wantSignal: "TERM"},
		{name: "env request", env: map[string]string{"GITRIC_TEST": "a b", "HOME": "/elsewhere"}, cmd: `echo "$GITRIC_TEST|$HOME"`, wantOut: "a b|/elsewhere\n"},
		{name: "stdin closed", cmd: "cat", wantOut: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession(t, c)
			for k, v := range tt.env {
				if err := s.Setenv(k, v); err != nil {
					t.Fatalf("Setenv(%q): %v", k, err)
				}
			}
			var stdout, stderr bytes.Buffer
			s.Stdout, s.Stderr = &stdout, &stderr
			err := s.Run(tt.cmd)
			switch {
			case tt.wantStatus == 0 && tt.wantSignal == "":
				if err != nil {
					t.Fatalf("Run: %v (stderr %q)", err, stderr.String())
				}
			default:
				var ee *ssh.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("Run error = %v (%T), want *ssh.ExitError", err, err)
				}
				if tt.wantSignal != "" {
					if ee.Signal() != tt.wantSignal {
						t.Errorf("signal = %q, want %q", ee.Signal(), tt.wantSignal)
					}
				} else if ee.ExitStatus() != tt.wantStatus {
					t.Errorf("exit status = %d, want %d", ee.ExitStatus(), tt.wantStatus)
				}
			}
			if got := stdout.String(); got != tt.wantOut {
				t.Errorf("stdout = %q, want %q", got, tt.wantOut)
			}
			if tt.wantErrOut == "*" {
				if stderr.Len() == 0 {
					t.Error("stderr is empty")
				}
			} else if got := stderr.String(); got != tt.wantErrOut {
				t.Errorf("stderr = %q, want %q", got, tt.wantErrOut)
			}
		})
	}
}

func TestEnvNames(t *testing.T) {
	srv := startServer(t)
	c := dial(t, srv)
	tests := []struct {
		name string
		ok   bool
	}{
		{"GOOD", true},
		{"_x9", true},
		{"a", true},
		{"", false},
		{"9LIVES", false},
		{"A-B", false},
		{"A=B", false},
		{"LD PRELOAD", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession(t, c)
			err := s.Setenv(tt.name, "v")
			if (err == nil) != tt.ok {
				t.Errorf("Setenv(%q) error = %v, want ok=%v", tt.name, err, tt.ok)
			}
		})
	}
}

func TestRefusedRequests(t *testing.T) {
	srv := startServer(t)
	c := dial(t, srv)
	tests := []struct {
		name string
		do   func(s *ssh.Session) error
	}{
		{"shell", func(s *ssh.Session) error { return s.Shell() }},
		{"pty-req", func(s *ssh.Session) error { return s.RequestPty("xterm", 24, 80, ssh.TerminalModes{}) }},
		{"subsystem", func(s *ssh.Session) error { return s.RequestSubsystem("sftp") }},
		{"unknown", func(s *ssh.Session) error {
			ok, err := s.SendRequest("x-gitric@example.com", true, nil)
			if err == nil && !ok {
				err = errors.New("refused")
			}
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession(t, c)
			if err := tt.do(s); err == nil {
				t.Errorf("%s request accepted", tt.name)
			}
			// The session stays usable after a refused request.
			out, err := s.Output("echo still")
			if err != nil || string(out) != "still\n" {
				t.Errorf("exec after refused request: %q, %v", out, err)
			}
		})
	}
}

func TestSecondExecRefused(t *testing.T) {
	srv := startServer(t)
	c := dial(t, srv)
	s := newSession(t, c)
	stdin, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("cat >/dev/null"); err != nil {
		t.Fatal(err)
	}
	ok, err := s.SendRequest("exec", true, ssh.Marshal(struct{ Command string }{"true"}))
	if err != nil || ok {
		t.Errorf("second exec: ok=%v err=%v, want refused", ok, err)
	}
	stdin.Close()
	if err := s.Wait(); err != nil {
		t.Errorf("Wait: %v", err)
	}
}

func TestUnknownChannelRejected(t *testing.T) {
	srv := startServer(t)
	c := dial(t, srv)
	for _, typ := range []string{"x11", "gitric"} {
		_, _, err := c.OpenChannel(typ, nil)
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) || oce.Reason != ssh.UnknownChannelType {
			t.Errorf("OpenChannel(%q) error = %v, want UnknownChannelType", typ, err)
		}
	}
}

func TestAuth(t *testing.T) {
	srv := startServer(t)
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := ssh.NewSignerFromKey(otherKey)
	if err != nil {
		t.Fatal(err)
	}
	right := ssh.PublicKeys(srv.ClientSigner())
	tests := []struct {
		name string
		user string
		auth []ssh.AuthMethod
		ok   bool
	}{
		{"right key and user", srv.User(), []ssh.AuthMethod{right}, true},
		{"wrong key", srv.User(), []ssh.AuthMethod{ssh.PublicKeys(other)}, false},
		{"wrong user", srv.User() + "x", []ssh.AuthMethod{right}, false},
		{"root user", "root-" + srv.User(), []ssh.AuthMethod{right}, false},
		{"password", srv.User(), []ssh.AuthMethod{ssh.Password("secret")}, false},
		{"keyboard-interactive", srv.User(), []ssh.AuthMethod{ssh.KeyboardInteractive(
			func(string, string, []string, []bool) ([]string, error) { return nil, nil })}, false},
		{"no auth", srv.User(), nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ssh.Dial("tcp", srv.Addr(), clientConfig(srv, tt.user, tt.auth...))
			if c != nil {
				c.Close()
			}
			if (err == nil) != tt.ok {
				t.Errorf("Dial error = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestWrongHostKeyDetected(t *testing.T) {
	srv := startServer(t)
	other := startServer(t)
	cfg := clientConfig(other, srv.User(), ssh.PublicKeys(srv.ClientSigner()))
	if c, err := ssh.Dial("tcp", srv.Addr(), cfg); err == nil {
		c.Close()
		t.Fatal("Dial succeeded with a different pinned host key")
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestStdinStreaming(t *testing.T) {
	srv := startServer(t)
	c := dial(t, srv)
	s := newSession(t, c)
	const size = 50 << 20
	s.Stdin = io.LimitReader(zeroReader{}, size)
	out, err := s.Output("wc -c")
	if err != nil {
		t.Fatalf("wc -c: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != strconv.Itoa(size) {
		t.Errorf("wc -c = %q, want %d", got, size)
	}
}

func TestOutputStreaming(t *testing.T) {
	srv := startServer(t)
	c := dial(t, srv)
	s := newSession(t, c)
	const size = 20 << 20
	var stdout, stderr stream.Counter
	s.Stdout, s.Stderr = &stdout, &stderr
	cmd := fmt.Sprintf("head -c %d /dev/zero; head -c %d /dev/zero >&2", size, size/2)
	if err := s.Run(cmd); err != nil {
		t.Fatal(err)
	}
	if stdout.Count() != size || stderr.Count() != size/2 {
		t.Errorf("got %d bytes stdout, %d stderr; want %d, %d", stdout.Count(), stderr.Count(), size, size/2)
	}
}

// A slow client still gets all output of a command that already exited,
// even when forwarding it takes longer than the output grace period.
func TestSlowReaderGetsAllOutput(t *testing.T) {
	if testing.Short() {
		t.Skip("slow")
	}
	srv := startServer(t)
	c := dial(t, srv)
	s := newSession(t, c)
	stdout, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// More than the client's 2 MiB channel window, but small enough that
	// the rest fits into the forwarding buffer and the pipe, so that the
	// command can exit while the client is not reading.
	const size = 2<<20 + 40<<10
	if err := s.Start(fmt.Sprintf("head -c %d /dev/zero; touch exited", size)); err != nil {
		t.Fatal(err)
	}
	exited := filepath.Join(srv.Root(), "exited")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(exited); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("command did not exit while the client was not reading")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(outputGrace + time.Second)
	n, err := io.Copy(io.Discard, stdout)
	if err != nil || n != size {
		t.Errorf("read %d bytes, err %v; want %d", n, err, size)
	}
	if err := s.Wait(); err != nil {
		t.Errorf("Wait: %v", err)
	}
}

func TestBackgroundProcessesDoNotHold(t *testing.T) {
	tests := []struct {
		name    string
		cmd     string
		wantOut string
		within  time.Duration
	}{
		{
			name:   "daemon with redirected output",
			cmd:    "nohup sleep 30 >/dev/null 2>&1 </dev/null & echo $! >daemon1.pid",
			within: time.Second,
		},
		{
			name:    "background keeps stdout",
			cmd:     "sleep 30 & echo $! >daemon2.pid; echo started",
			wantOut: "started\n",
			within:  5 * time.Second,
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t)
			c := dial(t, srv)
			s := newSession(t, c)
			start := time.Now()
			out, err := s.Output(tt.cmd)
			elapsed := time.Since(start)
			pid := readPid(t, filepath.Join(srv.Root(), fmt.Sprintf("daemon%d.pid", i+1)))
			killLater(t, pid)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			if string(out) != tt.wantOut {
				t.Errorf("stdout = %q, want %q", out, tt.wantOut)
			}
			if elapsed > tt.within {
				t.Errorf("session took %v, want < %v", elapsed, tt.within)
			}
			// Background processes of a finished command survive the
			// session and the server.
			if !processAlive(pid) {
				t.Errorf("background process %d died with the session", pid)
			}
			_ = srv.Close()
			if !processAlive(pid) {
				t.Errorf("background process %d died with the server", pid)
			}
		})
	}
}

// startWaiting starts cmd, which must print "ready" once its setup is done,
// and waits for that line.
func startWaiting(t *testing.T, s *ssh.Session, cmd string) {
	t.Helper()
	stdout, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(cmd); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("waiting for ready: %q, %v", line, err)
	}
	go io.Copy(io.Discard, stdout)
}

func TestCloseKillsRunningCommand(t *testing.T) {
	tests := []struct {
		name       string
		cmd        string
		wantSignal string
	}{
		{"sleep", "sleep 60 & echo $! >sleep.pid; echo ready; wait", "TERM"},
		{"ignores TERM", "trap '' TERM; sleep 60 & echo $! >sleep.pid; echo ready; wait", "KILL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t)
			c := dial(t, srv)
			s := newSession(t, c)
			startWaiting(t, s, tt.cmd)
			pid := readPid(t, filepath.Join(srv.Root(), "sleep.pid"))
			killLater(t, pid)

			start := time.Now()
			if err := srv.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if d := time.Since(start); d > killGrace+3*time.Second {
				t.Errorf("Close took %v", d)
			}
			err := s.Wait()
			var ee *ssh.ExitError
			if !errors.As(err, &ee) || ee.Signal() != tt.wantSignal {
				t.Errorf("Wait error = %v, want exit signal %s", err, tt.wantSignal)
			}
			waitDead(t, pid, 2*time.Second)

			if c, err := net.DialTimeout("tcp", srv.Addr(), time.Second); err == nil {
				c.Close()
				t.Error("server still accepts connections after Close")
			}
			if err := srv.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestClientGoneKillsCommand(t *testing.T) {
	tests := []struct {
		name  string
		leave func(c *ssh.Client, s *ssh.Session)
	}{
		{"session closed", func(_ *ssh.Client, s *ssh.Session) { s.Close() }},
		{"connection closed", func(c *ssh.Client, _ *ssh.Session) { c.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t)
			c := dial(t, srv)
			s := newSession(t, c)
			startWaiting(t, s, "sleep 60 & echo $! >sleep.pid; echo ready; wait")
			pid := readPid(t, filepath.Join(srv.Root(), "sleep.pid"))
			killLater(t, pid)
			tt.leave(c, s)
			waitDead(t, pid, 5*time.Second)
		})
	}
}

func TestSignalRequest(t *testing.T) {
	srv := startServer(t)
	c := dial(t, srv)
	s := newSession(t, c)
	startWaiting(t, s, "echo ready; exec sleep 60")
	if err := s.Signal(ssh.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	err := s.Wait()
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.Signal() != "USR1" {
		t.Errorf("Wait error = %v, want exit signal USR1", err)
	}
}

func TestContextCancelStopsServer(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv, err := Start(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := dial(t, srv)
	s := newSession(t, c)
	startWaiting(t, s, "echo ready; exec sleep 60")
	cancel()
	done := make(chan error, 1)
	go func() { done <- s.Wait() }()
	select {
	case err := <-done:
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.Signal() != "TERM" {
			t.Errorf("Wait error = %v, want exit signal TERM", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("command still running 10s after ctx was canceled")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", srv.Addr(), time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("server still listening after ctx was canceled")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestStartCanceledContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if srv, err := Start(ctx, t.TempDir()); err == nil {
		srv.Close()
		t.Fatal("Start with canceled context succeeded")
	}
}

func TestConcurrentSessions(t *testing.T) {
	srv := startServer(t)
	const conns, sessions = 8, 6
	var wg sync.WaitGroup
	errs := make(chan error, conns*sessions)
	for i := range conns {
		c := dial(t, srv)
		for j := range sessions {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := c.NewSession()
				if err != nil {
					errs <- err
					return
				}
				defer s.Close()
				want := fmt.Sprintf("%d-%d", i, j)
				if err := s.Setenv("ID", want); err != nil {
					errs <- err
					return
				}
				s.Stdin = strings.NewReader(want)
				out, err := s.Output(`cat; echo " $ID"; sleep 0.2`)
				if err != nil {
					errs <- fmt.Errorf("%s: %w", want, err)
					return
				}
				if string(out) != want+" "+want+"\n" {
					errs <- fmt.Errorf("%s: got %q", want, out)
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
