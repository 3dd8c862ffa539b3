package remote

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	skeema "github.com/skeema/knownhosts"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// Verdicts on a host key, as the test reports them.
const (
	vAccepted    = "accepted"
	vUnknown     = "unknown"
	vChanged     = "changed"
	vRevoked     = "revoked"
	vRefused     = "refused"             // another error from the host key callback
	vFileRefused = "file refused"        // the known_hosts file was not read at all
	vNoAlgorithm = "no common algorithm" // the handshake failed before any key was shown
)

// TestKnownHostsLibraries is why gitric reads known_hosts itself: the
// cases where golang.org/x/crypto/ssh/knownhosts or
// github.com/skeema/knownhosts decide otherwise than OpenSSH, and a few
// where all agree. Each row is a real handshake with an in-process server
// offering the row's host keys, decided four ways: by gitric (Dial), by
// x/crypto's knownhosts.New callback (with x/crypto's default host key
// algorithms), by skeema's NewDB (its callback and its HostKeyAlgorithms),
// and by OpenSSH's ssh, the reference. gitric must agree with ssh; each
// library must decide as recorded, so that a library that gets fixed
// fails this test and the choice is reconsidered.
func TestKnownHostsLibraries(t *testing.T) {
	t.Parallel()
	hk := sshdtest.NewSigner(t) // the host's ed25519 key
	ecdsaHK := newECDSASigner(t)
	other := sshdtest.NewSigner(t).PublicKey()
	ca, rogueCA := sshdtest.NewSigner(t), sshdtest.NewSigner(t)
	certSigner := func(key ssh.Signer, by ssh.Signer) ssh.Signer {
		cs, err := ssh.NewCertSigner(hostCert(t, key.PublicKey(), by, []string{"web.example"}, time.Now().Add(time.Hour)), key)
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	a := authorized
	blob := base64.StdEncoding.EncodeToString(hk.PublicKey().Marshal())

	tests := []struct {
		name     string
		known    []string
		port     int          // of web.example; 22 when 0
		hostKeys []ssh.Signer // what the server offers; hk when nil
		want     string       // OpenSSH's verdict, and gitric's
		xcrypto  string
		skeema   string
	}{
		// x/crypto's knownhosts.New, which skeema calls, fails on the
		// first line it cannot read, so one bad line distrusts every host.
		{name: "one unreadable line", known: []string{"this line is garbage", "web.example " + a(hk.PublicKey())},
			want: vAccepted, xcrypto: vFileRefused, skeema: vFileRefused},
		{name: "unknown marker", known: []string{"@future-marker * " + a(other), "web.example " + a(hk.PublicKey())},
			want: vAccepted, xcrypto: vFileRefused, skeema: vFileRefused},
		{name: "declared type is not the key's", known: []string{"web.example ssh-rsa " + blob, "web.example " + a(hk.PublicKey())},
			want: vAccepted, xcrypto: vFileRefused, skeema: vFileRefused},
		// ssh skips that line (sshkey_read): the key is not trusted.
		{name: "declared type is not the key's, alone", known: []string{"web.example ssh-rsa " + blob},
			want: vUnknown, xcrypto: vFileRefused, skeema: vFileRefused},
		// Matching host names.
		{name: "upper case in known_hosts", known: []string{"WEB.Example " + a(hk.PublicKey())},
			want: vAccepted, xcrypto: vUnknown, skeema: vUnknown},
		{name: "star matching nothing", known: []string{"web.example* " + a(hk.PublicKey())},
			want: vAccepted, xcrypto: vUnknown, skeema: vUnknown},
		{name: "any port", known: []string{"[web.example]:* " + a(hk.PublicKey())}, port: 2222,
			want: vAccepted, xcrypto: vUnknown, skeema: vUnknown},
		// skeema's workaround for golang/go#52056 applies a wildcard line
		// to every port; OpenSSH matches it against [host]:port.
		{name: "wildcard line on another port", known: []string{"*.example " + a(hk.PublicKey())}, port: 2222,
			want: vUnknown, xcrypto: vUnknown, skeema: vAccepted},
		{name: "wildcard line with another key on another port", known: []string{"*.example " + a(other)}, port: 2222,
			want: vUnknown, xcrypto: vUnknown, skeema: vChanged},
		// Certificates.
		{name: "certificate from an unknown CA, plain key known", known: []string{"@cert-authority * " + a(ca.PublicKey()), "web.example " + a(hk.PublicKey())},
			hostKeys: []ssh.Signer{certSigner(hk, rogueCA)},
			want:     vAccepted, xcrypto: vRefused, skeema: vRefused},
		// skeema offers the certificate algorithm of the CA's key type,
		// but a certificate's algorithm is that of the host key it certifies.
		{name: "CA of another key type than the host key", known: []string{"@cert-authority *.example " + a(ca.PublicKey())},
			hostKeys: []ssh.Signer{certSigner(ecdsaHK, ca)},
			want:     vAccepted, xcrypto: vAccepted, skeema: vNoAlgorithm},
		// x/crypto counts a CA key as one of the host's own keys.
		{name: "CA only, host without certificate", known: []string{"@cert-authority *.example " + a(ca.PublicKey())},
			want: vUnknown, xcrypto: vChanged, skeema: vNoAlgorithm},
		// Host key algorithms: x/crypto's default order prefers ECDSA, so
		// without skeema's HostKeyAlgorithms it sees a key known_hosts does
		// not hold and calls it changed.
		{name: "key of a known type offered second", known: []string{"web.example " + a(hk.PublicKey())},
			hostKeys: []ssh.Signer{ecdsaHK, hk},
			want:     vAccepted, xcrypto: vChanged, skeema: vAccepted},
		// Where all agree.
		{name: "two key types known", known: []string{"web.example " + a(ecdsaHK.PublicKey()), "web.example " + a(hk.PublicKey())},
			want: vAccepted, xcrypto: vAccepted, skeema: vAccepted},
		{name: "hashed", known: []string{knownhosts.HashHostname("web.example") + " " + a(hk.PublicKey())},
			want: vAccepted, xcrypto: vAccepted, skeema: vAccepted},
		{name: "host and port", known: []string{"[web.example]:2222 " + a(hk.PublicKey())}, port: 2222,
			want: vAccepted, xcrypto: vAccepted, skeema: vAccepted},
		{name: "negated", known: []string{"*.example,!web.example " + a(hk.PublicKey())},
			want: vUnknown, xcrypto: vUnknown, skeema: vUnknown},
		{name: "changed", known: []string{"web.example " + a(other)},
			want: vChanged, xcrypto: vChanged, skeema: vChanged},
		{name: "revoked", known: []string{"web.example " + a(hk.PublicKey()), "@revoked * " + a(hk.PublicKey())},
			want: vRevoked, xcrypto: vRevoked, skeema: vRevoked},
		{name: "certificate", known: []string{"@cert-authority *.example " + a(ca.PublicKey())},
			hostKeys: []ssh.Signer{certSigner(hk, ca)},
			want:     vAccepted, xcrypto: vAccepted, skeema: vAccepted},
	}
	sshBin, sshErr := exec.LookPath("ssh")
	if sshErr != nil && os.Getenv("CI") == "true" {
		t.Fatalf("ssh is required in CI, as the reference: %v (%s)", sshErr, sshdtest.InstallHint)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			kh := writeConfig(t, dir, "known_hosts", strings.Join(tt.known, "\n")+"\n")
			keys := tt.hostKeys
			if keys == nil {
				keys = []ssh.Signer{hk}
			}
			srv := hostKeyServer(t, keys)
			port := tt.port
			if port == 0 {
				port = 22
			}
			hostPort := net.JoinHostPort("web.example", strconv.Itoa(port))

			if got := gitricVerdict(t, dir, kh, srv, port); got != tt.want {
				t.Errorf("gitric: %s, OpenSSH: %s", got, tt.want)
			}
			if sshErr == nil {
				if got := opensshVerdict(t, sshBin, kh, srv, knownhosts.Normalize(hostPort)); got != tt.want {
					t.Errorf("OpenSSH's ssh: %s, the test expects %s", got, tt.want)
				}
			}
			xcb, err := knownhosts.New(kh)
			if got := libraryVerdict(t, err, srv, hostPort, xcb, nil); got != tt.xcrypto {
				t.Errorf("golang.org/x/crypto/ssh/knownhosts now says %s (recorded: %s; OpenSSH: %s): reconsider using it", got, tt.xcrypto, tt.want)
			}
			var scb ssh.HostKeyCallback
			var algos []string
			db, err := skeema.NewDB(kh)
			if err == nil {
				scb, algos = db.HostKeyCallback(), db.HostKeyAlgorithms(hostPort)
			}
			if got := libraryVerdict(t, err, srv, hostPort, scb, algos); got != tt.skeema {
				t.Errorf("github.com/skeema/knownhosts now says %s (recorded: %s; OpenSSH: %s): reconsider using it", got, tt.skeema, tt.want)
			}
		})
	}
}

// hostKeyServer is an SSH server that shows keys and refuses every login;
// it returns its address.
func hostKeyServer(t *testing.T, keys []ssh.Signer) string {
	t.Helper()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
			return nil, errors.New("no login here")
		},
	}
	for _, k := range keys {
		cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				if sc, _, _, err := ssh.NewServerConn(c, cfg); err == nil {
					sc.Close()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// gitricVerdict connects to web.example:port with Dial, the network
// leading to srv.
func gitricVerdict(t *testing.T, dir, kh, srv string, port int) string {
	t.Helper()
	client := sshdtest.NewSigner(t)
	cfgFile := writeConfig(t, dir, "config", "Host *\n  GlobalKnownHostsFile none\n  IdentityAgent none\n")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h, err := Dial(ctx, Address{Host: "web.example", Port: port, User: "u"}, Config{
		SSHConfigFile:         cfgFile,
		KnownHostsFiles:       []string{kh},
		StrictHostKeyChecking: StrictYes,
		Signers:               []ssh.Signer{client},
		IdentitiesOnly:        true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, srv)
		},
	})
	switch {
	case err == nil:
		h.Close()
		t.Fatal("the server let gitric in")
	case errors.Is(err, ErrAuth):
		return vAccepted
	case errors.Is(err, ErrHostKeyRevoked):
		return vRevoked
	case errors.Is(err, ErrHostKeyChanged):
		return vChanged
	case errors.Is(err, ErrHostKeyUnknown):
		return vUnknown
	}
	t.Logf("gitric: %v", err)
	return err.Error()
}

// libraryVerdict connects to srv as hostPort with a library's host key
// callback and algorithms; readErr is why the library could not be set
// up.
func libraryVerdict(t *testing.T, readErr error, srv, hostPort string, cb ssh.HostKeyCallback, algos []string) string {
	t.Helper()
	if readErr != nil {
		t.Logf("reading known_hosts: %v", readErr)
		return vFileRefused
	}
	conn, err := net.DialTimeout("tcp", srv, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	called := false
	var cbErr error
	_, _, _, err = ssh.NewClientConn(conn, hostPort, &ssh.ClientConfig{
		User:              "u",
		HostKeyAlgorithms: algos,
		HostKeyCallback: func(h string, r net.Addr, k ssh.PublicKey) error {
			called = true
			cbErr = cb(h, r, k)
			return cbErr
		},
	})
	var ne *ssh.AlgorithmNegotiationError
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case !called && errors.As(err, &ne):
		return vNoAlgorithm
	case !called:
		t.Fatalf("handshake: %v", err)
	case cbErr == nil:
		return vAccepted
	case errors.As(cbErr, &re):
		return vRevoked
	case errors.As(cbErr, &ke) && len(ke.Want) == 0:
		return vUnknown
	case errors.As(cbErr, &ke):
		return vChanged
	}
	t.Logf("callback: %v", cbErr)
	return vRefused
}

// opensshVerdict connects to srv with ssh, looking the host up in kh as
// name, and reads its verdict from what it prints.
func opensshVerdict(t *testing.T, sshBin, kh, srv, name string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(srv)
	cmd := exec.Command(sshBin, "-F", "none", "-p", port,
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "HostKeyAlias="+name,
		"-o", "UserKnownHostsFile="+kh, "-o", "GlobalKnownHostsFile=/dev/null", "-o", "CheckHostIP=no",
		"-o", "IdentitiesOnly=yes", "-o", "IdentityFile=none", "-o", "ConnectTimeout=10",
		"-o", "UpdateHostKeys=no", "u@"+host, "true")
	cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
	cmd.Dir = filepath.Dir(kh)
	out, _ := cmd.CombinedOutput()
	s := string(out)
	switch {
	case strings.Contains(s, "Permission denied"):
		return vAccepted
	case strings.Contains(s, "REVOKED HOST KEY"):
		return vRevoked
	case strings.Contains(s, "REMOTE HOST IDENTIFICATION HAS CHANGED"):
		return vChanged
	case strings.Contains(s, "no matching host key type"):
		return vNoAlgorithm
	case strings.Contains(s, "Host key verification failed"):
		return vUnknown
	}
	t.Logf("ssh: %s", s)
	return "ssh said: " + strings.TrimSpace(s)
}
