package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gitric/gitric/gitrictasks/internal/stream"
)

// Defaults for what neither Config nor ssh_config sets.
const (
	DefaultConnectTimeout    = 10 * time.Second
	DefaultKeepAliveInterval = 15 * time.Second
	DefaultKeepAliveCountMax = 3
)

// Config says how to reach and trust hosts. Its fields act like ssh's
// command line options: a field that is set beats ssh_config, which
// fills in the rest. The zero value uses ~/.ssh/config and
// /etc/ssh/ssh_config, ~/.ssh/known_hosts, ssh-agent and ~/.ssh/id_*.
// The fields apply to jump hosts as well as to the host.
type Config struct {
	// SSHConfigFile is the ssh_config file to read instead of
	// ~/.ssh/config and /etc/ssh/ssh_config (ssh -F); "none" reads none.
	SSHConfigFile string
	// KnownHostsFiles replace ssh_config's UserKnownHostsFile (default
	// ~/.ssh/known_hosts); the first one receives keys accepted as new.
	// GlobalKnownHostsFile is still read.
	KnownHostsFiles []string
	// StrictHostKeyChecking overrides ssh_config's: StrictYes (the
	// default), StrictAcceptNew or StrictNo. A changed key is refused
	// whatever it says.
	StrictHostKeyChecking string
	// IdentityFiles are private keys to offer before ssh_config's
	// IdentityFile ones (ssh -i); they must exist. When neither names a
	// key, ~/.ssh/id_rsa, id_ecdsa and id_ed25519 are tried.
	IdentityFiles []string
	// Signers are offered before anything else (a key held in memory).
	Signers []ssh.Signer
	// IdentitiesOnly offers only Signers and the configured identity
	// files (through the agent when it holds them), not the agent's other
	// keys. ssh_config's IdentitiesOnly yes does the same.
	IdentitiesOnly bool
	// IdentityAgent is the ssh-agent socket; "none" for no agent. Default:
	// ssh_config's IdentityAgent, else $SSH_AUTH_SOCK.
	IdentityAgent string
	// ProxyJump, when set, is the jump host chain to the host
	// ([user@]host[:port],...; ssh -J), replacing ssh_config's; "none"
	// connects directly.
	ProxyJump string
	// HostKeyCallback, when set, replaces the known_hosts check (the
	// embedded local host pins its throwaway key this way).
	HostKeyCallback ssh.HostKeyCallback
	// ConnectTimeout bounds TCP connect, handshake and authentication
	// together, per hop; default ssh_config's ConnectTimeout, else
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// KeepAliveInterval and KeepAliveCountMax detect a dead server: after
	// CountMax unanswered keepalives the connection is closed, failing
	// whatever runs on it. Defaults: ssh_config's ServerAliveInterval and
	// ServerAliveCountMax, else DefaultKeepAliveInterval and
	// DefaultKeepAliveCountMax. A negative interval (or
	// ServerAliveInterval 0) turns keepalives off.
	KeepAliveInterval time.Duration
	KeepAliveCountMax int
	// Dial opens the TCP connection to the first hop; default
	// net.Dialer.DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logf, when set, receives what was decided while connecting (which
	// ssh_config lines, key and known_hosts entry), for verbose output.
	// Nothing secret is logged.
	Logf func(format string, args ...any)
}

func (c *Config) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// Host is an open connection to one target, through its jump hosts.
type Host struct {
	addr    Address
	target  *Target
	client  *ssh.Client   // to the host itself
	clients []*ssh.Client // every hop's, the host's last
	stop    chan struct{}
	once    sync.Once

	mu      sync.Mutex
	lostErr error // why the connection died under us
}

// Dial connects to addr through its jump hosts, each hop within its
// connect timeout, and authenticates.
func Dial(ctx context.Context, addr Address, cfg Config) (*Host, error) {
	t, err := Resolve(ctx, addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", addr.Name(), err)
	}
	h := &Host{addr: addr, target: t, stop: make(chan struct{})}
	for i := range t.Hops {
		hop := &t.Hops[i]
		var via *ssh.Client
		if i > 0 {
			via = h.clients[i-1]
		}
		switch {
		case i < len(t.Hops)-1:
			cfg.logf("%s: jump host %d of %d, %s: %s", addr.Name(), i+1, len(t.Hops)-1, hop.Name, hop.describe())
		case i > 0:
			cfg.logf("%s: through %s: %s", addr.Name(), t.Hops[i-1].Name, hop.describe())
		default:
			cfg.logf("%s: %s", addr.Name(), hop.describe())
		}
		c, err := dialHop(ctx, hop, via, &cfg)
		if err != nil {
			h.closeAll()
			if i < len(t.Hops)-1 {
				return nil, fmt.Errorf("%s: through jump host %w", addr.Name(), err)
			}
			if hop.Name != addr.Name() {
				err = fmt.Errorf("%s: %w", addr.Name(), err)
			}
			return nil, err
		}
		h.clients = append(h.clients, c)
	}
	h.client = h.clients[len(h.clients)-1]
	go h.keepAlive(t.Host(), &cfg)
	return h, nil
}

// dialHop opens one hop's connection: TCP (or a channel forwarded by via),
// handshake, host key check and authentication, all within the hop's
// ConnectTimeout.
func dialHop(parent context.Context, hop *Hop, via *ssh.Client, cfg *Config) (*ssh.Client, error) {
	ctx, cancel := context.WithTimeout(parent, hop.ConnectTimeout)
	defer cancel()
	name := hop.Name
	hk, err := newHostKeyChecker(hop, cfg)
	if err != nil {
		return nil, err
	}
	ids, err := gatherIdentities(ctx, hop, cfg)
	if err != nil {
		return nil, err
	}
	defer ids.close()

	timedOut := func() error {
		if err := parent.Err(); err != nil {
			return fmt.Errorf("%s: connecting to %s: %w", name, hop.HostPort(), context.Cause(parent))
		}
		return fmt.Errorf("%s: %w: no SSH answer from %s within %s (connect timeout); the host may be down or a firewall drops the packets",
			name, ErrUnreachable, hop.HostPort(), hop.ConnectTimeout)
	}
	var conn net.Conn
	if via == nil {
		dial := cfg.Dial
		if dial == nil {
			dial = (&net.Dialer{}).DialContext
		}
		conn, err = dial(ctx, hop.Network, hop.HostPort())
	} else {
		conn, err = via.DialContext(ctx, "tcp", hop.HostPort())
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, timedOut()
		}
		if via != nil {
			return nil, fmt.Errorf("%s: %w: the jump host could not open a connection to %s: %v (is sshd running there, and does the jump host allow TCP forwarding to it?)", name, ErrUnreachable, hop.HostPort(), err)
		}
		return nil, fmt.Errorf("%s: %w: %v (is the address right, and is sshd running and reachable from here?)", name, ErrUnreachable, err)
	}
	// Closing the connection (and the agent's) is what stops a handshake
	// or authentication that hangs; for TCP the deadline does it too.
	if deadline, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(deadline)
	}
	stopWatch := context.AfterFunc(ctx, func() {
		conn.Close()
		ids.close()
	})

	sc, chans, reqs, err := ssh.NewClientConn(conn, hop.HostPort(), &ssh.ClientConfig{
		User:              hop.User,
		Auth:              []ssh.AuthMethod{ids.authMethod()},
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.algos,
	})
	expired := !stopWatch()
	if err == nil && expired {
		sc.Close()
		err = context.DeadlineExceeded
	}
	if err != nil {
		conn.Close()
		keyErr, _ := hk.result()
		var hke *HostKeyError
		switch {
		case errors.As(keyErr, &hke):
			return nil, hke
		case keyErr != nil:
			return nil, fmt.Errorf("%s: host key check: %w", name, keyErr)
		case hk.algorithmMismatch(err) != nil:
			return nil, hk.algorithmMismatch(err)
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fmt.Errorf("%s: %w as %s: the host accepted none of the keys offered (%s). "+
				"Check that the user is right and that one of these public keys is in ~%s/.ssh/authorized_keys on the host",
				name, ErrAuth, hop.User, ids.describe(), hop.User)
		case strings.Contains(err.Error(), "Too many authentication failures"):
			return nil, fmt.Errorf("%s: %w as %s: the host closed the connection after too many keys were tried (its MaxAuthTries) before one it accepts; "+
				"name the right key with IdentityFile and IdentitiesOnly yes for this host in ~/.ssh/config (offered: %s)",
				name, ErrAuth, hop.User, ids.describe())
		case ctx.Err() != nil || isTimeout(err):
			return nil, timedOut()
		default:
			return nil, fmt.Errorf("%s: %w: SSH handshake with %s failed: %v", name, ErrUnreachable, hop.HostPort(), err)
		}
	}
	_ = conn.SetDeadline(time.Time{})
	_, how := hk.result()
	cfg.logf("%s: %s", name, how)
	cfg.logf("%s: authenticated as %s with %s", name, hop.User, ids.usedLabel())
	return ssh.NewClient(sc, chans, reqs), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Address is where this host is, as it was given to Dial.
func (h *Host) Address() Address { return h.addr }

// Target is how the host was reached: its hops, with what ssh_config said.
func (h *Host) Target() *Target { return h.target }

// Close ends the connection and everything running on it.
func (h *Host) Close() error {
	h.once.Do(func() { close(h.stop) })
	err := h.closeAll()
	if h.lostReason() != nil {
		return nil // already cut; Wait reported why
	}
	return err
}

// closeAll closes the host's connection, then the jump hosts'.
func (h *Host) closeAll() error {
	var first error
	for i := len(h.clients) - 1; i >= 0; i-- {
		if err := h.clients[i].Close(); err != nil && first == nil && i == len(h.clients)-1 {
			first = err
		}
	}
	return first
}

// lost records why the connection died and cuts it: the first hop's TCP
// connection goes first, so that writes blocked on a dead network fail.
func (h *Host) lost(err error) {
	h.mu.Lock()
	if h.lostErr == nil {
		h.lostErr = err
	}
	h.mu.Unlock()
	for _, c := range h.clients {
		c.Close()
	}
}

func (h *Host) lostReason() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lostErr
}

func (h *Host) keepAlive(hop *Hop, cfg *Config) {
	interval, max := hop.KeepAliveInterval, hop.KeepAliveCountMax
	if interval <= 0 {
		return
	}
	if max <= 0 {
		max = DefaultKeepAliveCountMax
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		answered := make(chan error, 1)
		go func() {
			_, _, err := h.client.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		select {
		case <-h.stop:
			return
		case err := <-answered:
			if err != nil {
				return // the connection is gone already
			}
			missed = 0
		case <-time.After(interval):
			missed++
			if missed >= max {
				cfg.logf("%s: no answer to %d keepalives; closing the connection", h.addr.Name(), missed)
				h.lost(fmt.Errorf("%w: the host did not answer %d keepalives sent %s apart (ServerAliveInterval %s, ServerAliveCountMax %d); the network or the host is down",
					ErrConnectionLost, missed, interval, interval, max))
				return
			}
		}
	}
}

// Process is a command started on the host. Stdin, Stdout and Stderr are
// streams; Wait returns when the command has ended.
type Process struct {
	Stdin  io.WriteCloser
	Stdout io.Reader
	Stderr io.Reader
	name   string
	host   *Host
	sess   *ssh.Session
	stderr *stream.Tail
	done   func() bool
}

// Start runs cmd (a shell command line, run by the login shell as ssh
// does) in a new session. name is how errors refer to it. Cancelling ctx
// ends the session.
func (h *Host) Start(ctx context.Context, name, cmd string) (*Process, error) {
	sess, err := h.client.NewSession()
	if err != nil {
		if lost := h.lostReason(); lost != nil {
			err = lost
		}
		return nil, fmt.Errorf("%s: open a session for %s: %w", h.addr.Name(), name, err)
	}
	p := &Process{name: name, host: h, sess: sess}
	if p.Stdin, err = sess.StdinPipe(); err == nil {
		if p.Stdout, err = sess.StdoutPipe(); err == nil {
			p.Stderr, err = sess.StderrPipe()
		}
	}
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("%s: %s: %w", h.addr.Name(), name, err)
	}
	if err := sess.Start(cmd); err != nil {
		sess.Close()
		return nil, fmt.Errorf("%s: start %s: %w", h.addr.Name(), name, err)
	}
	p.done = context.AfterFunc(ctx, func() {
		_ = sess.Signal(ssh.SIGTERM)
		sess.Close()
	})
	return p, nil
}

// DialContext opens a TCP connection from the host to addr (a forwarded
// channel, as ssh -L does): addr is as the host sees it, so
// 127.0.0.1:8080 is the host's own port.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := h.client.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("%s: open a connection to %s on the host: %w", h.addr.Name(), addr, err)
	}
	return c, nil
}

// Close ends the session at once: the command's streams close, and sshd
// hangs up on it.
func (p *Process) Close() error {
	if p.done != nil {
		p.done()
	}
	return p.sess.Close()
}

// Wait waits for the command to end and turns a failure into an *ExitError.
// The caller must have consumed Stdout and Stderr (or handed them to
// goroutines that do).
func (p *Process) Wait() error {
	defer p.done()
	err := p.sess.Wait()
	p.sess.Close()
	if err == nil {
		return nil
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		e := &ExitError{Host: p.host.addr.Name(), Cmd: p.name, Status: ee.ExitStatus(), Signal: ee.Signal()}
		if p.stderr != nil {
			e.Stderr = p.stderr.String()
		}
		return e
	}
	if lost := p.host.lostReason(); lost != nil {
		return fmt.Errorf("%s: %s: %w", p.host.addr.Name(), p.name, lost)
	}
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) || errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: %s: %w: the connection closed before the command reported how it ended", p.host.addr.Name(), p.name, ErrConnectionLost)
	}
	return fmt.Errorf("%s: %s: %w", p.host.addr.Name(), p.name, err)
}

// Run runs cmd to the end, copying its output to stdout and stderr (either
// may be nil). A failing command's error carries the tail of its stderr.
func (h *Host) Run(ctx context.Context, name, cmd string, stdin io.Reader, stdout, stderr io.Writer) error {
	p, err := h.Start(ctx, name, cmd)
	if err != nil {
		return err
	}
	p.stderr = &stream.Tail{Max: 4 << 10}
	var wg sync.WaitGroup
	copyOut := func(dst io.Writer, src io.Reader) {
		defer wg.Done()
		if dst == nil {
			dst = io.Discard
		}
		_, _ = io.Copy(dst, src)
	}
	wg.Add(2)
	go copyOut(stdout, p.Stdout)
	go copyOut(io.MultiWriter(orDiscard(stderr), p.stderr), p.Stderr)
	if stdin != nil {
		go func() {
			_, _ = io.Copy(p.Stdin, stdin)
			p.Stdin.Close()
		}()
	} else {
		p.Stdin.Close()
	}
	wg.Wait()
	return p.Wait()
}

// Output runs cmd and returns its standard output.
func (h *Host) Output(ctx context.Context, name, cmd string) ([]byte, error) {
	var out bytes.Buffer
	err := h.Run(ctx, name, cmd, nil, &out, nil)
	return out.Bytes(), err
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}
