// Package remote is the target side of a deploy: one SSH connection per
// host (golang.org/x/crypto/ssh), over which every command and the push
// itself run as sessions. Host keys are checked against known_hosts; keys
// come from ssh-agent and the usual identity files.
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
)

// Defaults for Config's zero values.
const (
	DefaultConnectTimeout    = 10 * time.Second
	DefaultKeepAliveInterval = 15 * time.Second
	DefaultKeepAliveCountMax = 3
)

// Config says how to reach and trust hosts. The zero value uses the
// user's ~/.ssh/known_hosts, ssh-agent and ~/.ssh/id_* files.
type Config struct {
	// KnownHostsFiles to check host keys against; default ~/.ssh/known_hosts.
	KnownHostsFiles []string
	// IdentityFiles are private keys to offer after the agent's; default
	// ~/.ssh/id_ed25519, id_ecdsa and id_rsa, those that exist.
	IdentityFiles []string
	// Signers are offered before anything else (a key held in memory).
	Signers []ssh.Signer
	// IdentitiesOnly offers only Signers and IdentityFiles: not the agent's
	// keys, not the default files (OpenSSH's option of the same name).
	IdentitiesOnly bool
	// HostKeyCallback, when set, replaces the known_hosts check (the
	// embedded local host pins its throwaway key this way).
	HostKeyCallback ssh.HostKeyCallback
	// ConnectTimeout bounds TCP connect, handshake and authentication
	// together; default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// KeepAliveInterval and KeepAliveCountMax detect a dead server: after
	// CountMax unanswered keepalives the connection is closed, failing
	// whatever runs on it. A negative interval turns keepalives off.
	KeepAliveInterval time.Duration
	KeepAliveCountMax int
	// Dial opens the TCP connection; default net.Dialer.DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Logf, when set, receives what was decided while connecting (which
	// key and known_hosts file), for verbose output.
	Logf func(format string, args ...any)
}

func (c *Config) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// Host is an open connection to one target.
type Host struct {
	addr   Address
	client *ssh.Client
	stop   chan struct{}
	once   sync.Once
}

// Dial connects to addr and authenticates, within cfg.ConnectTimeout.
func Dial(ctx context.Context, addr Address, cfg Config) (*Host, error) {
	timeout := cfg.ConnectTimeout
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	hostKey, algos, err := hostKeyCheck(addr, &cfg)
	if err != nil {
		return nil, err
	}
	auth, describeAuth, err := authMethods(&cfg)
	if err != nil {
		return nil, err
	}
	dial := cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", addr.HostPort())
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %v (is the address right, and is sshd running and reachable from here?)", addr.Name(), ErrUnreachable, err)
	}
	// The deadline covers the handshake and authentication; the context
	// covers the dial. Either way, a host that never answers fails in time.
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	stopWatch := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })

	var keyErr error
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr.HostPort(), &ssh.ClientConfig{
		User: addr.User,
		Auth: []ssh.AuthMethod{auth},
		HostKeyCallback: func(hostname string, remote net.Addr, key ssh.PublicKey) error {
			keyErr = hostKey(hostname, remote, key)
			return keyErr
		},
		HostKeyAlgorithms: algos,
		Timeout:           timeout,
	})
	stopWatch()
	if err != nil {
		conn.Close()
		var hk *HostKeyError
		switch {
		case errors.As(keyErr, &hk):
			return nil, hk
		case keyErr != nil:
			return nil, fmt.Errorf("%s: host key check: %w", addr.Name(), keyErr)
		case strings.Contains(err.Error(), "unable to authenticate"):
			return nil, fmt.Errorf("%s: %w as %s: the host accepted none of the keys offered (%s). "+
				"Check that the user is right and that one of these public keys is in ~%s/.ssh/authorized_keys on the host",
				addr.Name(), ErrAuth, addr.User, describeAuth(), addr.User)
		case ctx.Err() != nil || isTimeout(err):
			return nil, fmt.Errorf("%s: %w: no SSH answer within %s (connect timeout); the host may be down or a firewall drops the packets", addr.Name(), ErrUnreachable, timeout)
		default:
			return nil, fmt.Errorf("%s: %w: SSH handshake failed: %v", addr.Name(), ErrUnreachable, err)
		}
	}
	_ = conn.SetDeadline(time.Time{})
	h := &Host{addr: addr, client: ssh.NewClient(sc, chans, reqs), stop: make(chan struct{})}
	go h.keepAlive(cfg)
	return h, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Address is where this host is.
func (h *Host) Address() Address { return h.addr }

// Close ends the connection and everything running on it.
func (h *Host) Close() error {
	h.once.Do(func() { close(h.stop) })
	return h.client.Close()
}

func (h *Host) keepAlive(cfg Config) {
	interval := cfg.KeepAliveInterval
	if interval < 0 {
		return
	}
	if interval == 0 {
		interval = DefaultKeepAliveInterval
	}
	max := cfg.KeepAliveCountMax
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
				h.client.Close()
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
	stderr *tailBuffer
	done   func() bool
}

// Start runs cmd (a shell command line, run by the login shell as ssh
// does) in a new session. name is how errors refer to it. Cancelling ctx
// ends the session.
func (h *Host) Start(ctx context.Context, name, cmd string) (*Process, error) {
	sess, err := h.client.NewSession()
	if err != nil {
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
	var missing *ssh.ExitMissingError
	if errors.As(err, &missing) {
		return fmt.Errorf("%s: %s: the connection closed before the command reported how it ended", p.host.addr.Name(), p.name)
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
	p.stderr = &tailBuffer{max: 4 << 10}
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

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
