package remote_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gitric/gitric/gitrictasks/internal/remote"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// logs collects Config.Logf output (what mage -v shows).
type logs struct {
	mu    sync.Mutex
	lines []string
}

func (l *logs) logf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, fmt.Sprintf(format, args...))
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// writeFile writes a file of the test (mode 0600) and returns its path.
func writeFile(t testing.TB, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// block is an ssh_config Host block for srv that does not depend on the
// machine's own files: its key only, no agent, its known_hosts only.
// extra lines come first, so that they win.
func block(alias string, srv *sshdtest.Server, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Host %s\n", alias)
	for _, l := range extra {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	fmt.Fprintf(&b, "  HostName %s\n  Port %d\n  User %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  IdentityAgent none\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile none\n",
		srv.Host, srv.Port, srv.User, srv.ClientKeyFile, srv.KnownHostsFile)
	return b.String()
}

// dial connects to host (as written by a user) within 30s; the connection
// is closed when the test ends.
func dial(t testing.TB, host string, cfg remote.Config) (*remote.Host, error) {
	t.Helper()
	addr, err := remote.ParseAddress(host)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := remote.Dial(ctx, addr, cfg)
	if h != nil {
		t.Cleanup(func() { h.Close() })
	}
	return h, err
}

func mustDial(t testing.TB, host string, cfg remote.Config) *remote.Host {
	t.Helper()
	h, err := dial(t, host, cfg)
	if err != nil {
		t.Fatalf("Dial(%s): %v", host, err)
	}
	return h
}

func output(t testing.TB, h *remote.Host, cmd string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := h.Output(ctx, "test command", cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return strings.TrimSpace(string(out))
}

func authorized(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

// writeKey writes a new ed25519 key pair to path and path.pub; with a
// passphrase, the private key is encrypted.
func writeKey(t testing.TB, path, passphrase string) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "test key")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test key", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Dir(path), filepath.Base(path), string(pem.EncodeToMemory(block)))
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Dir(path), filepath.Base(path)+".pub", string(ssh.MarshalAuthorizedKey(s.PublicKey())))
	return s
}

// requireTool finds an OpenSSH program; missing, it skips the test, or
// fails it in CI.
func requireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: %v (%s)", name, err, sshdtest.InstallHint)
		}
		t.Skipf("%s not found: %v", name, err)
	}
	return p
}

// startAgent runs a real ssh-agent for the test and returns its socket.
func startAgent(t testing.TB) string {
	t.Helper()
	bin := requireTool(t, "ssh-agent")
	sock := filepath.Join(t.TempDir(), "agent.sock")
	cmd := exec.Command(bin, "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("unix", sock); err == nil {
			c.Close()
			return sock
		}
		if time.Now().After(deadline) {
			t.Fatalf("ssh-agent did not listen on %s", sock)
		}
	}
}

// sshAdd loads key into the agent with the real ssh-add, giving it the
// passphrase through SSH_ASKPASS (never a terminal).
func sshAdd(t testing.TB, sock, key, passphrase string) {
	t.Helper()
	bin := requireTool(t, "ssh-add")
	cmd := exec.Command(bin, key)
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if passphrase != "" {
		askpass := writeFile(t, t.TempDir(), "askpass", "#!/bin/sh\necho '"+passphrase+"'\n")
		if err := os.Chmod(askpass, 0o700); err != nil {
			t.Fatal(err)
		}
		cmd.Env = append(cmd.Env, "SSH_ASKPASS="+askpass, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=none")
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("ssh-add %s: %v: %s", key, err, out.String())
	}
}
