// Package sshdtest starts real OpenSSH sshd servers on loopback (127.0.0.1
// unless Options.ListenHost says otherwise) for end-to-end tests.
//
// Every server gets its own temporary directory holding a generated
// ed25519 host key, a generated ed25519 client key, an authorized_keys file,
// an sshd_config and sshd's log. Tests log in as the current OS user.
//
// Typical use:
//
//	func TestDeploy(t *testing.T) {
//		sshdtest.Require(t)
//		t.Parallel()
//		srv := sshdtest.Start(t, sshdtest.Options{})
//		out := srv.Run(t, "echo hi")
//		...
//	}
package sshdtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// InstallHint tells a developer how to get sshd on Debian/Ubuntu.
const InstallHint = "apt-get install -y openssh-server"

const (
	// readyTimeout bounds how long one sshd start attempt may take to
	// accept SSH connections.
	readyTimeout = 10 * time.Second
	// stopTimeout bounds how long Cleanup waits after SIGTERM before
	// resorting to SIGKILL.
	stopTimeout = 5 * time.Second
	// bindAttempts is how often Start retries with a new port when sshd
	// cannot bind the one it was given (another process took it between
	// our probe and sshd's bind).
	bindAttempts = 5
	// logTailLines is how much of sshd's log is shown on failure.
	logTailLines = 60
	// privsepDir is the privilege separation directory Debian's sshd
	// insists on when running as root.
	privsepDir = "/run/sshd"
)

// Server is one running sshd.
type Server struct {
	Host string // "127.0.0.1", or Options.ListenHost
	Port int
	Addr string // "127.0.0.1:port"
	User string // the current OS user (the one tests log in as)
	Home string // that user's home directory as sshd sees it (from the passwd entry)
	Dir  string // the server's private temp dir (config, keys, logs)

	HostKey            ssh.PublicKey
	HostKeyFingerprint string // ssh.FingerprintSHA256(HostKey)
	// HostCertificate is HostKey signed by Options.HostCA, which sshd
	// presents to clients that ask for certificates; nil without HostCA.
	HostCertificate *ssh.Certificate
	// KnownHostsFile holds exactly this server's key, as
	// "[127.0.0.1]:port ssh-ed25519 AAAA...".
	KnownHostsFile string
	// ClientKeyFile is an unencrypted OpenSSH-format ed25519 private key
	// authorised on this server.
	ClientKeyFile string
	ClientSigner  ssh.Signer

	// ConfigFile is the sshd_config the server runs with.
	ConfigFile string
	// LogFile receives sshd's stderr (sshd -e, LogLevel VERBOSE).
	LogFile string
	// PID is the process id of the listening sshd.
	PID int
}

// Options tune a server started by Start.
type Options struct {
	// ExtraConfig lines appended to sshd_config (e.g. "MaxAuthTries 3").
	//
	// sshd uses the first value it reads for most keywords, so lines before
	// the first "Match" line are actually placed ahead of the harness's
	// defaults; that lets them override e.g. PasswordAuthentication. A
	// "Match" line and everything after it go at the end of the file, as
	// sshd requires. Keywords that accumulate (ListenAddress, HostKey,
	// Subsystem ...) cannot be overridden this way.
	ExtraConfig []string
	// AuthorizedKeys: additional public keys in authorized_keys format
	// (options allowed) to authorise besides the generated client key.
	AuthorizedKeys []string
	// ListenHost is the loopback address sshd listens on; default
	// "127.0.0.1". Any 127.x.y.z works on Linux (e.g. "127.0.0.2").
	ListenHost string
	// HostCA, when set, signs the host key into a host certificate that
	// sshd presents (HostCertificate), valid for HostCertPrincipals
	// (default: ListenHost) from an hour ago for HostCertValidity
	// (default 24h).
	HostCA             ssh.Signer
	HostCertPrincipals []string
	HostCertValidity   time.Duration
	// FastShell keeps bash from reading the login user's ~/.bashrc in
	// sessions (bash reads it when started by sshd as a top-level shell;
	// SHLVL=1 makes it a nested one), where that file is slow.
	FastShell bool
}

var (
	portMu    sync.Mutex
	portsUsed = map[int]bool{} // ports handed out by this process
)

// sshdPath returns the absolute path of sshd. sshd refuses to run from a
// relative path ("sshd re-exec requires execution with an absolute path").
func sshdPath() (string, error) {
	const debianPath = "/usr/sbin/sshd"
	if isExecutable(debianPath) {
		return debianPath, nil
	}
	p, err := exec.LookPath("sshd")
	if err != nil {
		return "", fmt.Errorf("sshd not found at %s or in PATH: %w", debianPath, err)
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("making sshd path %q absolute: %w", p, err)
	}
	return abs, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

var availability = sync.OnceValues(func() (bool, string) {
	path, err := sshdPath()
	if err != nil {
		return false, err.Error()
	}
	if !isExecutable(path) {
		return false, path + " is not an executable file"
	}
	// "sshd -V" prints the version and exits 0 on recent OpenSSH. Older
	// versions reject -V but still print "OpenSSH_x.y" in their usage
	// message, so the exit status is ignored and the output checked.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-V").CombinedOutput()
	if !bytes.Contains(out, []byte("OpenSSH")) {
		return false, fmt.Sprintf("%s -V did not identify as OpenSSH (err: %v): %q", path, err, firstLine(out))
	}
	if _, err := user.Current(); err != nil {
		return false, fmt.Sprintf("looking up current user: %v", err)
	}
	return true, ""
})

// Available reports whether sshd can be used here, and why not.
func Available() (ok bool, why string) {
	return availability()
}

// Require skips the test if sshd is not available, or fails it when the
// environment variable CI is "true": CI must never silently skip.
func Require(t testing.TB) {
	t.Helper()
	ok, why := Available()
	if ok {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("sshd is required in CI but not usable: %s (install with: %s)", why, InstallHint)
	}
	t.Skipf("sshd not usable: %s (install with: %s)", why, InstallHint)
}

// Start starts sshd for the test and registers t.Cleanup to stop it. It is
// safe to call from parallel tests.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	Require(t)

	sshd, err := sshdPath()
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("sshdtest: looking up current user: %v", err)
	}
	if err := ensurePrivsepDirIfRoot(); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}

	dir := t.TempDir()
	listen := opts.ListenHost
	if listen == "" {
		listen = "127.0.0.1"
	}
	s := &Server{
		Host:           listen,
		User:           u.Username,
		Home:           u.HomeDir,
		Dir:            dir,
		KnownHostsFile: filepath.Join(dir, "known_hosts"),
		ClientKeyFile:  filepath.Join(dir, "id_ed25519"),
		ConfigFile:     filepath.Join(dir, "sshd_config"),
		LogFile:        filepath.Join(dir, "sshd.log"),
	}

	hostKeyFile := filepath.Join(dir, "ssh_host_ed25519_key")
	hostSigner, err := writeKeyPair(hostKeyFile, "sshdtest host key")
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	s.HostKey = hostSigner.PublicKey()
	s.HostKeyFingerprint = ssh.FingerprintSHA256(s.HostKey)
	var extra []string
	if opts.HostCA != nil {
		s.HostCertificate, err = writeHostCert(hostKeyFile+"-cert.pub", s.HostKey, opts.HostCA, opts.HostCertPrincipals, opts.HostCertValidity, listen)
		if err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
		extra = append(extra, "HostCertificate "+hostKeyFile+"-cert.pub")
	}
	extra = append(extra, opts.ExtraConfig...)
	if opts.FastShell {
		extra = withSetEnv(extra, "SHLVL=1")
	}

	s.ClientSigner, err = writeKeyPair(s.ClientKeyFile, "sshdtest client key")
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}

	authKeys := filepath.Join(dir, "authorized_keys")
	if err := writeAuthorizedKeys(authKeys, s.ClientSigner.PublicKey(), opts.AuthorizedKeys); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}

	var lastErr error
	for attempt := 1; attempt <= bindAttempts; attempt++ {
		port, err := freePort(s.Host)
		if err != nil {
			t.Fatalf("sshdtest: %v", err)
		}
		s.Port = port
		s.Addr = net.JoinHostPort(s.Host, strconv.Itoa(port))

		cfg := buildConfig(s.Addr, hostKeyFile, authKeys, dir, extra)
		if err := os.WriteFile(s.ConfigFile, []byte(cfg), 0o600); err != nil {
			t.Fatalf("sshdtest: writing sshd_config: %v", err)
		}
		if out, err := exec.Command(sshd, "-t", "-f", s.ConfigFile).CombinedOutput(); err != nil {
			t.Fatalf("sshdtest: invalid sshd_config (%v):\n%s\n--- sshd_config ---\n%s", err, out, cfg)
		}

		err = s.launch(t, sshd)
		if err == nil {
			if err := os.WriteFile(s.KnownHostsFile, []byte(s.KnownHostsLine()+"\n"), 0o600); err != nil {
				t.Fatalf("sshdtest: writing known_hosts: %v", err)
			}
			return s
		}
		lastErr = err
		if !errors.Is(err, errBind) {
			break
		}
		t.Logf("sshdtest: attempt %d: %v; retrying on another port", attempt, err)
	}
	t.Fatalf("sshdtest: starting sshd: %v\n--- sshd log (%s) ---\n%s", lastErr, s.LogFile, s.logTail())
	return nil
}

var errBind = errors.New("sshd could not bind its port")

// launch starts sshd on s.Port and waits until it is ready. On success it
// registers the cleanup that stops it; on failure the process is gone.
func (s *Server) launch(t testing.TB, sshd string) error {
	t.Helper()
	logf, err := os.OpenFile(s.LogFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("opening log: %w", err)
	}
	defer logf.Close() // the child keeps its own copy of the descriptor
	if _, err := fmt.Fprintf(logf, "=== sshdtest: starting %s on %s ===\n", sshd, s.Addr); err != nil {
		return fmt.Errorf("writing log: %w", err)
	}
	// Where this attempt's output starts: earlier attempts' bind failures
	// must not be mistaken for this one's.
	logStart, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("seeking log: %w", err)
	}

	cmd := exec.Command(sshd, "-D", "-e", "-f", s.ConfigFile)
	cmd.Dir = s.Dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("running %s: %w", sshd, err)
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()

	if err := s.waitReady(done); err != nil {
		_ = cmd.Process.Kill()
		<-done
		if isBindFailure(s.readLog(), logStart) {
			return fmt.Errorf("%w %d: %w", errBind, s.Port, err)
		}
		return err
	}
	s.PID = cmd.Process.Pid

	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(stopTimeout):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("sshdtest: sshd on %s exited (%v); log tail (%s):\n%s", s.Addr, waitErr, s.LogFile, s.logTail())
		}
	})
	return nil
}

// waitReady polls until sshd on s.Addr completes an SSH key exchange with
// the expected host key. Checking the host key, not just the "SSH-2.0-"
// banner, makes sure that we are not talking to some other server that
// grabbed the port while our sshd failed to bind it.
func (s *Server) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for {
		select {
		case <-exited:
			return fmt.Errorf("sshd exited before accepting connections (last probe: %v)", lastErr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd not ready on %s after %v: %w", s.Addr, readyTimeout, lastErr)
		}
		lastErr = s.probe(time.Until(deadline), exited)
		if lastErr == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// isBindFailure reports whether sshd's log from offset on says that it
// could not bind its listen address.
func isBindFailure(log string, offset int64) bool {
	if offset > int64(len(log)) {
		return false
	}
	log = log[offset:]
	return strings.Contains(log, "Bind to port") || strings.Contains(log, "Cannot bind any address")
}

var errForeignServer = errors.New("a different SSH server answered")

// probe dials s.Addr, checks the banner and the host key, and hangs up
// without authenticating.
func (s *Server) probe(budget time.Duration, exited <-chan struct{}) error {
	timeout := min(2*time.Second, budget)
	conn, err := net.DialTimeout("tcp", s.Addr, timeout)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer conn.Close()
	// If our sshd dies (e.g. it could not bind and something else is
	// listening there), give up on this connection at once.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-exited:
			conn.Close()
		case <-stop:
		}
	}()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("set deadline: %w", err)
	}
	br := bufio.NewReader(conn)
	banner, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading banner: %w", err)
	}
	if !strings.HasPrefix(banner, "SSH-2.0-") {
		return fmt.Errorf("unexpected banner %q", strings.TrimSpace(banner))
	}
	// Replay the banner for the SSH client, which reads it itself.
	replay := &prefixConn{Conn: conn, r: io.MultiReader(strings.NewReader(banner), br)}
	var hostKeyOK atomic.Bool
	cfg := &ssh.ClientConfig{
		User: s.User,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if cert, ok := key.(*ssh.Certificate); ok {
				key = cert.Key
			}
			if !bytes.Equal(key.Marshal(), s.HostKey.Marshal()) {
				return fmt.Errorf("%w (host key %s)", errForeignServer, ssh.FingerprintSHA256(key))
			}
			hostKeyOK.Store(true)
			return nil
		},
		// No Auth methods: the handshake fails after key exchange, which
		// is all we need.
	}
	c, chans, reqs, err := ssh.NewClientConn(replay, s.Addr, cfg)
	if err == nil {
		// sshd let us in without authentication (e.g. via ExtraConfig);
		// still proves it is ours.
		ssh.NewClient(c, chans, reqs).Close()
		return nil
	}
	if hostKeyOK.Load() {
		return nil
	}
	return fmt.Errorf("ssh handshake: %w", err)
}

// prefixConn is a net.Conn whose reads come from r (bytes already read
// from the connection followed by the rest of it).
type prefixConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// KnownHostsLine returns this server's known_hosts entry,
// "[127.0.0.1]:port ssh-ed25519 AAAA...".
func (s *Server) KnownHostsLine() string {
	return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
}

// ClientConfig returns a config that logs in as s.User with ClientSigner and
// accepts only this server's host key (as a plain key, also when the server
// has a certificate).
func (s *Server) ClientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:              s.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(s.ClientSigner)},
		HostKeyCallback:   ssh.FixedHostKey(s.HostKey),
		HostKeyAlgorithms: []string{s.HostKey.Type()},
		Timeout:           10 * time.Second,
	}
}

// Dial opens an SSH connection with ClientConfig, closed on test cleanup.
func (s *Server) Dial(t testing.TB) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	if err != nil {
		t.Fatalf("sshdtest: ssh dial %s: %v\n--- sshd log ---\n%s", s.Addr, err, s.logTail())
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Run runs cmd through a fresh SSH connection and returns its standard
// output; any error, including a non-zero exit status, fails the test.
func (s *Server) Run(t testing.TB, cmd string) string {
	t.Helper()
	c, err := ssh.Dial("tcp", s.Addr, s.ClientConfig())
	if err != nil {
		t.Fatalf("sshdtest: ssh dial %s: %v\n--- sshd log ---\n%s", s.Addr, err, s.logTail())
	}
	defer c.Close()
	sess, err := c.NewSession()
	if err != nil {
		t.Fatalf("sshdtest: new session on %s: %v", s.Addr, err)
	}
	defer sess.Close()
	// Standard output only: a login shell's noise (root's .bashrc on a
	// busy machine) goes to standard error.
	var stderr bytes.Buffer
	sess.Stderr = &stderr
	out, err := sess.Output(cmd)
	if err != nil {
		t.Fatalf("sshdtest: running %q on %s: %v\n--- output ---\n%s%s", cmd, s.Addr, err, out, stderr.Bytes())
	}
	return string(out)
}

// Log returns sshd's log so far.
func (s *Server) Log() string {
	return s.readLog()
}

// WriteKey generates an unencrypted ed25519 key pair in dir (private key
// mode 0600, public key alongside with a ".pub" suffix), e.g. for
// "wrong key" tests.
func WriteKey(t testing.TB, dir string) (privPath string, signer ssh.Signer) {
	t.Helper()
	f, err := os.CreateTemp(dir, "id_ed25519_")
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	privPath = f.Name()
	if err := f.Close(); err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	signer, err = writeKeyPair(privPath, "sshdtest extra key")
	if err != nil {
		t.Fatalf("sshdtest: %v", err)
	}
	return privPath, signer
}

// writeKeyPair writes a fresh ed25519 private key to path (0600, OpenSSH
// format) and its public key to path+".pub".
func writeKeyPair(path, comment string) (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating ed25519 key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, comment)
	if err != nil {
		return nil, fmt.Errorf("marshalling private key: %w", err)
	}
	if err := writeFile0600(path, pem.EncodeToMemory(block)); err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("creating signer: %w", err)
	}
	pub := bytes.TrimSuffix(ssh.MarshalAuthorizedKey(signer.PublicKey()), []byte("\n"))
	pub = append(pub, " "+comment+"\n"...)
	if err := writeFile0600(path+".pub", pub); err != nil {
		return nil, err
	}
	return signer, nil
}

// withSetEnv adds an environment variable to the SetEnv line of lines
// (sshd uses only the first SetEnv line), or a SetEnv line at the front.
func withSetEnv(lines []string, kv string) []string {
	out := append([]string(nil), lines...)
	for i, l := range out {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if strings.EqualFold(f[0], "Match") {
			break
		}
		if strings.EqualFold(f[0], "SetEnv") {
			out[i] = l + " " + kv
			return out
		}
	}
	return append([]string{"SetEnv " + kv}, out...)
}

// writeHostCert signs hostKey with ca into a host certificate and writes
// it in authorized_keys format to path.
func writeHostCert(path string, hostKey ssh.PublicKey, ca ssh.Signer, principals []string, validity time.Duration, listen string) (*ssh.Certificate, error) {
	if len(principals) == 0 {
		principals = []string{listen}
	}
	if validity == 0 {
		validity = 24 * time.Hour
	}
	now := time.Now()
	cert := &ssh.Certificate{
		Key:             hostKey,
		Serial:          uint64(now.UnixNano()),
		CertType:        ssh.HostCert,
		KeyId:           "sshdtest host certificate",
		ValidPrincipals: principals,
		ValidAfter:      uint64(now.Add(-time.Hour).Unix()),
		ValidBefore:     uint64(now.Add(validity).Unix()),
	}
	if err := cert.SignCert(rand.Reader, ca); err != nil {
		return nil, fmt.Errorf("signing the host certificate: %w", err)
	}
	if err := writeFile0600(path, ssh.MarshalAuthorizedKey(cert)); err != nil {
		return nil, err
	}
	return cert, nil
}

// writeFile0600 writes data to path with mode 0600 even if the file
// already exists with other permissions (os.WriteFile keeps those).
func writeFile0600(path string, data []byte) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	return nil
}

func writeAuthorizedKeys(path string, client ssh.PublicKey, extra []string) error {
	var b bytes.Buffer
	b.Write(ssh.MarshalAuthorizedKey(client))
	for i, k := range extra {
		k = strings.TrimSpace(k)
		if k == "" {
			continue
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil {
			return fmt.Errorf("Options.AuthorizedKeys[%d] %q: %w", i, k, err)
		}
		b.WriteString(k)
		b.WriteByte('\n')
	}
	return writeFile0600(path, b.Bytes())
}

func buildConfig(addr, hostKey, authKeys, dir string, extra []string) string {
	var early, late []string
	for i, line := range extra {
		fields := strings.Fields(line)
		if len(fields) > 0 && strings.EqualFold(fields[0], "Match") {
			late = extra[i:]
			break
		}
		early = append(early, line)
	}
	var b strings.Builder
	b.WriteString("# Generated by sshdtest.\n")
	if len(early) > 0 {
		b.WriteString("# Options.ExtraConfig (first value wins in sshd_config):\n")
		for _, l := range early {
			b.WriteString(l + "\n")
		}
	}
	fmt.Fprintf(&b, `# sshdtest defaults:
ListenAddress %s
HostKey %s
PidFile %s
AuthorizedKeysFile %s
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
PermitUserRC no
UseDNS no
LogLevel VERBOSE
Subsystem sftp internal-sftp
MaxStartups 100:30:200
MaxSessions 100
`, addr, hostKey, filepath.Join(dir, "sshd.pid"), authKeys)
	if len(late) > 0 {
		b.WriteString("# Options.ExtraConfig (Match blocks):\n")
		for _, l := range late {
			b.WriteString(l + "\n")
		}
	}
	b.WriteString("# Throwaway users (Server.AddUser) have keys of their own:\nMatch User " + userPrefix + "*\n  AuthorizedKeysFile .ssh/authorized_keys\n")
	return b.String()
}

// freePort asks the kernel for an unused port on host. It avoids handing
// out the same port twice within this process (on any address); other
// processes can still race us, which Start handles by retrying.
func freePort(host string) (int, error) {
	portMu.Lock()
	defer portMu.Unlock()
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return 0, fmt.Errorf("finding a free port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		if err := l.Close(); err != nil {
			return 0, fmt.Errorf("closing port probe: %w", err)
		}
		if !portsUsed[port] {
			portsUsed[port] = true
			return port, nil
		}
	}
	return 0, errors.New("finding a free port: kernel kept returning ports already in use by this process")
}

var privsepOnce = sync.OnceValue(func() error {
	fi, err := os.Stat(privsepDir)
	if err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("privilege separation path %s is not a directory", privsepDir)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("checking privilege separation dir: %w", err)
	}
	if err := os.MkdirAll(privsepDir, 0o755); err != nil {
		return fmt.Errorf("creating privilege separation dir: %w", err)
	}
	// Undo the umask: sshd wants it root-owned and not group/world-writable,
	// and readable is conventional.
	if err := os.Chmod(privsepDir, 0o755); err != nil {
		return fmt.Errorf("chmod privilege separation dir: %w", err)
	}
	return nil
})

// ensurePrivsepDirIfRoot creates /run/sshd, which sshd requires when run as
// root ("Missing privilege separation directory"). On Debian the systemd
// unit normally creates it, so it is missing in containers.
func ensurePrivsepDirIfRoot() error {
	if os.Geteuid() != 0 {
		return nil
	}
	return privsepOnce()
}

func (s *Server) readLog() string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", s.LogFile, err)
	}
	return string(b)
}

func (s *Server) logTail() string {
	lines := strings.Split(strings.TrimRight(s.readLog(), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = append([]string{fmt.Sprintf("... (%d earlier lines omitted)", len(lines)-logTailLines)}, lines[len(lines)-logTailLines:]...)
	}
	return strings.Join(lines, "\n")
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(bytes.TrimSpace(b), []byte("\n"))
	return string(line)
}
