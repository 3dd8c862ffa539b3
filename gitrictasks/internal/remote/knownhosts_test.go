package remote

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

func newECDSASigner(t testing.TB) ssh.Signer {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func authorized(k ssh.PublicKey) string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}

func hostCert(t testing.TB, key ssh.PublicKey, ca ssh.Signer, principals []string, before time.Time) *ssh.Certificate {
	t.Helper()
	c := &ssh.Certificate{
		Key: key, Serial: 7, CertType: ssh.HostCert, KeyId: "test",
		ValidPrincipals: principals,
		ValidAfter:      uint64(time.Now().Add(-time.Hour).Unix()),
		ValidBefore:     uint64(before.Unix()),
	}
	if err := c.SignCert(rand.Reader, ca); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestKnownHostsCheck runs the host key decision on known_hosts files of
// every form, without a network.
func TestKnownHostsCheck(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	web, other, revoked, ca, rogueCA := sshdtest.NewSigner(t).PublicKey(), sshdtest.NewSigner(t).PublicKey(), sshdtest.NewSigner(t).PublicKey(), sshdtest.NewSigner(t), sshdtest.NewSigner(t)
	ecd := newECDSASigner(t).PublicKey()
	hashed := knownhosts.HashHostname("[hashed.example]:2222")
	file := writeConfig(t, dir, "known_hosts", strings.Join([]string{
		"# a comment",
		"web.example,10.0.0.1 " + authorized(web),
		"[web.example]:2222 " + authorized(other),
		hashed + " " + authorized(web),
		"*.wild.example,!bad.wild.example " + authorized(web),
		"this line is garbage",
		"@cert-authority *.ca.example " + authorized(ca.PublicKey()),
		"@revoked * " + authorized(revoked),
		"ecdsa.example " + authorized(ecd),
		"@future-marker x " + authorized(web),
		"",
	}, "\n"))
	kh, err := loadKnownHosts([]string{file, filepath.Join(dir, "missing")})
	if err != nil {
		t.Fatal(err)
	}
	if len(kh.skipped) != 2 || !strings.Contains(kh.skipped[0], "known_hosts:6") {
		t.Errorf("skipped lines: %q", kh.skipped)
	}
	if !reflect.DeepEqual(kh.files, []string{file}) {
		t.Errorf("files %q", kh.files)
	}

	check := func(host string, port int, strict string, key ssh.PublicKey) (string, error) {
		hop := &Hop{Name: host, HostName: host, Port: port, StrictHostKeyChecking: strict, KnownHostsFiles: []string{file}}
		c, err := newHostKeyChecker(hop, &Config{})
		if err != nil {
			t.Fatal(err)
		}
		c.kh = kh
		c.plain, c.cas = kh.lookup(c.name)
		return c.verify(key)
	}
	tests := []struct {
		name  string
		host  string
		port  int
		key   ssh.PublicKey
		is    error
		says  string // in the error, or in how it was accepted
		known []string
	}{
		{"plain", "web.example", 22, web, nil, "known_hosts:2", nil},
		{"second name on the line", "10.0.0.1", 22, web, nil, "known_hosts:2", nil},
		{"case", "WEB.example", 22, web, nil, "known_hosts:2", nil},
		{"port form", "web.example", 2222, other, nil, "known_hosts:3", nil},
		{"port form, other key", "web.example", 2222, web, ErrHostKeyChanged, "ssh-keygen -R '[web.example]:2222'", []string{file + ":3"}},
		{"changed", "web.example", 22, other, ErrHostKeyChanged, "records another key", []string{file + ":2"}},
		{"hashed", "hashed.example", 2222, web, nil, "known_hosts:4", nil},
		{"hashed, other port", "hashed.example", 22, web, ErrHostKeyUnknown, "ssh-keyscan -t ed25519 hashed.example", nil},
		{"wildcard", "a.wild.example", 22, web, nil, "known_hosts:5", nil},
		{"wildcard, negated", "bad.wild.example", 22, web, ErrHostKeyUnknown, "not in " + file, nil},
		{"wildcard, other port", "a.wild.example", 2200, web, ErrHostKeyUnknown, "-p 2200", nil},
		{"revoked", "web.example", 22, revoked, ErrHostKeyRevoked, "marks @revoked", []string{file + ":8"}},
		{"other key type known", "ecdsa.example", 22, web, ErrHostKeyChanged, "records another key", []string{file + ":9"}},
		{"certificate", "h.ca.example", 22, hostCert(t, other, ca, []string{"h.ca.example"}, time.Now().Add(time.Hour)), nil, "signed by the CA at " + file + ":7", nil},
		{"certificate, wrong principal", "h.ca.example", 22, hostCert(t, other, ca, []string{"x.ca.example"}, time.Now().Add(time.Hour)), ErrHostKeyUnknown, "not in the set of valid principals", nil},
		{"certificate, expired", "h.ca.example", 22, hostCert(t, other, ca, []string{"h.ca.example"}, time.Now().Add(-time.Minute)), ErrHostKeyUnknown, "expired", nil},
		{"certificate, rogue CA", "h.ca.example", 22, hostCert(t, other, rogueCA, []string{"h.ca.example"}, time.Now().Add(time.Hour)), ErrHostKeyUnknown, "not by a CA known_hosts trusts", nil},
		{"certificate, revoked CA... key", "h.ca.example", 22, hostCert(t, revoked, ca, []string{"h.ca.example"}, time.Now().Add(time.Hour)), ErrHostKeyRevoked, "@revoked", nil},
		{"certificate without CA, plain key known", "web.example", 22, hostCert(t, web, rogueCA, []string{"web.example"}, time.Now().Add(time.Hour)), nil, "known_hosts:2", nil},
		{"unknown", "new.example", 22, web, ErrHostKeyUnknown, web.Type(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			how, err := check(tt.host, tt.port, StrictYes, tt.key)
			if tt.is == nil {
				if err != nil || !strings.Contains(how, tt.says) {
					t.Fatalf("refused (%v) or accepted without saying %q: %s", err, tt.says, how)
				}
				return
			}
			var he *HostKeyError
			if !errors.Is(err, tt.is) || !errors.As(err, &he) {
				t.Fatalf("error %v, want %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error does not say %q: %v", tt.says, err)
			}
			if tt.known != nil && !reflect.DeepEqual(he.Known, tt.known) {
				t.Errorf("Known %q, want %q", he.Known, tt.known)
			}
		})
	}

	// accept-new and no record an unknown host but never a changed or
	// revoked one.
	for _, strict := range []string{StrictAcceptNew, StrictNo} {
		if _, err := check("web.example", 22, strict, other); !errors.Is(err, ErrHostKeyChanged) {
			t.Errorf("%s accepted a changed key: %v", strict, err)
		}
		if _, err := check("new.example", 22, strict, revoked); !errors.Is(err, ErrHostKeyRevoked) {
			t.Errorf("%s accepted a revoked key: %v", strict, err)
		}
	}
}

func TestHostKeyAlgorithms(t *testing.T) {
	ecd := newECDSASigner(t).PublicKey()
	ed := sshdtest.NewSigner(t).PublicKey()
	plain := []*knownLine{{key: ecd}, {key: ed}}
	if got := hostKeyAlgorithms(plain, nil); !reflect.DeepEqual(got, []string{ssh.KeyAlgoECDSA256, ssh.KeyAlgoED25519}) {
		t.Errorf("plain: %q", got)
	}
	if got := hostKeyAlgorithms(nil, nil); got != nil {
		t.Errorf("unknown host: %q", got)
	}
	got := hostKeyAlgorithms(nil, []*knownLine{{key: ed}})
	if got[0] != ssh.CertAlgoED25519v01 || !strings.Contains(strings.Join(got, " "), ssh.KeyAlgoED25519+" ") {
		t.Errorf("CA only: %q", got)
	}
}

// TestAppendKnownHost: one correct line, whatever the file looked like,
// and one only, however many record the same key at once.
func TestAppendKnownHost(t *testing.T) {
	t.Parallel()
	key := sshdtest.NewSigner(t).PublicKey()
	for _, hash := range []bool{false, true} {
		t.Run(fmt.Sprintf("hash=%v", hash), func(t *testing.T) {
			dir := t.TempDir()
			file := filepath.Join(dir, "sub", "known_hosts")
			var wg sync.WaitGroup
			lines := make([]int, 8)
			errs := make([]error, 8)
			for i := range lines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					lines[i], errs[i] = appendKnownHost(file, "[127.0.0.1]:2222", key, hash)
				}()
			}
			wg.Wait()
			for i := range lines {
				if errs[i] != nil || lines[i] != 1 {
					t.Fatalf("append %d: line %d, %v", i, lines[i], errs[i])
				}
			}
			data, _ := os.ReadFile(file)
			if strings.Count(string(data), "\n") != 1 {
				t.Fatalf("known_hosts holds %q", data)
			}
			kh, err := loadKnownHosts([]string{file})
			if err != nil || len(kh.lines) != 1 {
				t.Fatalf("%v, %d lines", err, len(kh.lines))
			}
			if l := kh.lines[0]; !keyEqual(l.key, key) || !l.matches("[127.0.0.1]:2222") || l.matches("127.0.0.1") || strings.HasPrefix(l.hosts, "|1|") != hash {
				t.Errorf("recorded %q", data)
			}
			if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
				t.Errorf("mode %v", fi.Mode())
			}
		})
	}
	t.Run("no final newline", func(t *testing.T) {
		file := writeConfig(t, t.TempDir(), "known_hosts", "other.example "+authorized(sshdtest.NewSigner(t).PublicKey()))
		n, err := appendKnownHost(file, "new.example", key, false)
		if err != nil || n != 2 {
			t.Fatalf("line %d, %v", n, err)
		}
		data, _ := os.ReadFile(file)
		if lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"); len(lines) != 2 || lines[1] != "new.example "+authorized(key) {
			t.Errorf("file %q", data)
		}
	})
}
