package remote

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// hostKeyCheck builds the host key callback for addr, and the host key
// algorithms to ask for: those of the keys known_hosts holds for the host,
// so a server that prefers another key type is not refused for it.
func hostKeyCheck(addr Address, cfg *Config) (ssh.HostKeyCallback, []string, error) {
	if cfg.HostKeyCallback != nil {
		return cfg.HostKeyCallback, nil, nil
	}
	files := cfg.KnownHostsFiles
	if len(files) == 0 {
		if home, err := os.UserHomeDir(); err == nil {
			files = []string{filepath.Join(home, ".ssh", "known_hosts")}
		}
	}
	var existing []string
	for _, f := range files {
		f = expandHome(f)
		if _, err := os.Stat(f); err == nil {
			existing = append(existing, f)
		}
	}
	trust := trustCommand(addr, files)
	if len(existing) == 0 {
		return func(host string, _ net.Addr, key ssh.PublicKey) error {
			return &HostKeyError{Host: addr.Name(), KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), Files: nil, Trust: trust(key.Type())}
		}, nil, nil
	}
	kh, err := knownhosts.New(existing...)
	if err != nil {
		return nil, nil, fmt.Errorf("read known_hosts: %w", err)
	}
	algos := knownAlgorithms(kh, addr)
	cfg.logf("%s: known_hosts %v, host key algorithms %v", addr.Name(), existing, algos)
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := kh(host, remote, key)
		var ke *knownhosts.KeyError
		var re *knownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &re):
			return fmt.Errorf("%s: the host key %s is marked @revoked in %s:%d; refusing to connect", addr.Name(), ssh.FingerprintSHA256(key), re.Revoked.Filename, re.Revoked.Line)
		case errors.As(err, &ke):
			e := &HostKeyError{Host: addr.Name(), KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), Files: existing, Changed: len(ke.Want) > 0}
			for _, w := range ke.Want {
				e.Known = append(e.Known, w.Filename+":"+strconv.Itoa(w.Line))
			}
			if e.Changed {
				e.Trust = "ssh-keygen -R " + knownhosts.Normalize(addr.HostPort())
			} else {
				e.Trust = trust(key.Type())
			}
			return e
		default:
			return err
		}
	}, algos, nil
}

// trustCommand is the command that appends the host's key to the first
// known_hosts file.
func trustCommand(addr Address, files []string) func(keyType string) string {
	file := "~/.ssh/known_hosts"
	if len(files) > 0 {
		file = files[0]
	}
	return func(keyType string) string {
		port := ""
		if addr.Port != 22 {
			port = "-p " + strconv.Itoa(addr.Port) + " "
		}
		return fmt.Sprintf("ssh-keyscan %s-t %s %s >> %s", port, keyFileType(keyType), addr.Host, file)
	}
}

// probeKey is a key of no real type: checking it against known_hosts fails
// with a KeyError that lists every key known for the host.
type probeKey struct{}

func (probeKey) Type() string                            { return "gitric-probe" }
func (probeKey) Marshal() []byte                         { return []byte("gitric-probe") }
func (probeKey) Verify(_ []byte, _ *ssh.Signature) error { return errors.New("probe") }

func knownAlgorithms(kh ssh.HostKeyCallback, addr Address) []string {
	remote := &net.TCPAddr{IP: net.ParseIP(addr.Host), Port: addr.Port}
	if remote.IP == nil {
		remote.IP = net.IPv4zero
	}
	var ke *knownhosts.KeyError
	if err := kh(addr.HostPort(), remote, probeKey{}); !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	add := func(a ...string) {
		for _, x := range a {
			if !seen[x] {
				seen[x] = true
				algos = append(algos, x)
			}
		}
	}
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			add(ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			add(t)
		}
	}
	return algos
}
