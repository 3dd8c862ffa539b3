package sshdtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// Fleet is n sshd instances acting as distinct hosts: each has its own
// port, host key and home directory (sshd_config SetEnv HOME), so that the
// same relative path is a different directory on each. They all accept one
// client key.
type Fleet struct {
	Servers        []*Server
	Homes          []string
	ClientKeyFile  string // the private key every host accepts
	KnownHostsFile string // every host's key
}

// StartFleet starts n servers for the test; see Start.
func StartFleet(t testing.TB, n int) *Fleet {
	t.Helper()
	f := &Fleet{}
	var known, authorized []string
	for i := range n {
		home := t.TempDir()
		srv := Start(t, Options{ExtraConfig: []string{"SetEnv HOME=" + home}, AuthorizedKeys: authorized})
		if i == 0 {
			f.ClientKeyFile = srv.ClientKeyFile
			authorized = []string{string(ssh.MarshalAuthorizedKey(srv.ClientSigner.PublicKey()))}
		}
		f.Servers = append(f.Servers, srv)
		f.Homes = append(f.Homes, home)
		known = append(known, srv.KnownHostsLine())
	}
	f.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(f.KnownHostsFile, []byte(strings.Join(known, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// Addresses are user@127.0.0.1:port of the first n servers.
func (f *Fleet) Addresses(n int) []string {
	var addrs []string
	for _, srv := range f.Servers[:n] {
		addrs = append(addrs, srv.User+"@"+srv.Addr)
	}
	return addrs
}
