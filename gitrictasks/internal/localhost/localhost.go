// Package localhost runs an SSH server on 127.0.0.1 that executes commands
// below a local directory, so that gitric can deploy to "localhost" without a
// real server.
//
// The server behaves like OpenSSH's sshd for exec sessions, and forwards
// direct-tcpip channels to loopback addresses (gitric's HTTP check): the deploy client
// talks to it with the same golang.org/x/crypto/ssh client code it uses for
// real hosts (git-receive-pack over an exec session, shell commands, exit
// statuses). It accepts exactly one throwaway ed25519 client key for the
// current OS user and presents a throwaway ed25519 host key; both exist only
// in memory for the lifetime of one Server.
//
// Each command runs as "/bin/sh -c <command>" in its own process group, with
// the server's root directory as working directory and HOME. Only Unix-like
// systems are supported.
package localhost

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

const (
	// handshakeTimeout bounds the SSH handshake including authentication.
	handshakeTimeout = 30 * time.Second
	// killGrace is how long a command gets between SIGTERM and SIGKILL.
	killGrace = 2 * time.Second
	// outputGrace is how long, after the command's main process exited,
	// output is still forwarded from background processes that kept the
	// command's stdout or stderr open. After that the session ends anyway.
	outputGrace = 2 * time.Second
	// closeGrace is how long Close lets sessions stop their commands and send
	// the exit status before it drops all connections.
	closeGrace = killGrace + outputGrace + time.Second
)

// Server is an SSH server on 127.0.0.1 created by Start. Its methods are safe
// for concurrent use.
type Server struct {
	root         string
	user         string
	hostSigner   ssh.Signer
	clientSigner ssh.Signer
	clientKey    []byte // marshalled public key of clientSigner
	config       *ssh.ServerConfig
	ln           net.Listener
	done         chan struct{} // closed when Close starts
	logf         atomic.Pointer[func(format string, args ...any)]

	mu       sync.Mutex
	closed   bool
	conns    map[net.Conn]struct{}
	handlers sync.WaitGroup // accept loop and connection handlers
	sessions sync.WaitGroup // session handlers

	closeOnce sync.Once
	closeErr  error
}

// Start generates a throwaway ed25519 host key and a throwaway ed25519 client
// key (both only in memory, valid only for this Server), listens on
// 127.0.0.1:0, and serves until Close or ctx is done. Commands run under root
// (created with 0755 if missing): working directory root, HOME=root.
func Start(ctx context.Context, root string) (*Server, error) {
	if !supported {
		return nil, fmt.Errorf("localhost: running commands is not supported on %s", runtime.GOOS)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("localhost: %w", err)
	}
	if root == "" {
		return nil, errors.New("localhost: empty root directory")
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("localhost: root directory: %w", err)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("localhost: creating root directory: %w", err)
	}
	if fi, err := os.Stat(root); err != nil {
		return nil, fmt.Errorf("localhost: root directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("localhost: root %s is not a directory", root)
	}

	hostSigner, err := newSigner()
	if err != nil {
		return nil, fmt.Errorf("localhost: host key: %w", err)
	}
	clientSigner, err := newSigner()
	if err != nil {
		return nil, fmt.Errorf("localhost: client key: %w", err)
	}

	s := &Server{
		root:         root,
		user:         currentUserName(),
		hostSigner:   hostSigner,
		clientSigner: clientSigner,
		clientKey:    clientSigner.PublicKey().Marshal(),
		done:         make(chan struct{}),
		conns:        make(map[net.Conn]struct{}),
	}
	s.config = &ssh.ServerConfig{
		PublicKeyCallback: s.checkPublicKey,
		ServerVersion:     "SSH-2.0-gitric_localhost",
	}
	s.config.AddHostKey(hostSigner)

	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("localhost: listen: %w", err)
	}
	s.ln = ln

	s.handlers.Add(1)
	go s.acceptLoop()
	go func() {
		select {
		case <-ctx.Done():
			_ = s.Close()
		case <-s.done:
		}
	}()
	return s, nil
}

func newSigner() (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating ed25519 key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("ed25519 signer: %w", err)
	}
	return signer, nil
}

// currentUserName returns the name of the OS user running this process. The
// name only has to agree between Server and its client, so if the system
// cannot tell, a fixed fallback is used.
func currentUserName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	for _, k := range []string{"USER", "LOGNAME"} {
		if v := os.Getenv(k); v != "" {
			return v
		}
	}
	return "gitric"
}

// Addr returns the listening address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// User returns the login name the client must use: the current OS user name.
// Any other user is refused.
func (s *Server) User() string { return s.user }

// HostKey returns the server's host public key, for the client to pin.
func (s *Server) HostKey() ssh.PublicKey { return s.hostSigner.PublicKey() }

// ClientSigner returns the only client key the server accepts.
func (s *Server) ClientSigner() ssh.Signer { return s.clientSigner }

// Root returns the absolute directory commands run in.
func (s *Server) Root() string { return s.root }

// SetLogf installs a debug logger for connection and session events; nil
// disables logging (the default). The server never writes to stdout or stderr
// itself.
func (s *Server) SetLogf(logf func(format string, args ...any)) {
	if logf == nil {
		s.logf.Store(nil)
		return
	}
	s.logf.Store(&logf)
}

func (s *Server) debugf(format string, args ...any) {
	if f := s.logf.Load(); f != nil {
		(*f)("localhost: "+format, args...)
	}
}

// Close stops listening, kills running commands (their whole process group:
// SIGTERM, then SIGKILL after a grace period), closes all connections and
// waits for all handlers to return. Background processes left behind by
// commands that already finished (daemons) are not touched. Calling Close
// more than once is fine.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.done)
		if err := s.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.closeErr = fmt.Errorf("localhost: closing listener: %w", err)
		}

		// Session handlers notice done, stop their commands and send the
		// exit-signal to the client. Give them a chance to do that cleanly
		// before dropping the connections, which unblocks everything else
		// (e.g. output writes to a client that stopped reading).
		waitTimeout(&s.sessions, closeGrace)
		s.mu.Lock()
		for c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.sessions.Wait()
		s.handlers.Wait()
	})
	return s.closeErr
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	ch := make(chan struct{})
	go func() {
		wg.Wait()
		close(ch)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
}

func (s *Server) checkPublicKey(md ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	if md.User() != s.user {
		s.debugf("%s: refusing user %q", md.RemoteAddr(), md.User())
		return nil, fmt.Errorf("localhost: user %q not allowed", md.User())
	}
	if subtle.ConstantTimeCompare(key.Marshal(), s.clientKey) != 1 {
		s.debugf("%s: refusing %s key %s", md.RemoteAddr(), key.Type(), ssh.FingerprintSHA256(key))
		return nil, errors.New("localhost: public key not allowed")
	}
	return &ssh.Permissions{}, nil
}

// addConn registers an accepted connection and a handler for it; it reports
// false once the server is closing.
func (s *Server) addConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.handlers.Add(1)
	return true
}

func (s *Server) removeConn(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// addSession registers a session handler; it reports false once the server is
// closing.
func (s *Server) addSession() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.sessions.Add(1)
	return true
}

func (s *Server) acceptLoop() {
	defer s.handlers.Done()
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.done:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Probably a transient error such as EMFILE: back off and retry.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			s.debugf("accept: %v; retrying in %v", err, backoff)
			t := time.NewTimer(backoff)
			select {
			case <-s.done:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		if !s.addConn(c) {
			_ = c.Close()
			return
		}
		go s.handleConn(c)
	}
}

func (s *Server) handleConn(c net.Conn) {
	defer s.handlers.Done()
	defer s.removeConn(c)
	defer c.Close()

	if err := c.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
		s.debugf("%s: set deadline: %v", c.RemoteAddr(), err)
		return
	}
	sc, chans, reqs, err := ssh.NewServerConn(c, s.config)
	if err != nil {
		s.debugf("%s: handshake: %v", c.RemoteAddr(), err)
		return
	}
	defer sc.Close()
	if err := c.SetDeadline(time.Time{}); err != nil {
		s.debugf("%s: clear deadline: %v", c.RemoteAddr(), err)
		return
	}
	s.debugf("%s: %s logged in (%s)", c.RemoteAddr(), sc.User(), sc.ClientVersion())

	// Global requests (tcpip-forward, keepalives, ...): all refused, as
	// OpenSSH does for what it does not support.
	go ssh.DiscardRequests(reqs)

	for nc := range chans {
		if nc.ChannelType() == "direct-tcpip" {
			if !s.addSession() {
				_ = nc.Reject(ssh.ResourceShortage, "server is shutting down")
				continue
			}
			go s.forward(nc)
			continue
		}
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, fmt.Sprintf("unsupported channel type %q", nc.ChannelType()))
			continue
		}
		if !s.addSession() {
			_ = nc.Reject(ssh.ResourceShortage, "server is shutting down")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			s.debugf("%s: accept channel: %v", c.RemoteAddr(), err)
			s.sessions.Done()
			continue
		}
		go s.handleSession(sc, ch, creqs)
	}
	s.debugf("%s: disconnected", c.RemoteAddr())
}
