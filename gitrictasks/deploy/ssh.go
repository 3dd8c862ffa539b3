package deploy

import (
	"context"
	"net"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gitric/gitric/gitrictasks/internal/remote"
)

// SSH says how to reach and trust hosts. Its fields act like ssh's command
// line options: a field that is set beats ssh_config, which fills in the
// rest. The zero value reads ~/.ssh/config and /etc/ssh/ssh_config, checks
// host keys against ~/.ssh/known_hosts, and authenticates with ssh-agent
// and ~/.ssh/id_*. The fields apply to jump hosts as well.
type SSH struct {
	// ConfigFile is the ssh_config file to read instead of ~/.ssh/config
	// and /etc/ssh/ssh_config (ssh -F); "none" reads none.
	ConfigFile string
	// KnownHostsFiles replace ssh_config's UserKnownHostsFile; the first
	// one receives keys accepted as new.
	KnownHostsFiles []string
	// HostKeyPolicy overrides ssh_config's StrictHostKeyChecking. A
	// changed key is refused whatever it says.
	HostKeyPolicy HostKeyPolicy
	// IdentityFiles are private keys to offer before ssh_config's (ssh -i).
	IdentityFiles []string
	// Signers are offered before anything else (keys held in memory).
	Signers []ssh.Signer
	// IdentitiesOnly offers only Signers and the configured identity files.
	IdentitiesOnly bool
	// IdentityAgent is the ssh-agent socket; "none" for no agent.
	IdentityAgent string
	// ProxyJump is the jump host chain ([user@]host[:port],...; ssh -J);
	// "none" connects directly.
	ProxyJump string
	// HostKeyCallback, when set, replaces the known_hosts check.
	HostKeyCallback ssh.HostKeyCallback
	// ConnectTimeout bounds TCP connect, handshake and authentication
	// together, per hop (default ssh_config's, else 10s).
	ConnectTimeout time.Duration
	// KeepAliveInterval and KeepAliveCountMax detect a dead server
	// (defaults ssh_config's ServerAlive*, else 15s and 3).
	KeepAliveInterval time.Duration
	KeepAliveCountMax int
	// Dial opens the TCP connection to the first hop.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// HostKeyPolicy is what to do with a host key known_hosts does not list.
type HostKeyPolicy string

// Host key policies, as ssh_config's StrictHostKeyChecking.
const (
	// HostKeyFromConfig leaves it to ssh_config (default: refuse).
	HostKeyFromConfig HostKeyPolicy = ""
	// HostKeyStrict refuses unknown keys.
	HostKeyStrict HostKeyPolicy = "yes"
	// HostKeyAcceptNew records unknown keys, and still refuses changed ones.
	HostKeyAcceptNew HostKeyPolicy = "accept-new"
)

func (s SSH) config() remote.Config {
	return remote.Config{
		SSHConfigFile:         s.ConfigFile,
		KnownHostsFiles:       s.KnownHostsFiles,
		StrictHostKeyChecking: string(s.HostKeyPolicy),
		IdentityFiles:         s.IdentityFiles,
		Signers:               s.Signers,
		IdentitiesOnly:        s.IdentitiesOnly,
		IdentityAgent:         s.IdentityAgent,
		ProxyJump:             s.ProxyJump,
		HostKeyCallback:       s.HostKeyCallback,
		ConnectTimeout:        s.ConnectTimeout,
		KeepAliveInterval:     s.KeepAliveInterval,
		KeepAliveCountMax:     s.KeepAliveCountMax,
		Dial:                  s.Dial,
	}
}
