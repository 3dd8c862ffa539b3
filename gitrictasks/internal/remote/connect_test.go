package remote_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gitric/gitric/gitrictasks/internal/remote"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// TestConfigAlias: a host written as an ssh_config alias gets its
// HostName, Port, User and IdentityFiles (the first one refused, the
// second accepted); the command line beats the config; -v output names
// the config lines, the key and the known_hosts entry.
func TestConfigAlias(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	srv := sshdtest.Start(t, sshdtest.Options{})
	dir := t.TempDir()
	wrong := filepath.Join(dir, "wrong_key")
	writeKey(t, wrong, "")
	cfgFile := writeFile(t, dir, "config", "# gitric test\n"+block("web", srv, "IdentityFile "+wrong)+"Host *\n  ConnectTimeout 5\n")

	var log logs
	h := mustDial(t, "web", remote.Config{SSHConfigFile: cfgFile, Logf: log.logf})
	out := output(t, h, `id -un; echo "$SSH_CONNECTION"`)
	if !strings.HasPrefix(out, srv.User+"\n") || !strings.HasSuffix(out, " "+srv.Host+" "+strconv.Itoa(srv.Port)) {
		t.Errorf("logged in as / to: %q", out)
	}
	if h.Address().Name() != "web" {
		t.Errorf("Name() = %q, want the alias", h.Address().Name())
	}
	hop := h.Target().Host()
	if hop.HostName != srv.Host || hop.Port != srv.Port || hop.User != srv.User || len(hop.IdentityFiles) != 2 || hop.IdentityFiles[1] != srv.ClientKeyFile {
		t.Errorf("resolved %+v", hop)
	}
	for _, want := range []string{cfgFile + ":2 Host web", "authenticated as " + srv.User + " with " + srv.ClientKeyFile, srv.KnownHostsFile + ":1"} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("verbose output does not say %q:\n%s", want, log.String())
		}
	}

	// An explicit port beats the config's.
	_, err := dial(t, "web:1", remote.Config{SSHConfigFile: cfgFile})
	if !errors.Is(err, remote.ErrUnreachable) || !strings.Contains(err.Error(), srv.Host+":1") || !strings.HasPrefix(err.Error(), "web:1: ") {
		t.Errorf("web:1: %v", err)
	}
	// A key the host refuses: the message lists what was offered.
	_, err = dial(t, "web", remote.Config{SSHConfigFile: cfgFile, IdentitiesOnly: true, IdentityFiles: []string{wrong}, ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Errorf("Config.IdentityFiles come first, then the config's: %v", err)
	}
}

// TestProxyJump: a two-hop chain, each hop resolved through ssh_config.
// The network only lets gitric reach the first jump host directly (Dial
// refuses anything else), and each jump host may only forward to the
// next hop (PermitOpen). The host's commands share its one connection.
func TestProxyJump(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	target := sshdtest.Start(t, sshdtest.Options{ListenHost: "127.0.0.3"})
	key := authorized(target.ClientSigner.PublicKey())
	jump2 := sshdtest.Start(t, sshdtest.Options{ListenHost: "127.0.0.2", AuthorizedKeys: []string{key}, ExtraConfig: []string{"PermitOpen " + target.Addr}})
	jump1 := sshdtest.Start(t, sshdtest.Options{AuthorizedKeys: []string{key}, ExtraConfig: []string{"PermitOpen " + jump2.Addr}})
	dir := t.TempDir()
	kh := writeFile(t, dir, "known_hosts", target.KnownHostsLine()+"\n"+jump2.KnownHostsLine()+"\n"+jump1.KnownHostsLine()+"\n")
	khNoJump2 := writeFile(t, dir, "known_hosts_partial", target.KnownHostsLine()+"\n"+jump1.KnownHostsLine()+"\n")
	cfgFile := writeFile(t, dir, "config", fmt.Sprintf(`
Host target
  HostName 127.0.0.3
  Port %d
  ProxyJump j2
Host target-list
  HostName 127.0.0.3
  Port %d
  ProxyJump j1,j2
Host target-skipping
  HostName 127.0.0.3
  Port %d
  ProxyJump j1
Host j2
  HostName 127.0.0.2
  Port %d
  ProxyJump j1
Host j1
  HostName 127.0.0.1
  Port %d
Host *
  User %s
  IdentityFile %s
  IdentitiesOnly yes
  IdentityAgent none
  UserKnownHostsFile %s
  GlobalKnownHostsFile none
  ConnectTimeout 10
`, target.Port, target.Port, target.Port, jump2.Port, jump1.Port, target.User, target.ClientKeyFile, kh))

	var mu sync.Mutex
	var dialled []string
	network := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialled = append(dialled, addr)
		mu.Unlock()
		if addr != jump1.Addr {
			return nil, fmt.Errorf("test network: direct connections to %s are refused", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}

	for _, host := range []string{"target", "target-list"} {
		t.Run(host, func(t *testing.T) {
			before := sshdtest.CountLines(target.Log(), "Accepted publickey")
			var log logs
			h := mustDial(t, host, remote.Config{SSHConfigFile: cfgFile, Dial: network, Logf: log.logf})
			if out := output(t, h, `echo "$SSH_CONNECTION"`); !strings.HasSuffix(out, " 127.0.0.3 "+strconv.Itoa(target.Port)) {
				t.Errorf("SSH_CONNECTION %q", out)
			}
			output(t, h, "true")
			var hops []string
			for _, hop := range h.Target().Hops {
				hops = append(hops, hop.Name)
			}
			if strings.Join(hops, " ") != "j1 j2 "+host {
				t.Errorf("hops %q", hops)
			}
			if n := sshdtest.CountLines(target.Log(), "Accepted publickey") - before; n != 1 {
				t.Errorf("the host saw %d logins for two commands, want 1", n)
			}
			if !strings.Contains(log.String(), "jump host 1 of 2, j1") {
				t.Errorf("verbose output:\n%s", log.String())
			}
		})
	}
	mu.Lock()
	for _, a := range dialled {
		if a != jump1.Addr {
			t.Errorf("dialled %s directly", a)
		}
	}
	mu.Unlock()

	tests := []struct {
		name string
		host string
		cfg  remote.Config
		is   error
		says []string
	}{
		{"no jump: refused by the network", "target", remote.Config{ProxyJump: "none"}, remote.ErrUnreachable, []string{"target: host unreachable", "direct connections to " + target.Addr + " are refused"}},
		{"jump host may not forward there", "target-skipping", remote.Config{}, remote.ErrUnreachable, []string{"target-skipping: host unreachable: the jump host could not open a connection to " + target.Addr}},
		{"jump host key unknown", "target", remote.Config{KnownHostsFiles: []string{khNoJump2}}, remote.ErrHostKeyUnknown, []string{"target: through jump host j2 ([127.0.0.2]:" + strconv.Itoa(jump2.Port) + "): host key is unknown"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.SSHConfigFile, tt.cfg.Dial = cfgFile, network
			_, err := dial(t, tt.host, tt.cfg)
			if !errors.Is(err, tt.is) {
				t.Fatalf("error %v, want %v", err, tt.is)
			}
			for _, s := range tt.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q: %v", s, err)
				}
			}
		})
	}
}

// TestKnownHostsForms checks host keys against known_hosts written in
// each of its forms, under each StrictHostKeyChecking policy. A refused
// host's known_hosts file is left as it was.
func TestKnownHostsForms(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	ca := sshdtest.NewSigner(t)
	srv := sshdtest.Start(t, sshdtest.Options{})
	certSrv := sshdtest.Start(t, sshdtest.Options{HostCA: ca})
	badCertSrv := sshdtest.Start(t, sshdtest.Options{HostCA: ca, HostCertPrincipals: []string{"somewhere.else"}})
	other := sshdtest.NewSigner(t).PublicKey()
	ecdsaKey := newECDSA(t)
	line := func(s *sshdtest.Server, k ssh.PublicKey) string {
		return knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, k)
	}
	hashed := func(s *sshdtest.Server, k ssh.PublicKey) string {
		return knownhosts.HashHostname(knownhosts.Normalize(s.Addr)) + " " + authorized(k)
	}

	tests := []struct {
		name   string
		srv    *sshdtest.Server
		known  []string
		strict string // written in ssh_config
		is     error  // nil: connects
		says   []string
	}{
		{"plain", srv, []string{line(srv, srv.HostKey)}, "", nil, []string{"matches {KH}:1"}},
		{"hashed", srv, []string{hashed(srv, other), hashed(srv, srv.HostKey)}, "", nil, []string{"matches {KH}:2"}},
		{"pattern", srv, []string{"[127.0.0.1]:*,!nothere " + authorized(srv.HostKey)}, "", nil, []string{"matches {KH}:1"}},
		{"cert-authority", certSrv, []string{"@cert-authority [127.0.0.1]:* " + authorized(ca.PublicKey())}, "", nil, []string{"host certificate", "signed by the CA at {KH}:1"}},
		{"unknown", srv, []string{"# nothing"}, "", remote.ErrHostKeyUnknown, []string{srv.HostKeyFingerprint, "ssh-keyscan -p " + strconv.Itoa(srv.Port) + " -t ed25519 127.0.0.1 >> {KH}", "accept-new"}},
		{"unknown, strict yes", srv, nil, "yes", remote.ErrHostKeyUnknown, []string{"no known_hosts file exists"}},
		{"changed", srv, []string{line(srv, other)}, "", remote.ErrHostKeyChanged, []string{srv.HostKeyFingerprint, "{KH}:1", "ssh-keygen -R"}},
		{"changed, accept-new", srv, []string{line(srv, other)}, "accept-new", remote.ErrHostKeyChanged, []string{"{KH}:1"}},
		{"changed, no", srv, []string{line(srv, other)}, "no", remote.ErrHostKeyChanged, []string{"{KH}:1"}},
		{"changed, hashed", srv, []string{"# x", hashed(srv, other)}, "accept-new", remote.ErrHostKeyChanged, []string{"{KH}:2"}},
		{"only another key type known, accept-new", srv, []string{line(srv, ecdsaKey)}, "accept-new", remote.ErrHostKeyChanged, []string{"offers only", "{KH}:1"}},
		{"revoked", srv, []string{line(srv, srv.HostKey), "@revoked * " + authorized(srv.HostKey)}, "no", remote.ErrHostKeyRevoked, []string{"{KH}:2", "@revoked"}},
		{"revoked CA", certSrv, []string{"@cert-authority * " + authorized(ca.PublicKey()), "@revoked * " + authorized(ca.PublicKey())}, "accept-new", remote.ErrHostKeyRevoked, []string{"{KH}:2"}},
		{"certificate for another name", badCertSrv, []string{"@cert-authority * " + authorized(ca.PublicKey())}, "", remote.ErrHostKeyUnknown, []string{"host certificate was not accepted", "somewhere.else"}},
		{"no, written by the user", srv, nil, "no", nil, []string{"recorded in {KH}:1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			kh := filepath.Join(dir, "known_hosts")
			var content string
			if tt.known != nil {
				content = strings.Join(tt.known, "\n") + "\n"
				writeFile(t, dir, "known_hosts", content)
			}
			var extra []string
			if tt.strict != "" {
				extra = append(extra, "StrictHostKeyChecking "+tt.strict)
			}
			extra = append(extra, "UserKnownHostsFile "+kh)
			cfgFile := writeFile(t, dir, "config", block("h", tt.srv, extra...))
			var log logs
			h, err := dial(t, "h", remote.Config{SSHConfigFile: cfgFile, Logf: log.logf})
			says := func(text string) {
				t.Helper()
				for _, s := range tt.says {
					// {KH}, braces and all: a fingerprint may hold "KH", never a brace.
					if s = strings.ReplaceAll(s, "{KH}", kh); !strings.Contains(text, s) {
						t.Errorf("does not say %q: %s", s, text)
					}
				}
			}
			if tt.is == nil {
				if err != nil {
					t.Fatal(err)
				}
				output(t, h, "true")
				says(log.String())
				return
			}
			if !errors.Is(err, tt.is) {
				t.Fatalf("error %v, want %v", err, tt.is)
			}
			var hke *remote.HostKeyError
			if !errors.As(err, &hke) || !strings.HasPrefix(err.Error(), "h (") {
				t.Errorf("not a *HostKeyError naming the host: %v", err)
			}
			says(err.Error())
			after, _ := os.ReadFile(kh)
			if string(after) != content {
				t.Errorf("known_hosts changed by a refused connection: %q", after)
			}
		})
	}
}

// TestAcceptNew: StrictHostKeyChecking accept-new records an unknown host
// in exactly one line, hashed when HashKnownHosts says so, even when many
// connections race; OpenSSH's own ssh then trusts the host by that line.
func TestAcceptNew(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	srv := sshdtest.Start(t, sshdtest.Options{})
	for _, hash := range []string{"no", "yes"} {
		t.Run("HashKnownHosts "+hash, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			kh := filepath.Join(dir, "ssh", "known_hosts") // neither exists yet
			cfgFile := writeFile(t, dir, "config", block("h", srv, "StrictHostKeyChecking accept-new", "HashKnownHosts "+hash, "UserKnownHostsFile "+kh))
			var wg sync.WaitGroup
			errs := make([]error, 6)
			for i := range errs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, errs[i] = dial(t, "h", remote.Config{SSHConfigFile: cfgFile})
				}()
			}
			wg.Wait()
			for _, err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			var log logs
			mustDial(t, "h", remote.Config{SSHConfigFile: cfgFile, Logf: log.logf})
			if !strings.Contains(log.String(), "matches "+kh+":1") {
				t.Errorf("the next connection did not use the recorded line:\n%s", log.String())
			}
			data, err := os.ReadFile(kh)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			if len(lines) != 1 || !strings.HasSuffix(string(data), "\n") {
				t.Fatalf("known_hosts holds %d lines: %q", len(lines), data)
			}
			if hash == "no" && lines[0] != srv.KnownHostsLine() {
				t.Errorf("recorded %q, want %q", lines[0], srv.KnownHostsLine())
			}
			if hash == "yes" && (!strings.HasPrefix(lines[0], "|1|") || !strings.HasSuffix(lines[0], " "+authorized(srv.HostKey))) {
				t.Errorf("recorded %q, want a hashed line", lines[0])
			}
			// OpenSSH agrees: ssh-keygen finds it, ssh trusts it.
			keygen := requireTool(t, "ssh-keygen")
			if out, err := exec.Command(keygen, "-F", knownhosts.Normalize(srv.Addr), "-f", kh).CombinedOutput(); err != nil {
				t.Errorf("ssh-keygen -F does not find the host: %v: %s", err, out)
			}
			sshBin := requireTool(t, "ssh")
			cmd := exec.Command(sshBin, "-F", "none", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+kh,
				"-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-i", srv.ClientKeyFile, "-p", strconv.Itoa(srv.Port), srv.User+"@"+srv.Host, "true")
			cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("ssh does not trust the recorded line: %v: %s", err, out)
			}
		})
	}
}

// TestAgent: keys from a real ssh-agent; with a low MaxAuthTries, the key
// named by IdentityFile (only its .pub on disk) is offered first, and
// IdentitiesOnly offers nothing else.
func TestAgent(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	srv := sshdtest.Start(t, sshdtest.Options{ExtraConfig: []string{"MaxAuthTries 3"}})
	dir := t.TempDir()
	sock := startAgent(t)
	for i := range 4 {
		decoy := filepath.Join(dir, fmt.Sprintf("decoy%d", i))
		writeKey(t, decoy, "")
		sshAdd(t, sock, decoy, "")
	}
	sshAdd(t, sock, srv.ClientKeyFile, "")
	pubOnly := filepath.Join(dir, "right")
	pub, err := os.ReadFile(srv.ClientKeyFile + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "right.pub", string(pub))
	base := fmt.Sprintf("  HostName %s\n  Port %d\n  User %s\n  IdentityAgent %s\n  UserKnownHostsFile %s\n  GlobalKnownHostsFile none\n",
		srv.Host, srv.Port, srv.User, sock, srv.KnownHostsFile)
	cfgFile := writeFile(t, dir, "config", fmt.Sprintf("Host only\n  IdentityFile %s\n  IdentitiesOnly yes\n%sHost first\n  IdentityFile %s\n%sHost all\n%s",
		pubOnly, base, pubOnly, base, base))

	for _, host := range []string{"only", "first"} {
		t.Run(host, func(t *testing.T) {
			var log logs
			h := mustDial(t, host, remote.Config{SSHConfigFile: cfgFile, Logf: log.logf})
			output(t, h, "true")
			if !strings.Contains(log.String(), "with "+pubOnly+" via ssh-agent") {
				t.Errorf("verbose output:\n%s", log.String())
			}
		})
	}
	t.Run("all agent keys in agent order", func(t *testing.T) {
		// What ssh itself does here: the agent's keys in order, and the
		// server hangs up before the fifth.
		_, err := dial(t, "all", remote.Config{SSHConfigFile: cfgFile})
		if !errors.Is(err, remote.ErrAuth) || !strings.Contains(err.Error(), "MaxAuthTries") || !strings.Contains(err.Error(), "IdentitiesOnly") {
			t.Errorf("error %v", err)
		}
	})
}

// TestEncryptedKey: a passphrase-protected key is never prompted for: it
// fails at once, saying to ssh-add it; loaded into an agent, it works.
func TestEncryptedKey(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	dir := t.TempDir()
	enc := filepath.Join(dir, "id_encrypted")
	s := writeKey(t, enc, "correct horse")
	srv := sshdtest.Start(t, sshdtest.Options{AuthorizedKeys: []string{authorized(s.PublicKey())}})
	sock := startAgent(t)
	unrelated := filepath.Join(dir, "unrelated")
	writeKey(t, unrelated, "")
	sshAdd(t, sock, unrelated, "")
	cfgFile := writeFile(t, dir, "config", fmt.Sprintf(`
Host noagent
  IdentityAgent none
  IdentitiesOnly yes
Host withagent
  IdentityAgent %s
Host *
  HostName %s
  Port %d
  User %s
  IdentityFile %s
  UserKnownHostsFile %s
  GlobalKnownHostsFile none
`, sock, srv.Host, srv.Port, srv.User, enc, srv.KnownHostsFile))

	start := time.Now()
	_, err := dial(t, "noagent", remote.Config{SSHConfigFile: cfgFile})
	if !errors.Is(err, remote.ErrAuth) || !strings.Contains(err.Error(), "ssh-add "+enc) || !strings.Contains(err.Error(), "passphrase") {
		t.Errorf("without an agent: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v to refuse", d)
	}
	// The agent holds another key, which the host refuses: the message
	// still names the encrypted key.
	_, err = dial(t, "withagent", remote.Config{SSHConfigFile: cfgFile})
	if !errors.Is(err, remote.ErrAuth) || !strings.Contains(err.Error(), "load it with: ssh-add "+enc) {
		t.Errorf("with an agent that lacks the key: %v", err)
	}
	sshAdd(t, sock, enc, "correct horse")
	var log logs
	h := mustDial(t, "withagent", remote.Config{SSHConfigFile: cfgFile, Logf: log.logf})
	output(t, h, "true")
	if !strings.Contains(log.String(), enc+" via ssh-agent") {
		t.Errorf("verbose output:\n%s", log.String())
	}
}

// TestUserCertificate: a key with an id-cert.pub next to it (or named by
// CertificateFile) logs in with the certificate, which the host trusts
// through TrustedUserCAKeys; the key itself is not authorised.
func TestUserCertificate(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	dir := t.TempDir()
	userCA := sshdtest.NewSigner(t)
	caFile := writeFile(t, dir, "user_ca.pub", authorized(userCA.PublicKey())+"\n")
	srv := sshdtest.Start(t, sshdtest.Options{ExtraConfig: []string{"TrustedUserCAKeys " + caFile}})
	key := filepath.Join(dir, "id_ed25519")
	s := writeKey(t, key, "")
	cert := &ssh.Certificate{Key: s.PublicKey(), Serial: 1, CertType: ssh.UserCert, KeyId: "test", ValidPrincipals: []string{srv.User},
		ValidAfter: uint64(time.Now().Add(-time.Hour).Unix()), ValidBefore: uint64(time.Now().Add(time.Hour).Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}}}
	if err := cert.SignCert(rand.Reader, userCA); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, certFile, extra string }{
		{"next to the key", key + "-cert.pub", ""},
		{"CertificateFile", filepath.Join(dir, "elsewhere.cert"), "CertificateFile " + filepath.Join(dir, "elsewhere.cert")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			writeFile(t, filepath.Dir(tt.certFile), filepath.Base(tt.certFile), string(ssh.MarshalAuthorizedKey(cert)))
			defer os.Remove(tt.certFile)
			extra := []string{"IdentityFile " + key}
			if tt.extra != "" {
				extra = append(extra, tt.extra)
			}
			cfgFile := writeFile(t, t.TempDir(), "config", block("h", srv, extra...))
			var log logs
			h := mustDial(t, "h", remote.Config{SSHConfigFile: cfgFile, Logf: log.logf})
			output(t, h, "true")
			if !strings.Contains(log.String(), "with "+tt.certFile+" with "+key) {
				t.Errorf("verbose output:\n%s", log.String())
			}
		})
	}
}

// TestConnectTimeout: whatever hangs (TCP accepted but silent, silent
// after the banner, an agent that never answers), Dial fails within the
// configured time, saying so.
func TestConnectTimeout(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	srv := sshdtest.Start(t, sshdtest.Options{})
	dir := t.TempDir()
	silent := sshdtest.SilentListener(t, "tcp", "127.0.0.1:0", "")
	banner := sshdtest.SilentListener(t, "tcp", "127.0.0.1:0", "SSH-2.0-OpenSSH_9.2\r\n")
	hungAgent := sshdtest.SilentListener(t, "unix", filepath.Join(dir, "agent.sock"), "")
	port := func(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }
	cfgFile := writeFile(t, dir, "config", fmt.Sprintf(`
Host silent
  Port %s
Host banner
  Port %s
Host hungagent
  Port %d
  IdentityAgent %s
Host *
  HostName 127.0.0.1
  ConnectTimeout 1
  IdentityFile %s
  IdentityAgent none
  UserKnownHostsFile %s
  GlobalKnownHostsFile none
`, port(silent), port(banner), srv.Port, hungAgent, srv.ClientKeyFile, srv.KnownHostsFile))

	tests := []struct {
		host    string
		timeout time.Duration // Config.ConnectTimeout; 0: the config's 1s
		is      error
		says    string
	}{
		{"silent", 0, remote.ErrUnreachable, "no SSH answer from 127.0.0.1:" + port(silent) + " within 1s"},
		{"banner", 0, remote.ErrUnreachable, "within 1s"},
		{"silent", 300 * time.Millisecond, remote.ErrUnreachable, "within 300ms"},
		{"hungagent", 0, remote.ErrAuth, "did not answer within 1s"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %v", tt.host, tt.timeout), func(t *testing.T) {
			t.Parallel()
			bound := tt.timeout
			if bound == 0 {
				bound = time.Second
			}
			start := time.Now()
			_, err := dial(t, tt.host, remote.Config{SSHConfigFile: cfgFile, ConnectTimeout: tt.timeout})
			took := time.Since(start)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %v, want %v saying %q", err, tt.is, tt.says)
			}
			if took < bound*9/10 || took > bound+2*time.Second {
				t.Errorf("failed after %v; the bound is %v", took, bound)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		ctx, stop := context.WithCancel(ctx)
		time.AfterFunc(100*time.Millisecond, stop)
		start := time.Now()
		_, err := remote.Dial(ctx, remote.Address{Host: "silent"}, remote.Config{SSHConfigFile: cfgFile})
		if !errors.Is(err, context.Canceled) || time.Since(start) > time.Second {
			t.Errorf("after %v: %v", time.Since(start), err)
		}
	})
}

// TestKeepAlive: when the network dies under an open connection (frozen:
// nothing gets through either way; or cut), what runs on it fails with
// ErrConnectionLost within ServerAliveInterval x ServerAliveCountMax.
func TestKeepAlive(t *testing.T) {
	sshdtest.Require(t)
	t.Parallel()
	srv := sshdtest.Start(t, sshdtest.Options{})
	for _, mode := range []string{"frozen", "cut"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			proxy := sshdtest.StartProxy(t, srv.Addr)
			dir := t.TempDir()
			kh := writeFile(t, dir, "known_hosts", "gitric-test-host "+authorized(srv.HostKey)+"\n")
			_, port, _ := net.SplitHostPort(proxy.Addr)
			cfgFile := writeFile(t, dir, "config", block("h", srv, "Port "+port, "HostKeyAlias gitric-test-host", "UserKnownHostsFile "+kh,
				"ServerAliveInterval 1", "ServerAliveCountMax 2"))
			h := mustDial(t, "h", remote.Config{SSHConfigFile: cfgFile})
			p, err := h.Start(context.Background(), "upload", "cat > /dev/null")
			if err != nil {
				t.Fatal(err)
			}
			go io.Copy(io.Discard, p.Stdout)
			go io.Copy(io.Discard, p.Stderr)
			go func() {
				buf := make([]byte, 32<<10)
				for {
					if _, err := p.Stdin.Write(buf); err != nil {
						return
					}
				}
			}()
			time.Sleep(200 * time.Millisecond)
			start := time.Now()
			if mode == "frozen" {
				proxy.FreezeAfter(0)
			} else {
				proxy.CutAfter(1)
			}
			done := make(chan error, 1)
			go func() { done <- p.Wait() }()
			select {
			case err = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("the upload still runs 15s after the network died")
			}
			took := time.Since(start)
			if !errors.Is(err, remote.ErrConnectionLost) || !strings.HasPrefix(err.Error(), "h: upload: ") {
				t.Fatalf("error %v", err)
			}
			if mode == "frozen" && (!strings.Contains(err.Error(), "did not answer 2 keepalives") || took > 6*time.Second) {
				t.Errorf("after %v: %v", took, err)
			}
		})
	}
}

func newECDSA(t *testing.T) ssh.PublicKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ssh.NewPublicKey(&priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
