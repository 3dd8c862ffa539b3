package remote

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gitric/gitric/gitrictasks/internal/shell"
)

// hostKeyChecker checks one hop's host key against known_hosts and its
// StrictHostKeyChecking policy.
type hostKeyChecker struct {
	hop      *Hop
	cfg      *Config
	name     string // the name known_hosts lists the hop under
	kh       *knownHosts
	plain    []*knownLine
	cas      []*knownLine
	algos    []string
	callback ssh.HostKeyCallback // Config.HostKeyCallback, when set

	mu  sync.Mutex
	err error  // what the callback refused the key for
	how string // how the key was accepted, for verbose output
}

func newHostKeyChecker(hop *Hop, cfg *Config) (*hostKeyChecker, error) {
	c := &hostKeyChecker{hop: hop, cfg: cfg, name: strings.ToLower(hop.knownHostsName())}
	if cfg.HostKeyCallback != nil {
		c.callback = cfg.HostKeyCallback
		return c, nil
	}
	files := append(append([]string{}, hop.KnownHostsFiles...), hop.GlobalKnownHostsFiles...)
	kh, err := loadKnownHosts(files)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", hop.Name, err)
	}
	for _, s := range kh.skipped {
		cfg.logf("%s: known_hosts line skipped: %s", hop.Name, s)
	}
	c.kh = kh
	c.plain, c.cas = kh.lookup(c.name)
	c.algos = hostKeyAlgorithms(c.plain, c.cas)
	return c, nil
}

// check is the ssh.HostKeyCallback. It remembers why it refused a key,
// so that Dial reports that rather than x/crypto's wrapping of it.
func (c *hostKeyChecker) check(_ string, remote net.Addr, key ssh.PublicKey) error {
	var err error
	if c.callback != nil {
		err = c.callback(c.hop.HostPort(), remote, key)
		c.setResult(err, "accepted by Config.HostKeyCallback")
		return err
	}
	how, err := c.verify(key)
	c.setResult(err, how)
	return err
}

func (c *hostKeyChecker) setResult(err error, how string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err, c.how = err, how
}

func (c *hostKeyChecker) result() (error, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err, c.how
}

// verify decides about key, in OpenSSH's order: revoked keys are refused;
// a certificate signed by a CA known_hosts trusts for the host is
// accepted if valid; otherwise the plain key must be listed for the host.
func (c *hostKeyChecker) verify(key ssh.PublicKey) (string, error) {
	if l := c.kh.revoked(key); l != nil {
		return "", c.keyError(key, func(e *HostKeyError) {
			e.Revoked = true
			e.Known = []string{l.where()}
		})
	}
	certProblem := ""
	if cert, ok := key.(*ssh.Certificate); ok {
		if how, problem := c.verifyCert(cert); problem == "" {
			return how, nil
		} else {
			certProblem = problem
		}
		key = cert.Key // no CA vouches for it: check the plain key, as ssh does
	}
	var sameType, otherType []string
	for _, l := range c.plain {
		if keyEqual(l.key, key) {
			return fmt.Sprintf("host key %s %s matches %s", key.Type(), ssh.FingerprintSHA256(key), l.where()), nil
		}
		if l.key.Type() == key.Type() {
			sameType = append(sameType, l.where())
		} else {
			otherType = append(otherType, l.where())
		}
	}
	if len(sameType) > 0 || len(otherType) > 0 {
		return "", c.keyError(key, func(e *HostKeyError) {
			e.Changed = true
			e.Known = append(sameType, otherType...)
			e.CertProblem = certProblem
		})
	}
	// Unknown host.
	switch c.hop.StrictHostKeyChecking {
	case StrictAcceptNew, StrictNo:
		return c.record(key)
	}
	return "", c.keyError(key, func(e *HostKeyError) { e.CertProblem = certProblem })
}

// verifyCert accepts a host certificate signed by a CA that known_hosts
// trusts for the host, valid now and naming the host. problem says why
// not, "" when accepted.
func (c *hostKeyChecker) verifyCert(cert *ssh.Certificate) (how, problem string) {
	var ca *knownLine
	for _, l := range c.cas {
		if keyEqual(l.key, cert.SignatureKey) {
			ca = l
			break
		}
	}
	if ca == nil {
		if len(c.cas) == 0 {
			return "", "no @cert-authority line in known_hosts lists this host"
		}
		return "", "it is signed by " + ssh.FingerprintSHA256(cert.SignatureKey) + ", not by a CA known_hosts trusts for this host"
	}
	if cert.CertType != ssh.HostCert {
		return "", "it is not a host certificate"
	}
	checker := &ssh.CertChecker{Clock: time.Now}
	if err := checker.CheckCert(c.hop.principal(), cert); err != nil {
		return "", strings.TrimPrefix(err.Error(), "ssh: ")
	}
	return fmt.Sprintf("host certificate %s (serial %d, id %q) signed by the CA at %s", ssh.FingerprintSHA256(cert.Key), cert.Serial, cert.KeyId, ca.where()), ""
}

// record accepts an unknown host's key and appends it to the first user
// known_hosts file (not to /dev/null, a common "don't record" choice).
func (c *hostKeyChecker) record(key ssh.PublicKey) (string, error) {
	files := c.hop.KnownHostsFiles
	if len(files) == 0 || files[0] == "/dev/null" {
		return fmt.Sprintf("unknown host key %s %s accepted (StrictHostKeyChecking %s), not recorded", key.Type(), ssh.FingerprintSHA256(key), c.hop.StrictHostKeyChecking), nil
	}
	n, err := appendKnownHost(files[0], c.name, key, c.hop.HashKnownHosts)
	if err != nil {
		return "", fmt.Errorf("%s: %w", c.hop.Name, err)
	}
	return fmt.Sprintf("new host key %s %s recorded in %s:%d (StrictHostKeyChecking %s)", key.Type(), ssh.FingerprintSHA256(key), files[0], n, c.hop.StrictHostKeyChecking), nil
}

func (c *hostKeyChecker) keyError(key ssh.PublicKey, set func(*HostKeyError)) *HostKeyError {
	e := &HostKeyError{
		Host:        c.hop.Name,
		Address:     c.name,
		KeyType:     key.Type(),
		Fingerprint: ssh.FingerprintSHA256(key),
		Files:       c.kh.files,
	}
	set(e)
	e.Trust = c.trustHint(key, e)
	return e
}

// trustHint is the way to trust the key: the exact command.
func (c *hostKeyChecker) trustHint(key ssh.PublicKey, e *HostKeyError) string {
	file := c.hintFile()
	switch {
	case e.Revoked:
		return ""
	case e.Changed:
		return "ssh-keygen -R " + shell.Quote(c.name) + " -f " + file
	case c.hop.HostKeyAlias != "":
		return "echo " + shell.Quote(knownHostsLine(c.name, key, false)) + " >> " + file
	}
	h := ""
	if c.hop.HashKnownHosts {
		h = "-H "
	}
	port := ""
	if c.hop.Port != 22 {
		port = fmt.Sprintf("-p %d ", c.hop.Port)
	}
	return fmt.Sprintf("ssh-keyscan %s%s-t %s %s >> %s", h, port, keyFileType(key.Type()), shell.Quote(c.hop.HostName), file)
}

// hintFile is the known_hosts file a hint names, quoted for the shell:
// the one that receives new keys.
func (c *hostKeyChecker) hintFile() string {
	if len(c.hop.KnownHostsFiles) == 0 {
		return "~/.ssh/known_hosts" // for the shell to expand
	}
	return shell.Quote(c.hop.KnownHostsFiles[0])
}

// algorithmMismatch turns a failed host key negotiation into the refusal
// it is: known_hosts holds keys for the host of types it does not offer.
func (c *hostKeyChecker) algorithmMismatch(err error) *HostKeyError {
	var ne *ssh.AlgorithmNegotiationError
	if c.kh == nil || !errors.As(err, &ne) || ne.What != "host key" {
		return nil
	}
	e := &HostKeyError{
		Host:    c.hop.Name,
		Address: c.name,
		KeyType: strings.Join(ne.RequestedAlgorithms, ", "),
		Files:   c.kh.files,
		Changed: true,
	}
	for _, l := range append(append([]*knownLine{}, c.plain...), c.cas...) {
		e.Known = append(e.Known, l.where())
	}
	e.Trust = "ssh-keygen -R " + shell.Quote(c.name) + " -f " + c.hintFile()
	return e
}

func keyFileType(t string) string {
	switch {
	case strings.Contains(t, "ed25519"):
		return "ed25519"
	case strings.Contains(t, "ecdsa"):
		return "ecdsa"
	default:
		return "rsa"
	}
}
