package sshdtest

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// passwdMu serialises useradd and userdel, which lock /etc/passwd and
// fail rather than wait when another holds it.
var passwdMu sync.Mutex

// passwd runs useradd or userdel, retrying while another process holds
// the lock on /etc/passwd.
func passwd(args ...string) ([]byte, error) {
	passwdMu.Lock()
	defer passwdMu.Unlock()
	var out []byte
	var err error
	for range 20 {
		out, err = exec.Command(args[0], args[1:]...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "lock") {
			return out, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return out, err
}

// User is a throwaway OS account that a Server lets in with its keys
// (Server.AddUser), for tests that need a login shell, a home directory
// or a uid of their own.
type User struct {
	Name  string
	Home  string
	Shell string
	UID   int
}

// RequireRoot skips the test when it cannot create users (not root), or
// fails it under CI=true, where it must run.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s needs root, and CI runs as root", why)
	}
	t.Skipf("%s needs root", why)
}

// RequireTool skips the test when path is not an executable file, or fails
// it under CI=true.
func RequireTool(t testing.TB, path, install string) {
	t.Helper()
	if isExecutable(path) {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is required in CI but missing (install with: %s)", path, install)
	}
	t.Skipf("%s missing (install with: %s)", path, install)
}

// userPrefix starts every throwaway user's name; sshd_config reads their
// keys from their own ~/.ssh/authorized_keys (sshd reads it as the user,
// who cannot enter the server's private directory).
const userPrefix = "gitric-"

// AddUser creates a user with the login shell shell and a fresh home
// directory (useradd -m), removed with its home when the test ends, and
// lets it in with the server's keys (the client key and
// Options.AuthorizedKeys). It needs root (see RequireRoot). rc, when set,
// is written into the home directory as files (name: content), owned by
// the user.
func (s *Server) AddUser(t testing.TB, shell string, rc map[string]string) *User {
	t.Helper()
	RequireRoot(t, "creating a login user")
	RequireTool(t, "/usr/sbin/useradd", "apt-get install -y passwd")
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := userPrefix + hex.EncodeToString(b[:])
	// -K UMASK: a home the test (root) and the user can both work in;
	// -p '*': no password, but not a locked account (sshd refuses those).
	out, err := passwd("/usr/sbin/useradd", "-m", "-s", shell, "-K", "UMASK=022", "-p", "*", name)
	if err != nil {
		t.Fatalf("sshdtest: useradd %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		// -f: also while a process of the user lingers (its test kills it).
		if out, err := passwd("/usr/sbin/userdel", "-f", "-r", name); err != nil && !strings.Contains(string(out), "mail spool") {
			t.Logf("sshdtest: userdel %s: %v: %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	usr := &User{Name: name, Home: u.HomeDir, Shell: shell}
	usr.UID = atoi(u.Uid)
	keys, err := os.ReadFile(filepath.Join(s.Dir, "authorized_keys"))
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	rc = maps.Clone(rc)
	if rc == nil {
		rc = map[string]string{}
	}
	rc[".ssh/authorized_keys"] = string(keys)
	for file, content := range rc {
		p := u.HomeDir + "/" + file
		if err := os.MkdirAll(p[:strings.LastIndex(p, "/")], 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		usr.Chown(t, p)
	}
	return usr
}

// Chown gives paths (and what is under them) to the user.
func (u *User) Chown(t testing.TB, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if out, err := exec.Command("chown", "-R", u.Name+":", p).CombinedOutput(); err != nil {
			t.Fatalf("sshdtest: chown %s %s: %v: %s", u.Name, p, err, out)
		}
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
