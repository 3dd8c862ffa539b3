package remote

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// defaultIdentityFiles are the keys ssh tries when none are configured.
func defaultIdentityFiles() []string {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil
	}
	var out []string
	for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
		out = append(out, filepath.Join(home, ".ssh", n))
	}
	return out
}

// authMethods gathers the keys to offer, in ssh's order: explicit signers,
// the agent's keys, then identity files. describe says what was offered, for
// an authentication failure. Encrypted identity files cannot be used without
// a passphrase prompt, which gitric never shows: when nothing else is on
// offer, that is an error that says to load the key into ssh-agent.
func authMethods(cfg *Config) (ssh.AuthMethod, func() string, error) {
	var signers []ssh.Signer
	var offered, encrypted []string
	for _, s := range cfg.Signers {
		signers = append(signers, s)
		offered = append(offered, "configured "+s.PublicKey().Type()+" key "+ssh.FingerprintSHA256(s.PublicKey()))
	}
	if sock := os.Getenv("SSH_AUTH_SOCK"); sock != "" && !cfg.IdentitiesOnly {
		if conn, err := net.Dial("unix", sock); err == nil {
			agentSigners, err := agent.NewClient(conn).Signers()
			if err == nil {
				signers = append(signers, agentSigners...)
				if len(agentSigners) > 0 {
					offered = append(offered, fmt.Sprintf("%d key(s) from ssh-agent", len(agentSigners)))
				}
				cfg.logf("ssh-agent at %s holds %d key(s)", sock, len(agentSigners))
			}
		} else {
			cfg.logf("ssh-agent at %s: %v", sock, err)
		}
	}
	files := cfg.IdentityFiles
	explicit := len(files) > 0
	if !explicit && !cfg.IdentitiesOnly {
		files = defaultIdentityFiles()
	}
	for _, f := range files {
		f = expandHome(f)
		pem, err := os.ReadFile(f)
		if err != nil {
			if explicit {
				return nil, nil, fmt.Errorf("identity file %s: %w", f, err)
			}
			continue
		}
		s, err := ssh.ParsePrivateKey(pem)
		var missing *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &missing):
			encrypted = append(encrypted, f)
			continue
		case err != nil:
			return nil, nil, fmt.Errorf("identity file %s: %w", f, err)
		}
		if cert, err := readCert(f + "-cert.pub"); err == nil {
			if cs, err := ssh.NewCertSigner(cert, s); err == nil {
				signers = append(signers, cs)
				offered = append(offered, f+"-cert.pub")
			}
		}
		signers = append(signers, s)
		offered = append(offered, f)
		cfg.logf("identity file %s (%s)", f, ssh.FingerprintSHA256(s.PublicKey()))
	}
	if len(signers) == 0 {
		if len(encrypted) > 0 {
			return nil, nil, fmt.Errorf("%w: %s is protected by a passphrase and gitric never prompts for one; "+
				"load it into your agent first: eval \"$(ssh-agent)\" && ssh-add %s", ErrAuth, strings.Join(encrypted, ", "), encrypted[0])
		}
		return nil, nil, fmt.Errorf("%w: no SSH key to offer: no ssh-agent (SSH_AUTH_SOCK), and none of %s exists; "+
			"create one with ssh-keygen -t ed25519 or configure a key", ErrAuth, strings.Join(files, ", "))
	}
	describe := func() string {
		d := strings.Join(offered, ", ")
		if len(encrypted) > 0 {
			d += "; not offered, passphrase-protected: " + strings.Join(encrypted, ", ") + " (ssh-add it)"
		}
		return d
	}
	return ssh.PublicKeys(signers...), describe, nil
}

func readCert(path string) (*ssh.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil, err
	}
	cert, ok := pk.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("%s is not a certificate", path)
	}
	return cert, nil
}

func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}
