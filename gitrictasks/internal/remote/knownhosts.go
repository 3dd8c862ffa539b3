package remote

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// This file reads known_hosts files as OpenSSH does (sshd(8),
// SSH_KNOWN_HOSTS_FILE_FORMAT): plain and hashed (|1|salt|hash) host
// fields, [host]:port, patterns with * ? and !, @cert-authority and
// @revoked lines. A line that cannot be read is skipped, as ssh does.
//
// Each line is parsed by x/crypto's ssh.ParseKnownHosts, which checks
// that the key's declared type is the one its blob encodes, as
// OpenSSH's sshkey_read does. Reading files and matching host names is
// ours: golang.org/x/crypto/ssh/knownhosts (and github.com/skeema/
// knownhosts, which wraps it) refuse a whole file for one bad line, match
// patterns case-sensitively, let * not match an empty run, ignore
// [host]:* port patterns, count @cert-authority keys as the host's own
// keys, and refuse a certificate from an unknown CA instead of checking
// the plain key. TestKnownHostsLibraries shows each case against ssh.

const (
	markerCA      = "@cert-authority"
	markerRevoked = "@revoked"
)

// knownLine is one usable line of a known_hosts file.
type knownLine struct {
	file   string
	line   int
	marker string // "", markerCA or markerRevoked
	hosts  string // the host field as written
	key    ssh.PublicKey
}

func (l *knownLine) where() string { return fmt.Sprintf("%s:%d", l.file, l.line) }

// matches says whether the line's host field lists name (lower case).
func (l *knownLine) matches(name string) bool {
	return hostFieldMatches(l.hosts, name)
}

// hostFieldMatches is OpenSSH's match_maybe_hashed: a field starting
// with | is one hashed name, anything else a pattern list.
func hostFieldMatches(field, name string) bool {
	if strings.HasPrefix(field, "|") {
		salt, hash, ok := decodeHashed(field)
		return ok && hmac.Equal(hashHost(name, salt), hash)
	}
	return matchPatternList(name, field, true)
}

// decodeHashed reads a |1|salt|hash field. (x/crypto's knownhosts has
// the same code, unexported.)
func decodeHashed(field string) (salt, hash []byte, ok bool) {
	parts := strings.Split(field, "|")
	if len(parts) != 4 || parts[0] != "" || parts[1] != "1" {
		return nil, nil, false
	}
	salt, err1 := base64.StdEncoding.DecodeString(parts[2])
	hash, err2 := base64.StdEncoding.DecodeString(parts[3])
	return salt, hash, err1 == nil && err2 == nil && len(salt) == sha1.Size
}

func hashHost(name string, salt []byte) []byte {
	m := hmac.New(sha1.New, salt)
	m.Write([]byte(name))
	return m.Sum(nil)
}

// knownHosts is the content of some known_hosts files.
type knownHosts struct {
	files   []string // the files that exist
	lines   []knownLine
	skipped []string // file:line: why, for lines that could not be read
}

// loadKnownHosts reads files; missing ones are left out.
func loadKnownHosts(files []string) (*knownHosts, error) {
	kh := &knownHosts{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read known_hosts: %w", err)
		}
		kh.files = append(kh.files, f)
		kh.parse(f, data)
	}
	return kh, nil
}

func (kh *knownHosts) parse(file string, data []byte) {
	for i, text := range strings.Split(string(data), "\n") {
		if l, err := parseKnownLine(text); err != nil {
			kh.skipped = append(kh.skipped, fmt.Sprintf("%s:%d: %v", file, i+1, err))
		} else if l != nil {
			l.file, l.line = file, i+1
			kh.lines = append(kh.lines, *l)
		}
	}
}

// parseKnownLine reads one line; nil for a blank line or comment.
func parseKnownLine(s string) (*knownLine, error) {
	marker, hosts, key, _, _, err := ssh.ParseKnownHosts([]byte(s))
	switch {
	case errors.Is(err, io.EOF):
		if s = strings.TrimSpace(s); s == "" || s[0] == '#' {
			return nil, nil
		}
		return nil, errors.New("too few fields") // a line of one word, which ParseKnownHosts passes over
	case err != nil:
		return nil, err
	}
	l := &knownLine{hosts: strings.Join(hosts, ","), key: key}
	switch marker {
	case "":
	case markerCA[1:], markerRevoked[1:]:
		l.marker = "@" + marker
	default:
		return nil, fmt.Errorf("unknown marker @%s", marker)
	}
	return l, nil
}

// revoked is the @revoked line listing key (or the key a certificate
// certifies, or its CA), if any.
func (kh *knownHosts) revoked(key ssh.PublicKey) *knownLine {
	keys := []ssh.PublicKey{key}
	if c, ok := key.(*ssh.Certificate); ok {
		keys = []ssh.PublicKey{c.Key, c.SignatureKey}
	}
	for i := range kh.lines {
		l := &kh.lines[i]
		if l.marker != markerRevoked {
			continue
		}
		for _, k := range keys {
			if keyEqual(l.key, k) {
				return l
			}
		}
	}
	return nil
}

// lookup returns the plain and @cert-authority lines that list name.
func (kh *knownHosts) lookup(name string) (plain, cas []*knownLine) {
	for i := range kh.lines {
		l := &kh.lines[i]
		if l.marker == markerRevoked || !l.matches(name) {
			continue
		}
		if l.marker == markerCA {
			cas = append(cas, l)
		} else {
			plain = append(plain, l)
		}
	}
	return plain, cas
}

func keyEqual(a, b ssh.PublicKey) bool {
	return a.Type() == b.Type() && bytes.Equal(a.Marshal(), b.Marshal())
}

// hostKeyAlgorithms are the host key algorithms to ask a host for, from
// what known_hosts holds for it: certificates first when a CA is trusted
// for it, then the types of its known keys. nil (x/crypto's defaults) for
// a host known_hosts does not list. With only CAs listed, plain keys
// follow, so that a host without a certificate is treated as unknown, as
// ssh does, and not as a handshake failure.
func hostKeyAlgorithms(plain, cas []*knownLine) []string {
	if len(plain) == 0 && len(cas) == 0 {
		return nil
	}
	var algos []string
	add := func(a ...string) {
		for _, x := range a {
			if !slices.Contains(algos, x) {
				algos = append(algos, x)
			}
		}
	}
	if len(cas) > 0 {
		add(ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01, ssh.CertAlgoECDSA521v01,
			ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01)
	}
	for _, l := range plain {
		add(algorithmsFor(l.key.Type())...)
	}
	if len(plain) == 0 {
		add(ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
			ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256)
	}
	return algos
}

func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}

// knownHostsLine is the line that records key for name, the name hashed
// (by x/crypto's knownhosts.HashHostname) when hash is set. It is not
// knownhosts.Line, which would rewrite a HostKeyAlias holding a colon.
func knownHostsLine(name string, key ssh.PublicKey, hash bool) string {
	if hash {
		name = knownhosts.HashHostname(name)
	}
	return name + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key)))
}

// appendKnownHost records key for name at the end of file, creating the
// file (and its directory) when needed. It holds an exclusive lock on the
// file meanwhile and looks again under the lock: when another process
// recorded the key for name in the meantime, nothing is written. It
// returns the number of the line that records the key.
func appendKnownHost(file, name string, key ssh.PublicKey, hash bool) (int, error) {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return 0, fmt.Errorf("record the host key: %w", err)
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("record the host key: %w", err)
	}
	defer f.Close()
	unlock, err := lockFile(f)
	if err != nil {
		return 0, fmt.Errorf("record the host key: lock %s: %w", file, err)
	}
	defer unlock()
	data, err := io.ReadAll(f)
	if err != nil {
		return 0, fmt.Errorf("record the host key: %w", err)
	}
	var kh knownHosts
	kh.parse(file, data)
	plain, _ := kh.lookup(name)
	for _, l := range plain {
		if keyEqual(l.key, key) {
			return l.line, nil
		}
	}
	line := knownHostsLine(name, key, hash)
	n := bytes.Count(data, []byte("\n")) + 1
	if len(data) > 0 && data[len(data)-1] != '\n' {
		line = "\n" + line
		n++
	}
	if _, err := f.WriteString(line + "\n"); err != nil {
		return 0, fmt.Errorf("record the host key in %s: %w", file, err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("record the host key in %s: %w", file, err)
	}
	return n, nil
}
