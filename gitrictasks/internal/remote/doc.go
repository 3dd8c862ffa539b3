// Package remote is the target side of a deploy: one SSH connection per
// host (golang.org/x/crypto/ssh), over which every command and the push
// itself run as sessions. Nothing runs the ssh program, but hosts are
// reached, trusted and logged in to the way OpenSSH's ssh does it, with
// the user's own ~/.ssh.
//
// # Addresses and ssh_config
//
// ParseAddress reads a host as a user writes it: [user@]host[:port],
// host being a name, an IP address ([::1] for IPv6) or an ssh_config
// alias. A part not written is left to ssh_config, then to ssh's
// defaults, as on ssh's command line. Config holds what the caller sets
// (like ssh's options, they beat ssh_config).
//
// Resolve applies ssh_config to an Address without connecting: Host
// and Match blocks (host, originalhost, user, localuser, localnetwork,
// tagged, exec, all, canonical, final), Include, %-tokens, ${VAR} and ~,
// the first value obtained winning, and ProxyJump chains, each jump host
// resolved through the config in turn. The result is a Target: its Hops,
// the jump hosts in order and then the host, each with what the config
// said about it. Target.Identity names the account an address reaches
// (the machine after ssh_config, and the user), so that two addresses
// of one account can be told apart from two accounts. A ProxyCommand is
// refused: use ProxyJump.
//
// # Connecting
//
// Dial resolves an Address and connects hop by hop, each jump host's
// connection forwarding the next, each hop within its ConnectTimeout
// (TCP, handshake and authentication together). The resulting Host is
// one connection: Start, Run and Output each open a session on it, and
// keepalives (ServerAliveInterval, ServerAliveCountMax) close it, with
// ErrConnectionLost, when the host stops answering. A command that fails
// is an *ExitError holding the tail of its stderr.
//
// # Host keys
//
// Every hop's key is checked against its known_hosts files
// (UserKnownHostsFile, GlobalKnownHostsFile, Config.KnownHostsFiles),
// read as sshd(8) describes them: plain and hashed names, [host]:port,
// patterns with *, ? and !, HostKeyAlias, @cert-authority lines
// trusting host certificates (valid now and naming the host) and
// @revoked keys, which are refused whatever else is listed. A line that
// cannot be read is skipped, as ssh does, and logged. For a host that
// known_hosts lists, only the algorithms of its known keys are offered,
// so that it shows one of those: certificates first when a CA is
// trusted for it, then, with only a CA listed, plain keys, so that a
// host without a certificate reads as unknown.
//
// Under StrictHostKeyChecking (Config's, else ssh_config's):
//   - StrictYes, the default: an unknown key is refused with
//     ErrHostKeyUnknown; the *HostKeyError gives its SHA256 fingerprint
//     and the command that would trust it (ssh-keyscan ... >> file).
//   - StrictAcceptNew and StrictNo: an unknown host is accepted and its
//     key appended to the first user known_hosts file, hashed under
//     HashKnownHosts: exactly one line, under an exclusive lock on the
//     file, however many connections record it at once.
//   - Whatever the policy, a key that differs from the ones recorded is
//     refused with ErrHostKeyChanged, naming each file:line that records
//     the host, and a revoked key with ErrHostKeyRevoked.
//
// Config.HostKeyCallback replaces all of this, for a host whose key the
// caller knows otherwise.
//
// The reader is this package's own, with lines parsed by x/crypto's
// ssh.ParseKnownHosts: golang.org/x/crypto/ssh/knownhosts and
// github.com/skeema/knownhosts, which wraps it, refuse a whole file for
// one bad line and decide several cases otherwise than ssh (case,
// patterns and ports, CA lines, host key algorithms); the test
// TestKnownHostsLibraries runs each such case against them and ssh.
//
// # Authentication
//
// Keys are offered in this order: Config.Signers, the configured
// identity files (Config.IdentityFiles, then IdentityFile), through
// ssh-agent when the file cannot be used without it (a passphrase, or
// only its .pub on disk), the agent's other keys (unless
// IdentitiesOnly), then ssh's default ~/.ssh/id_* files; a certificate
// (CertificateFile, or the key's -cert.pub) just before its key. Nothing
// is ever prompted for: a passphrase-protected key not in the agent is
// reported with the ssh-add command that loads it. A refused login is
// ErrAuth, listing what was offered.
//
// # Errors
//
// Errors name the host as written and wrap one of ErrBadAddress,
// ErrConfig (with the ssh_config file:line), ErrHostKeyUnknown,
// ErrHostKeyChanged, ErrHostKeyRevoked (those three as a *HostKeyError),
// ErrAuth, ErrUnreachable or ErrConnectionLost, for errors.Is and
// errors.As. Config.Logf receives what was decided while connecting
// (config lines, key, known_hosts entry); nothing secret is logged.
package remote
