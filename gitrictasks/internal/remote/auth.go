package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// identity is a key offered to a host.
type identity struct {
	signer ssh.Signer
	label  string // what it is, for messages: file or agent, type, fingerprint
}

// identities are the keys one hop offers, in order, and what was left
// out and why.
type identities struct {
	list      []identity
	encrypted []string // passphrase-protected files not in the agent
	agentSock string
	agentErr  error // why the agent could not be used, if it could not
	agentKeys int
	conn      net.Conn // to the agent; closed by close

	mu   sync.Mutex
	used *identity // the key the host accepted
}

func (ids *identities) close() {
	if ids.conn != nil {
		ids.conn.Close()
	}
}

// gatherIdentities collects the keys to offer, in this order: Config's
// Signers; the configured identity files (each through the agent when the
// agent holds it, which is how a passphrase-protected key is used); the
// agent's other keys, unless IdentitiesOnly; then ssh's default identity
// files. A certificate (CertificateFile, or the file's -cert.pub) comes
// just before its key. Trying the configured keys first keeps a host with
// a low MaxAuthTries from cutting us off before the right key.
func gatherIdentities(ctx context.Context, hop *Hop, cfg *Config) (*identities, error) {
	ids := &identities{agentSock: hop.IdentityAgent}
	seen := map[string]bool{}
	certs := loadCerts(hop, cfg)
	add := func(s ssh.Signer, label string) {
		k := string(s.PublicKey().Marshal())
		if seen[k] {
			return
		}
		seen[k] = true
		ids.list = append(ids.list, identity{s, label})
	}
	addWithCerts := func(s ssh.Signer, label string) {
		for _, c := range certs {
			if keyEqual(c.cert.Key, s.PublicKey()) {
				if cs, err := ssh.NewCertSigner(c.cert, s); err == nil {
					add(cs, c.file+" with "+label)
				}
			}
		}
		add(s, label)
	}

	// The agent is asked for its keys only when they may be used: all of
	// them without IdentitiesOnly, else those of configured files that
	// cannot be read without it.
	var agentSigners []ssh.Signer
	var agentFatal error
	agentAsked := false
	askAgent := func() {
		if agentAsked || ids.agentSock == "" {
			return
		}
		agentAsked = true
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", ids.agentSock)
		if err == nil {
			ids.conn = conn
			// The agent answers within the connect timeout, or not at all.
			if deadline, ok := ctx.Deadline(); ok {
				_ = conn.SetDeadline(deadline)
			}
			agentSigners, err = agent.NewClient(conn).Signers()
		}
		switch {
		case err != nil && (ctx.Err() != nil || pastDeadline(ctx)): // x/crypto's agent hides the timeout
			agentFatal = fmt.Errorf("%s: %w: the ssh-agent at %s did not answer within %s (connect timeout)", hop.Name, ErrAuth, ids.agentSock, hop.ConnectTimeout)
		case err != nil:
			ids.agentErr = err
			cfg.logf("%s: ssh-agent at %s cannot be used: %v", hop.Name, ids.agentSock, err)
		}
		ids.agentKeys = len(agentSigners)
	}
	fromAgent := func(pub ssh.PublicKey) ssh.Signer {
		if pub == nil {
			return nil
		}
		askAgent()
		for _, s := range agentSigners {
			if keyEqual(s.PublicKey(), pub) {
				return s
			}
		}
		return nil
	}
	fail := func(err error) (*identities, error) {
		ids.close()
		return nil, err
	}

	for _, s := range cfg.Signers {
		addWithCerts(s, "in-memory "+keyLabel(s.PublicKey()))
	}
	files := hop.IdentityFiles
	explicit := !hop.DefaultIdentities
	var defaults []string
	if !explicit {
		defaults, files = files, nil
	}
	addFile := func(f string, mustExist bool) error {
		s, pub, err := readIdentity(f)
		var missing *ssh.PassphraseMissingError
		switch {
		case err == nil:
			addWithCerts(s, f+" ("+keyLabel(s.PublicKey())+")")
			return nil
		case errors.As(err, &missing):
			if a := fromAgent(pub); a != nil {
				addWithCerts(a, f+" via ssh-agent ("+keyLabel(pub)+")")
			} else {
				ids.encrypted = append(ids.encrypted, f)
			}
			return nil
		case errors.Is(err, fs.ErrNotExist) && pub != nil:
			// Only the .pub file is here: the key lives in the agent.
			if a := fromAgent(pub); a != nil {
				addWithCerts(a, f+" via ssh-agent ("+keyLabel(pub)+")")
				return nil
			}
			cfg.logf("%s: identity %s: only %s.pub is here, and the agent does not hold it", hop.Name, f, f)
			return nil
		case errors.Is(err, fs.ErrNotExist) && !mustExist:
			return nil
		case !mustExist:
			cfg.logf("%s: identity %s skipped: %v", hop.Name, f, err)
			return nil
		default:
			return fmt.Errorf("%s: identity file %s: %w", hop.Name, f, err)
		}
	}
	for i, f := range files {
		// Config.IdentityFiles (the first ones) must exist, like a key
		// given by GITRIC_IDENTITY; ssh_config's may be missing, as in ssh.
		if err := addFile(f, i < len(cfg.IdentityFiles)); err != nil {
			return fail(err)
		}
	}
	if !hop.IdentitiesOnly {
		askAgent()
		for _, s := range agentSigners {
			addWithCerts(s, "ssh-agent key "+keyLabel(s.PublicKey()))
		}
	}
	for _, f := range defaults {
		_ = addFile(f, false)
	}
	switch {
	case agentFatal != nil:
		return fail(agentFatal)
	case len(ids.list) == 0:
		return fail(ids.noKeyError(hop))
	}
	return ids, nil
}

func pastDeadline(ctx context.Context) bool {
	d, ok := ctx.Deadline()
	return ok && !time.Now().Before(d)
}

func (ids *identities) noKeyError(hop *Hop) error {
	if len(ids.encrypted) > 0 {
		return fmt.Errorf("%s: %w: %s is protected by a passphrase and gitric never prompts for one; "+
			"load it into your ssh-agent first: eval \"$(ssh-agent)\" && ssh-add %s", hop.Name, ErrAuth,
			strings.Join(ids.encrypted, ", "), ids.encrypted[0])
	}
	agent := "no ssh-agent (SSH_AUTH_SOCK is not set)"
	switch {
	case ids.agentSock != "" && ids.agentErr != nil:
		agent = fmt.Sprintf("the ssh-agent at %s cannot be used (%v)", ids.agentSock, ids.agentErr)
	case ids.agentSock != "" && hop.IdentitiesOnly:
		agent = "the ssh-agent holds none of the configured keys (IdentitiesOnly)"
	case ids.agentSock != "":
		agent = "the ssh-agent holds no key"
	}
	return fmt.Errorf("%s: %w: no SSH key to offer: %s, and none of %s exists; "+
		"create one with ssh-keygen -t ed25519, or name one with IdentityFile in ~/.ssh/config",
		hop.Name, ErrAuth, agent, strings.Join(hop.IdentityFiles, ", "))
}

// readIdentity reads a private key file. pub is its public key when it
// can be known without the passphrase (from the file itself or from
// file.pub), also when the private key file is missing.
func readIdentity(f string) (s ssh.Signer, pub ssh.PublicKey, err error) {
	data, err := os.ReadFile(f)
	if err != nil {
		pub, _ = readPublicKey(f + ".pub")
		return nil, pub, err
	}
	s, err = ssh.ParsePrivateKey(data)
	if err == nil {
		return s, s.PublicKey(), nil
	}
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		pub = missing.PublicKey
		if pub == nil {
			pub, _ = readPublicKey(f + ".pub")
		}
	}
	return nil, pub, err
}

func readPublicKey(path string) (ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pk, _, _, _, err := ssh.ParseAuthorizedKey(data)
	return pk, err
}

type certFile struct {
	file string
	cert *ssh.Certificate
}

// loadCerts reads the CertificateFile certificates and the -cert.pub
// files next to the identity files.
func loadCerts(hop *Hop, cfg *Config) []certFile {
	var out []certFile
	read := func(path string, logMissing bool) {
		pk, err := readPublicKey(path)
		if err != nil {
			if logMissing || !errors.Is(err, fs.ErrNotExist) {
				cfg.logf("%s: certificate %s skipped: %v", hop.Name, path, err)
			}
			return
		}
		if c, ok := pk.(*ssh.Certificate); ok && c.CertType == ssh.UserCert {
			out = append(out, certFile{path, c})
		}
	}
	for _, f := range hop.CertificateFiles {
		read(f, true)
	}
	for _, f := range hop.IdentityFiles {
		read(f+"-cert.pub", false)
	}
	return out
}

func keyLabel(k ssh.PublicKey) string {
	t := strings.TrimPrefix(strings.TrimSuffix(k.Type(), "-cert-v01@openssh.com"), "ssh-")
	return strings.ToUpper(t) + " " + ssh.FingerprintSHA256(k)
}

// authMethod offers the identities, remembering which one the host took.
func (ids *identities) authMethod() ssh.AuthMethod {
	signers := make([]ssh.Signer, len(ids.list))
	for i := range ids.list {
		signers[i] = recordUse(ids.list[i].signer, func() {
			ids.mu.Lock()
			ids.used = &ids.list[i]
			ids.mu.Unlock()
		})
	}
	return ssh.PublicKeys(signers...)
}

func (ids *identities) usedLabel() string {
	ids.mu.Lock()
	defer ids.mu.Unlock()
	if ids.used == nil {
		return "an unknown key"
	}
	return ids.used.label
}

// describe lists what was offered, for an authentication failure.
func (ids *identities) describe() string {
	var labels []string
	for _, id := range ids.list {
		labels = append(labels, id.label)
	}
	d := strings.Join(labels, ", ")
	if len(ids.encrypted) > 0 {
		d += "; not offered, because protected by a passphrase and not in the agent: " + strings.Join(ids.encrypted, ", ") +
			" (load it with: ssh-add " + ids.encrypted[0] + ")"
	}
	return d
}

// recordUse wraps s so that signing with it calls used, keeping the
// algorithm interfaces x/crypto looks for (rsa-sha2-* need them).
func recordUse(s ssh.Signer, used func()) ssh.Signer {
	base := usedSigner{s, used}
	as, ok := s.(ssh.AlgorithmSigner)
	if !ok {
		return base
	}
	alg := usedAlgSigner{base, as}
	if ms, ok := s.(ssh.MultiAlgorithmSigner); ok {
		return usedMultiSigner{alg, ms}
	}
	return alg
}

type usedSigner struct {
	ssh.Signer
	used func()
}

func (s usedSigner) Sign(rand io.Reader, data []byte) (*ssh.Signature, error) {
	s.used()
	return s.Signer.Sign(rand, data)
}

type usedAlgSigner struct {
	usedSigner
	as ssh.AlgorithmSigner
}

func (s usedAlgSigner) SignWithAlgorithm(rand io.Reader, data []byte, algorithm string) (*ssh.Signature, error) {
	s.used()
	return s.as.SignWithAlgorithm(rand, data, algorithm)
}

type usedMultiSigner struct {
	usedAlgSigner
	ms ssh.MultiAlgorithmSigner
}

func (s usedMultiSigner) Algorithms() []string { return s.ms.Algorithms() }
