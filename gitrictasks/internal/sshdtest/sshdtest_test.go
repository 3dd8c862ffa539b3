package sshdtest_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

func TestRunEcho(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	srv := sshdtest.Start(t, sshdtest.Options{})

	if got := srv.Run(t, "echo hi"); got != "hi\n" {
		t.Fatalf("echo hi: got %q, want %q", got, "hi\n")
	}
	if got := strings.TrimSpace(srv.Run(t, "id -un")); got != srv.User {
		t.Errorf("logged in as %q, want %q", got, srv.User)
	}
	if got := strings.TrimSpace(srv.Run(t, "pwd")); got != srv.Home {
		t.Errorf("remote working directory %q, want home %q", got, srv.Home)
	}
}

func TestServerFiles(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	srv := sshdtest.Start(t, sshdtest.Options{})

	kh, err := os.ReadFile(srv.KnownHostsFile)
	if err != nil {
		t.Fatal(err)
	}
	wantPrefix := "[127.0.0.1]:"
	if line := strings.TrimSpace(string(kh)); line != srv.KnownHostsLine() || !strings.HasPrefix(line, wantPrefix) || !strings.Contains(line, " ssh-ed25519 AAAA") {
		t.Errorf("known_hosts = %q, KnownHostsLine() = %q", kh, srv.KnownHostsLine())
	}
	if srv.HostKeyFingerprint != ssh.FingerprintSHA256(srv.HostKey) {
		t.Errorf("HostKeyFingerprint = %q", srv.HostKeyFingerprint)
	}

	pem, err := os.ReadFile(srv.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatalf("client key is not an unencrypted private key: %v", err)
	}
	if string(signer.PublicKey().Marshal()) != string(srv.ClientSigner.PublicKey().Marshal()) {
		t.Error("ClientKeyFile does not hold ClientSigner's key")
	}
	fi, err := os.Stat(srv.ClientKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("client key mode %v, want 0600", perm)
	}
}

func TestWrongClientKeyRefused(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	srv := sshdtest.Start(t, sshdtest.Options{})

	_, wrong := sshdtest.WriteKey(t, t.TempDir())
	cfg := srv.ClientConfig()
	cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(wrong)}
	c, err := ssh.Dial("tcp", srv.Addr, cfg)
	if err == nil {
		c.Close()
		t.Fatal("login with an unauthorised key succeeded")
	}
	if !strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("want an authentication failure, got: %v", err)
	}
}

func TestExtraAuthorizedKey(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	_, extra := sshdtest.WriteKey(t, t.TempDir())
	srv := sshdtest.Start(t, sshdtest.Options{
		AuthorizedKeys: []string{string(ssh.MarshalAuthorizedKey(extra.PublicKey()))},
		ExtraConfig:    []string{"MaxAuthTries 3"},
	})

	cfg := srv.ClientConfig()
	cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(extra)}
	c, err := ssh.Dial("tcp", srv.Addr, cfg)
	if err != nil {
		t.Fatalf("login with the extra authorised key: %v", err)
	}
	c.Close()
}

func TestMismatchedHostKeyRefused(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	srv := sshdtest.Start(t, sshdtest.Options{})

	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	cfg := srv.ClientConfig()
	cfg.HostKeyCallback = ssh.FixedHostKey(otherKey)
	c, err := ssh.Dial("tcp", srv.Addr, cfg)
	if err == nil {
		c.Close()
		t.Fatal("connection succeeded although the host key does not match")
	}
	if !strings.Contains(err.Error(), "host key mismatch") {
		t.Fatalf("want a host key mismatch, got: %v", err)
	}
}

func TestManyParallel(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	for i := range 8 {
		t.Run("", func(t *testing.T) {
			t.Parallel()
			srv := sshdtest.Start(t, sshdtest.Options{})
			if got := srv.Run(t, "echo $((40+2))"); got != "42\n" {
				t.Fatalf("server %d: got %q", i, got)
			}
		})
	}
}

func TestAvailable(t *testing.T) {
	ok, why := sshdtest.Available()
	if !ok && why == "" {
		t.Fatal("Available() = false without a reason")
	}
	if ok && why != "" {
		t.Fatalf("Available() = true with reason %q", why)
	}
}
