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
	// ErrAuth means the host accepted none of our keys.
	ErrAuth = errors.New("authentication failed")
	// ErrUnreachable means no SSH connection could be set up in time.
	ErrUnreachable = errors.New("host unreachable")
)

// HostKeyError is a refused host key: unknown, or different from the one
// known_hosts records.
type HostKeyError struct {
	Host        string   // host:port as dialled
	KeyType     string   // type of the key the host offered
	Fingerprint string   // SHA256 fingerprint of the key the host offered
	Files       []string // known_hosts files consulted
	Changed     bool
	Known       []string // file:line of the entries that disagree (Changed only)
	Trust       string   // a command that would trust the key
}

func (e *HostKeyError) Error() string {
	if e.Changed {
		return fmt.Sprintf("%s: %v: it offered %s key %s, but %s records another key for it. "+
			"This can mean someone is intercepting the connection. If the host really was reinstalled, "+
			"check the new fingerprint out of band, then remove the old entry with: %s",
			e.Host, ErrHostKeyChanged, e.KeyType, e.Fingerprint, strings.Join(e.Known, ", "), e.Trust)
	}
	files := "no known_hosts file exists"
	if len(e.Files) > 0 {
		files = "not in " + strings.Join(e.Files, ", ")
	}
	return fmt.Sprintf("%s: %v (%s); it offered %s key %s. "+
		"If that is the host's key (check it on the host: ssh-keygen -lf /etc/ssh/ssh_host_%s_key.pub), trust it with: %s",
		e.Host, ErrHostKeyUnknown, files, e.KeyType, e.Fingerprint, keyFileType(e.KeyType), e.Trust)
}

// Is makes errors.Is(err, ErrHostKeyUnknown/ErrHostKeyChanged) work.
func (e *HostKeyError) Is(target error) bool {
	return (target == ErrHostKeyChanged && e.Changed) || (target == ErrHostKeyUnknown && !e.Changed)
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
