package remote

import (
	"errors"
	"fmt"
	"strings"
)

var (
	// ErrHostKeyUnknown means no known_hosts file lists the host.
	ErrHostKeyUnknown = errors.New("host key is unknown")
	// ErrHostKeyChanged means known_hosts lists the host with other keys.
	ErrHostKeyChanged = errors.New("host key has changed")
	// ErrHostKeyRevoked means the host offered a key marked @revoked.
	ErrHostKeyRevoked = errors.New("host key is revoked")
	// ErrAuth means the host accepted none of our keys.
	ErrAuth = errors.New("authentication failed")
	// ErrUnreachable means no SSH connection could be set up in time.
	ErrUnreachable = errors.New("host unreachable")
	// ErrConnectionLost means an established connection died: the server
	// stopped answering keepalives, or the connection was cut.
	ErrConnectionLost = errors.New("connection lost")
)

// HostKeyError is a refused host key: unknown, different from the one
// known_hosts records, or revoked.
type HostKeyError struct {
	Host        string   // the host as written (alias or address)
	Address     string   // the name looked up in known_hosts: host, [host]:port or HostKeyAlias
	KeyType     string   // type of the key the host offered
	Fingerprint string   // SHA256 fingerprint of the key the host offered
	Files       []string // known_hosts files consulted
	Changed     bool
	Revoked     bool
	Known       []string // file:line of the entries that disagree (Changed), or of the @revoked entry
	Trust       string   // a command that would trust the key (none for a revoked key)
	// CertProblem says why the host's certificate was not accepted, when
	// it offered one.
	CertProblem string
}

func (e *HostKeyError) Error() string {
	who := e.Host
	if e.Address != "" && !strings.EqualFold(e.Address, e.Host) {
		who += " (" + e.Address + ")"
	}
	cert := ""
	if e.CertProblem != "" {
		cert = "; its host certificate was not accepted: " + e.CertProblem
	}
	switch {
	case e.Revoked:
		return fmt.Sprintf("%s: %v: it offered %s key %s, which %s marks @revoked; refusing to connect%s",
			who, ErrHostKeyRevoked, e.KeyType, e.Fingerprint, strings.Join(e.Known, ", "), cert)
	case e.Changed && e.Fingerprint == "":
		return fmt.Sprintf("%s: %v: it offers only %s host keys, but %s records keys of other types for it. "+
			"This can mean someone is intercepting the connection. If the host really was reinstalled, "+
			"check its new key out of band, then remove the old entries with: %s",
			who, ErrHostKeyChanged, e.KeyType, strings.Join(e.Known, ", "), e.Trust)
	case e.Changed:
		return fmt.Sprintf("%s: %v: it offered %s key %s, but %s records another key for it%s. "+
			"This can mean someone is intercepting the connection. If the host really was reinstalled, "+
			"check the new fingerprint out of band, then remove the old entry with: %s",
			who, ErrHostKeyChanged, e.KeyType, e.Fingerprint, strings.Join(e.Known, ", "), cert, e.Trust)
	}
	files := "and no known_hosts file exists"
	if len(e.Files) > 0 {
		files = "not in " + strings.Join(e.Files, ", ")
	}
	return fmt.Sprintf("%s: %v (%s)%s; it offered %s key %s. "+
		"If that is the host's key (check it on the host: ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub), trust it with: %s "+
		"(or let gitric record it on first contact: StrictHostKeyChecking accept-new)",
		who, ErrHostKeyUnknown, files, cert, e.KeyType, e.Fingerprint, keyFileType(e.KeyType), e.Trust)
}

// Is makes errors.Is(err, ErrHostKeyUnknown/ErrHostKeyChanged/ErrHostKeyRevoked) work.
func (e *HostKeyError) Is(target error) bool {
	switch target {
	case ErrHostKeyRevoked:
		return e.Revoked
	case ErrHostKeyChanged:
		return e.Changed && !e.Revoked
	case ErrHostKeyUnknown:
		return !e.Changed && !e.Revoked
	}
	return false
}

// ExitError is a remote command that ran and failed.
type ExitError struct {
	Host   string
	Cmd    string // a short name for what ran, not the whole script
	Status int    // exit status, or -1 when killed by a signal
	Signal string
	Stderr string // the tail of what it printed on stderr, if captured
}

func (e *ExitError) Error() string {
	how := fmt.Sprintf("exit status %d", e.Status)
	if e.Signal != "" {
		how = "killed by signal " + e.Signal
	}
	msg := fmt.Sprintf("%s: %s failed (%s)", e.Host, e.Cmd, how)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}
