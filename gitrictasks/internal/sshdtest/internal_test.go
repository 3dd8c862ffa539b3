package sshdtest

import (
	"errors"
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestLaunchReportsBindFailure checks that a port taken by someone else is
// reported as errBind (so that Start retries) and promptly, even though
// the squatter accepts connections without ever sending a banner.
func TestLaunchReportsBindFailure(t *testing.T) {
	Require(t)
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	sshd, err := sshdPath()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	hostKeyFile := filepath.Join(dir, "host_key")
	hostSigner, err := writeKeyPair(hostKeyFile, "test")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{
		Host:       "127.0.0.1",
		Port:       l.Addr().(*net.TCPAddr).Port,
		Addr:       l.Addr().String(),
		Dir:        dir,
		HostKey:    hostSigner.PublicKey(),
		ConfigFile: filepath.Join(dir, "sshd_config"),
		LogFile:    filepath.Join(dir, "sshd.log"),
	}
	cfg := buildConfig(s.Addr, hostKeyFile, filepath.Join(dir, "authorized_keys"), dir, nil)
	if err := writeFile0600(s.ConfigFile, []byte(cfg)); err != nil {
		t.Fatal(err)
	}
	if perr := ensurePrivsepDirIfRoot(); perr != nil {
		t.Fatal(perr)
	}
	err = s.launch(t, sshd)
	if !errors.Is(err, errBind) {
		t.Fatalf("launch on a taken port: got %v, want errBind\n%s", err, s.logTail())
	}
}

func TestBuildConfigOrder(t *testing.T) {
	cfg := buildConfig("127.0.0.1:1", "/hk", "/ak", "/d", []string{
		"PasswordAuthentication yes",
		"MaxAuthTries 3",
		"Match User nobody",
		"\tX11Forwarding no",
	})
	idx := func(s string) int {
		t.Helper()
		i := strings.Index(cfg, s)
		if i < 0 {
			t.Fatalf("%q missing from config:\n%s", s, cfg)
		}
		return i
	}
	if !(idx("PasswordAuthentication yes") < idx("PasswordAuthentication no")) {
		t.Errorf("ExtraConfig must come before the defaults (first value wins):\n%s", cfg)
	}
	if !(idx("MaxSessions 100") < idx("Match User nobody") && idx("Match User nobody") < idx("X11Forwarding no")) {
		t.Errorf("Match blocks must come last:\n%s", cfg)
	}
}

func TestIsBindFailure(t *testing.T) {
	log := "Bind to port 1 on 127.0.0.1 failed: Address already in use.\nCannot bind any address.\n=== next ===\n"
	if !isBindFailure(log, 0) {
		t.Error("bind failure not detected")
	}
	if isBindFailure(log, int64(strings.Index(log, "==="))) {
		t.Error("earlier attempt's bind failure counted")
	}
}
