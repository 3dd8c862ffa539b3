package remote

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"
)

// Host key checking policies (StrictHostKeyChecking).
const (
	// StrictYes refuses hosts whose key known_hosts does not hold. It is
	// the default ("ask" means the same to gitric, which never prompts).
	StrictYes = "yes"
	// StrictAcceptNew accepts a host that known_hosts does not list yet
	// and appends its key there; a changed key is still refused.
	StrictAcceptNew = "accept-new"
	// StrictNo accepts unknown hosts too (and records them, as ssh
	// does); gitric uses it only when the user wrote it. A changed key is
	// still refused.
	StrictNo = "no"
)

// maxHops bounds a ProxyJump chain (and catches loops in ssh_config).
const maxHops = 10

// Target is how a host is reached: the jump hosts in order, then the host.
type Target struct {
	Hops []Hop
}

// Host is the last hop: the target itself.
func (t *Target) Host() *Hop { return &t.Hops[len(t.Hops)-1] }

// Identity is the account a Target logs in to: which machine, as which
// user. Two addresses with the same Identity reach the same account,
// however differently they are written (an alias, user@host, a port
// given or left to ssh_config).
type Identity struct {
	// Machine is the host's HostName and port after ssh_config: in lower
	// case, without a final dot, an IP address in its canonical form and
	// an IPv6 one in brackets ("web1.example.com:22", "[::1]:22"). When
	// jump hosts lead there, " via " and theirs follow, comma-separated
	// in the order they are dialled ("10.0.0.5:22 via
	// bastion.example.com:22"): one private address behind two jump
	// hosts may be two machines. Names are not looked up in DNS, so two
	// names of one machine give two Machines.
	Machine string
	// User is the user name it logs in as.
	User string
}

// Identity is the account t reaches.
func (t *Target) Identity() Identity {
	h := t.Host()
	m := h.machine()
	if len(t.Hops) > 1 {
		jumps := make([]string, len(t.Hops)-1)
		for i := range jumps {
			jumps[i] = t.Hops[i].machine()
		}
		m += " via " + strings.Join(jumps, ",")
	}
	return Identity{Machine: m, User: h.User}
}

// machine is the hop's HostName:port in the canonical form of
// Identity.Machine.
func (h *Hop) machine() string {
	host := strings.ToLower(strings.TrimSuffix(h.HostName, "."))
	if ip, err := netip.ParseAddr(host); err == nil {
		host = ip.Unmap().String()
	}
	return net.JoinHostPort(host, strconv.Itoa(h.Port))
}

// Hop is one SSH server on the way, with what ssh_config and Config say
// about it.
type Hop struct {
	// Name is the host as written: an alias, user@host:port, or a
	// ProxyJump entry. Messages about the hop start with it.
	Name string
	// Alias is the name that Host patterns matched (the host part of Name).
	Alias    string
	HostName string
	Port     int
	User     string
	// IdentityFiles and CertificateFiles are the configured ones, ~, ${VAR}
	// and %-tokens expanded; when none is configured, IdentityFiles holds
	// ssh's defaults and DefaultIdentities is true.
	IdentityFiles     []string
	DefaultIdentities bool
	CertificateFiles  []string
	IdentitiesOnly    bool
	// IdentityAgent is the ssh-agent socket to use; "" for none.
	IdentityAgent string
	// KnownHostsFiles are the user's files (the first one receives new
	// keys); GlobalKnownHostsFiles are only read.
	KnownHostsFiles       []string
	GlobalKnownHostsFiles []string
	HostKeyAlias          string
	StrictHostKeyChecking string // StrictYes, StrictAcceptNew or StrictNo
	HashKnownHosts        bool
	ConnectTimeout        time.Duration
	KeepAliveInterval     time.Duration // <= 0: no keepalives
	KeepAliveCountMax     int
	Network               string // tcp, tcp4 (AddressFamily inet) or tcp6
	// ConfigFiles are the ssh_config files read; Applied names the Host
	// and Match lines that applied.
	ConfigFiles []string
	Applied     []string

	jump string // the ProxyJump value, before it is split into hops
}

// HostPort is hostname:port, what the hop dials.
func (h *Hop) HostPort() string { return net.JoinHostPort(h.HostName, strconv.Itoa(h.Port)) }

// knownHostsName is the name known_hosts lists the hop under: the
// HostKeyAlias, else hostname, or [hostname]:port when the port is not 22.
func (h *Hop) knownHostsName() string {
	if h.HostKeyAlias != "" {
		return h.HostKeyAlias
	}
	return knownhosts.Normalize(h.HostPort())
}

// principal is the name a host certificate must list.
func (h *Hop) principal() string {
	if h.HostKeyAlias != "" {
		return h.HostKeyAlias
	}
	return h.HostName
}

// describe is the hop for a verbose line.
func (h *Hop) describe() string {
	s := fmt.Sprintf("%s@%s", h.User, h.HostPort())
	if len(h.ConfigFiles) > 0 {
		s += "; ssh_config " + strings.Join(h.ConfigFiles, ", ")
		if len(h.Applied) > 0 {
			s += " (" + strings.Join(h.Applied, "; ") + ")"
		}
	} else {
		s += "; no ssh_config file"
	}
	return s
}

// Resolve works out how Dial reaches addr: ssh_config (Config.SSHConfigFile,
// else ~/.ssh/config and /etc/ssh/ssh_config) applied to the host as
// written, Config's fields overriding it as ssh's command line options do,
// and the ProxyJump chain, each hop resolved through the config in turn.
func Resolve(ctx context.Context, addr Address, cfg Config) (*Target, error) {
	r, err := newResolver(&cfg)
	if err != nil {
		return nil, err
	}
	var jump *string
	if cfg.ProxyJump != "" {
		jump = &cfg.ProxyJump
	}
	hops, err := r.chain(ctx, addr, addr.Name(), jump, true, 0)
	if err != nil {
		return nil, err
	}
	return &Target{Hops: hops}, nil
}

type resolver struct {
	cfg   *Config
	home  string
	files []configFile
	cf    *configFiles
}

func newResolver(cfg *Config) (*resolver, error) {
	home, _ := os.UserHomeDir()
	r := &resolver{cfg: cfg, home: home}
	switch cfg.SSHConfigFile {
	case "none":
	case "":
		if home != "" {
			r.files = append(r.files, configFile{path: filepath.Join(home, ".ssh", "config"), checkPerm: true})
		}
		r.files = append(r.files, configFile{path: "/etc/ssh/ssh_config", system: true})
	default:
		p, err := expandTilde(cfg.SSHConfigFile, home)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("%w: the ssh_config file chosen for gitric: %w", ErrConfig, err)
		}
		r.files = append(r.files, configFile{path: p, checkPerm: true})
	}
	r.cf = newConfigFiles(home)
	return r, nil
}

// chain resolves addr and the hops before it. jump is a ProxyJump given
// explicitly for this hop (it then beats the config's), nil when not.
func (r *resolver) chain(ctx context.Context, addr Address, name string, jump *string, target bool, depth int) ([]Hop, error) {
	if depth >= maxHops {
		return nil, fmt.Errorf("%w: more than %d ProxyJump hops to reach %s: does the config loop?", ErrConfig, maxHops, name)
	}
	hop, err := r.hop(ctx, addr, name, target)
	if err != nil {
		return nil, err
	}
	j := hop.jump
	if jump != nil {
		j = *jump
	}
	if j == "" || strings.EqualFold(j, "none") {
		return []Hop{*hop}, nil
	}
	specs := strings.Split(j, ",")
	last := strings.TrimSpace(specs[len(specs)-1])
	jaddr, err := parseJump(last)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: ProxyJump %q: %w", ErrConfig, name, j, err)
	}
	var before *string
	if len(specs) > 1 {
		s := strings.Join(specs[:len(specs)-1], ",")
		before = &s
	}
	hops, err := r.chain(ctx, jaddr, last, before, false, depth+1)
	if err != nil {
		return nil, err
	}
	return append(hops, *hop), nil
}

// parseJump reads one ProxyJump entry: [user@]host[:port] or
// ssh://[user@]host[:port].
func parseJump(s string) (Address, error) {
	s = strings.TrimPrefix(s, "ssh://")
	s = strings.TrimSuffix(s, "/")
	return ParseAddress(s)
}

// hop applies ssh_config and Config to one host.
func (r *resolver) hop(ctx context.Context, addr Address, name string, target bool) (*Hop, error) {
	given := map[string]string{}
	if addr.User != "" {
		given["user"] = addr.User
	}
	if addr.Port != 0 {
		given["port"] = strconv.Itoa(addr.Port)
	}
	hc, err := r.cf.evalConfig(ctx, addr.Host, given, r.files)
	if err != nil {
		return nil, err
	}
	cfg := r.cfg
	h := &Hop{Name: name, Alias: addr.Host, ConfigFiles: hc.files, Applied: hc.applied}
	bad := func(key string, format string, args ...any) error {
		s, _ := hc.get(key)
		return s.errorf(format, args...)
	}

	h.HostName = hc.currentHostName()
	if strings.ContainsAny(h.HostName, " \t/\\'\"`$;&|%") || h.HostName == "" {
		return nil, bad("hostname", "bad HostName %q", h.HostName)
	}
	h.User = hc.currentUser()
	h.Port = 22
	if p := hc.arg("port"); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, bad("port", "Port %q is not a number from 1 to 65535", p)
		}
		h.Port = n
	}
	// expandPath expands a file name of the config line s: %-tokens,
	// ${VAR} and ~.
	expandPath := func(s setting, p string) (string, error) {
		p, err := hc.expand(p, fileTokens)
		if err == nil {
			p, err = expandEnv(p)
		}
		if err == nil {
			p, err = expandTilde(p, r.home)
		}
		if err != nil {
			return "", s.errorf("%s: %v", s.key, err)
		}
		return p, nil
	}

	// Identities: Config's (like ssh -i) first, then the config's.
	for _, f := range cfg.IdentityFiles {
		p, err := expandTilde(f, r.home)
		if err != nil {
			return nil, err
		}
		h.IdentityFiles = append(h.IdentityFiles, p)
	}
	for _, s := range hc.multi["identityfile"] {
		for _, a := range s.args {
			if strings.EqualFold(a, "none") {
				continue
			}
			p, err := expandPath(s, a)
			if err != nil {
				return nil, err
			}
			if !slices.Contains(h.IdentityFiles, p) {
				h.IdentityFiles = append(h.IdentityFiles, p)
			}
		}
	}
	if len(h.IdentityFiles) == 0 && len(cfg.Signers) == 0 && r.home != "" {
		h.DefaultIdentities = true
		for _, n := range []string{"id_rsa", "id_ecdsa", "id_ed25519"} {
			h.IdentityFiles = append(h.IdentityFiles, filepath.Join(r.home, ".ssh", n))
		}
	}
	for _, s := range hc.multi["certificatefile"] {
		for _, a := range s.args {
			p, err := expandPath(s, a)
			if err != nil {
				return nil, err
			}
			h.CertificateFiles = append(h.CertificateFiles, p)
		}
	}
	h.IdentitiesOnly = cfg.IdentitiesOnly || isYes(hc.arg("identitiesonly"))

	agent := cfg.IdentityAgent
	if s, ok := hc.get("identityagent"); agent == "" && ok && len(s.args) > 0 {
		switch v := s.args[0]; {
		case strings.EqualFold(v, "none"), v == "SSH_AUTH_SOCK":
			agent = v
		case strings.HasPrefix(v, "$") && !strings.HasPrefix(v, "${"):
			agent = os.Getenv(v[1:])
		default:
			p, err := expandPath(s, v)
			if err != nil {
				return nil, err
			}
			agent = p
		}
	}
	if agent == "" || agent == "SSH_AUTH_SOCK" {
		agent = os.Getenv("SSH_AUTH_SOCK")
	}
	if strings.EqualFold(agent, "none") {
		agent = ""
	}
	h.IdentityAgent = agent

	// Host keys. knownHostsPaths expands the files of a User- or
	// GlobalKnownHostsFile line; "none" stands for no file.
	knownHostsPaths := func(s setting) ([]string, error) {
		var files []string
		for _, a := range s.args {
			if strings.EqualFold(a, "none") {
				continue
			}
			p, err := expandPath(s, a)
			if err != nil {
				return nil, err
			}
			files = append(files, p)
		}
		return files, nil
	}
	if len(cfg.KnownHostsFiles) > 0 {
		for _, f := range cfg.KnownHostsFiles {
			p, err := expandTilde(f, r.home)
			if err != nil {
				return nil, err
			}
			h.KnownHostsFiles = append(h.KnownHostsFiles, p)
		}
	} else if s, ok := hc.get("userknownhostsfile"); ok {
		files, err := knownHostsPaths(s)
		if err != nil {
			return nil, err
		}
		h.KnownHostsFiles = files
	} else if r.home != "" {
		h.KnownHostsFiles = []string{filepath.Join(r.home, ".ssh", "known_hosts"), filepath.Join(r.home, ".ssh", "known_hosts2")}
	}
	if s, ok := hc.get("globalknownhostsfile"); ok {
		files, err := knownHostsPaths(s)
		if err != nil {
			return nil, err
		}
		h.GlobalKnownHostsFiles = files
	} else {
		h.GlobalKnownHostsFiles = []string{"/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"}
	}
	if a := hc.arg("hostkeyalias"); a != "" {
		h.HostKeyAlias = strings.ToLower(a)
	}
	strict := cfg.StrictHostKeyChecking
	where := "Config.StrictHostKeyChecking"
	if strict == "" {
		strict = hc.arg("stricthostkeychecking")
		s, _ := hc.get("stricthostkeychecking")
		where = s.where()
	}
	switch strings.ToLower(strict) {
	case "", "yes", "true", "ask":
		h.StrictHostKeyChecking = StrictYes
	case "accept-new":
		h.StrictHostKeyChecking = StrictAcceptNew
	case "no", "off", "false":
		h.StrictHostKeyChecking = StrictNo
	default:
		return nil, fmt.Errorf("%w: %s: StrictHostKeyChecking %q: use yes, accept-new or no", ErrConfig, where, strict)
	}
	h.HashKnownHosts = isYes(hc.arg("hashknownhosts"))

	// Time limits.
	h.ConnectTimeout = cfg.ConnectTimeout
	if h.ConnectTimeout <= 0 {
		h.ConnectTimeout = DefaultConnectTimeout
		if v := hc.arg("connecttimeout"); v != "" && !strings.EqualFold(v, "none") {
			d, err := parseSeconds(v)
			if err != nil || d <= 0 {
				return nil, bad("connecttimeout", "ConnectTimeout %q is not a number of seconds", v)
			}
			h.ConnectTimeout = d
		}
	}
	h.KeepAliveInterval = cfg.KeepAliveInterval
	if h.KeepAliveInterval == 0 {
		h.KeepAliveInterval = DefaultKeepAliveInterval
		if v := hc.arg("serveraliveinterval"); v != "" {
			d, err := parseSeconds(v)
			if err != nil || d < 0 {
				return nil, bad("serveraliveinterval", "ServerAliveInterval %q is not a number of seconds", v)
			}
			h.KeepAliveInterval = d
		}
	}
	h.KeepAliveCountMax = cfg.KeepAliveCountMax
	if h.KeepAliveCountMax <= 0 {
		h.KeepAliveCountMax = DefaultKeepAliveCountMax
		if v := hc.arg("serveralivecountmax"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				return nil, bad("serveralivecountmax", "ServerAliveCountMax %q is not a positive number", v)
			}
			h.KeepAliveCountMax = n
		}
	}
	switch strings.ToLower(hc.arg("addressfamily")) {
	case "inet":
		h.Network = "tcp4"
	case "inet6":
		h.Network = "tcp6"
	default:
		h.Network = "tcp"
	}

	// The way there. ProxyCommand and ProxyJump: the first one obtained
	// wins, as in ssh; gitric cannot run a ProxyCommand.
	pj, hasJump := hc.get("proxyjump")
	pc, hasCmd := hc.get("proxycommand")
	if hasCmd && len(pc.args) > 0 && !strings.EqualFold(pc.args[0], "none") && (!hasJump || pc.seq < pj.seq) {
		if target && r.cfg.ProxyJump != "" {
			// an explicit ProxyJump (ssh -J) replaces it
		} else {
			return nil, pc.errorf("%s: ProxyCommand is not supported by gitric, which reaches hosts through one SSH connection; use ProxyJump instead", name)
		}
	} else if hasJump && len(pj.args) > 0 {
		h.jump = strings.Join(pj.args, ",")
	}
	return h, nil
}

func isYes(v string) bool {
	return strings.EqualFold(v, "yes") || strings.EqualFold(v, "true")
}

// parseSeconds reads an ssh_config time: seconds, or a sequence such as
// 1m30s (sshd_config(5) TIME FORMATS).
func parseSeconds(v string) (time.Duration, error) {
	if n, err := strconv.Atoi(v); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	var total time.Duration
	rest := strings.ToLower(v)
	for rest != "" {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 {
			return 0, errors.New("bad time")
		}
		n, _ := strconv.Atoi(rest[:i])
		unit := time.Second
		rest = rest[i:]
		if rest != "" {
			switch rest[0] {
			case 's':
			case 'm':
				unit = time.Minute
			case 'h':
				unit = time.Hour
			case 'd':
				unit = 24 * time.Hour
			case 'w':
				unit = 7 * 24 * time.Hour
			default:
				return 0, errors.New("bad time")
			}
			rest = rest[1:]
		}
		total += time.Duration(n) * unit
	}
	return total, nil
}
