package remote

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// This file reads ssh_config(5) the way OpenSSH does, for the keywords
// gitric uses: the first value obtained for a keyword wins (IdentityFile
// and CertificateFile accumulate); Host blocks match the name as written;
// Match blocks test host (after HostName), originalhost, user, localuser,
// localnetwork, tagged, exec, all, canonical and final; Include reads
// more files (globs; relative to ~/.ssh, or /etc/ssh for the system file)
// in the place and under the condition where it appears.

// ErrConfig means an ssh_config file could not be used.
var ErrConfig = errors.New("bad ssh_config")

// maxIncludeDepth is OpenSSH's limit on nested Include.
const maxIncludeDepth = 16

// configLine is one keyword line of an ssh_config file.
type configLine struct {
	file string
	line int
	key  string // lower case
	args []string
}

func (l configLine) where() string { return fmt.Sprintf("%s:%d", l.file, l.line) }

func (l configLine) errorf(format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, l.where(), fmt.Sprintf(format, args...))
}

// setting is the value a keyword got, and where.
type setting struct {
	configLine
	seq int // order in which the settings were obtained
}

// configFiles reads and caches ssh_config files; one is used per Dial.
type configFiles struct {
	home   string
	parsed map[string][]configLine
}

func newConfigFiles(home string) *configFiles {
	return &configFiles{home: home, parsed: map[string][]configLine{}}
}

// read parses one file; a missing file reads as empty (ok false).
func (c *configFiles) read(path string, checkPerm bool) (lines []configLine, ok bool, err error) {
	if l, done := c.parsed[path]; done {
		return l, l != nil, nil
	}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		c.parsed[path] = nil
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if checkPerm {
		if err := checkConfigPerm(path); err != nil {
			return nil, false, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	lines, err = parseConfig(path, data)
	if err != nil {
		return nil, false, err
	}
	if lines == nil {
		lines = []configLine{}
	}
	c.parsed[path] = lines
	return lines, true, nil
}

// parseConfig splits an ssh_config file into keyword lines.
func parseConfig(path string, data []byte) ([]configLine, error) {
	var out []configLine
	for n, raw := range bytes.Split(data, []byte("\n")) {
		s := strings.TrimSpace(strings.TrimSuffix(string(raw), "\r"))
		if s == "" || s[0] == '#' {
			continue
		}
		l := configLine{file: path, line: n + 1}
		i := strings.IndexAny(s, " \t=")
		if i < 0 {
			l.key, s = s, ""
		} else {
			l.key, s = s[:i], strings.TrimLeft(s[i:], " \t")
			if strings.HasPrefix(s, "=") {
				s = strings.TrimLeft(s[1:], " \t")
			}
		}
		l.key = strings.ToLower(l.key)
		args, err := splitArgs(s)
		if err != nil {
			return nil, l.errorf("%s: %v", l.key, err)
		}
		l.args = args
		out = append(out, l)
	}
	return out, nil
}

// splitArgs splits a keyword's arguments as OpenSSH's argv_split does:
// on blanks, with "double" or 'single' quotes grouping, a backslash
// escaping a quote, blank or backslash, and an unquoted # that starts an
// argument beginning a comment.
func splitArgs(s string) ([]string, error) {
	var args []string
	for {
		s = strings.TrimLeft(s, " \t")
		if s == "" || s[0] == '#' {
			return args, nil
		}
		var b strings.Builder
		var quote byte
		i := 0
	scan:
		for ; i < len(s); i++ {
			c := s[i]
			switch {
			case c == '\\' && i+1 < len(s) && strings.IndexByte(`"' \\`, s[i+1]) >= 0 && (quote == 0 || s[i+1] == quote || s[i+1] == '\\'):
				i++
				b.WriteByte(s[i])
			case quote != 0 && c == quote:
				quote = 0
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
			case quote == 0 && (c == ' ' || c == '\t'):
				break scan
			default:
				b.WriteByte(c)
			}
		}
		if quote != 0 {
			return nil, errors.New("unterminated quote")
		}
		args = append(args, b.String())
		s = s[i:]
	}
}

// multiValued are the keywords whose every value is used, in order.
var multiValued = map[string]bool{"identityfile": true, "certificatefile": true}

// hostConfig is what ssh_config says about one host.
type hostConfig struct {
	original string // the name as written (Host patterns match it)
	first    map[string]setting
	multi    map[string][]setting
	files    []string // the files read, in order
	applied  []string // "file:line Host x" of the blocks that applied
	seq      int
	final    bool // in the final pass
	wantFin  bool // a Match final/canonical asks for a final pass
	home     string
}

func (h *hostConfig) get(key string) (setting, bool) {
	s, ok := h.first[key]
	return s, ok
}

func (h *hostConfig) arg(key string) string {
	if s, ok := h.first[key]; ok && len(s.args) > 0 {
		return s.args[0]
	}
	return ""
}

// apply notes a Host or Match line that applies, once.
func (h *hostConfig) apply(what string) {
	if !slices.Contains(h.applied, what) {
		h.applied = append(h.applied, what)
	}
}

func (h *hostConfig) set(l configLine) {
	h.seq++
	if multiValued[l.key] {
		h.multi[l.key] = append(h.multi[l.key], setting{l, h.seq})
		return
	}
	if _, ok := h.first[l.key]; !ok {
		h.first[l.key] = setting{l, h.seq}
	}
}

// evalConfig works out ssh_config's settings for the host written as
// original, with the values given on the command line (user, port)
// already set. files are read in order (user file first, then the system
// file), each flagged system or not.
func (c *configFiles) evalConfig(ctx context.Context, original string, given map[string]string, files []configFile) (*hostConfig, error) {
	h := &hostConfig{original: original, first: map[string]setting{}, multi: map[string][]setting{}}
	h.home = c.home
	for k, v := range given {
		h.set(configLine{file: "(command line)", key: k, args: []string{v}})
	}
	pass := func() error {
		for _, f := range files {
			lines, ok, err := c.read(f.path, f.checkPerm)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if !h.final {
				h.files = append(h.files, f.path)
			}
			if err := c.evalLines(ctx, h, lines, f.system, 0, true, false); err != nil {
				return err
			}
		}
		return nil
	}
	if err := pass(); err != nil {
		return nil, err
	}
	if h.wantFin || strings.EqualFold(h.arg("canonicalizehostname"), "yes") || strings.EqualFold(h.arg("canonicalizehostname"), "always") {
		h.final = true
		if err := pass(); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// configFile is an ssh_config file to read.
type configFile struct {
	path      string
	system    bool // relative Include paths are under /etc/ssh
	checkPerm bool // refuse a file others can write, as ssh does
}

// evalLines applies lines in order. active is whether the enclosing block
// applies; neverMatch makes every Host and Match in these lines fail (an
// Include inside a block that does not apply).
func (c *configFiles) evalLines(ctx context.Context, h *hostConfig, lines []configLine, system bool, depth int, active, neverMatch bool) error {
	for _, l := range lines {
		switch l.key {
		case "host":
			if len(l.args) == 0 {
				return l.errorf("Host without patterns")
			}
			active = !neverMatch && matchHostLine(h.original, l.args)
			if active {
				h.apply(l.where() + " Host " + strings.Join(l.args, " "))
			}
		case "match":
			ok, err := c.evalMatch(ctx, h, l)
			if err != nil {
				return err
			}
			active = !neverMatch && ok
			if active {
				h.apply(l.where() + " Match " + strings.Join(l.args, " "))
			}
		case "include":
			if len(l.args) == 0 {
				return l.errorf("Include without a file")
			}
			if depth+1 > maxIncludeDepth {
				return l.errorf("Include nested more than %d deep", maxIncludeDepth)
			}
			for _, pat := range l.args {
				paths, err := c.includePaths(pat, system)
				if err != nil {
					return l.errorf("Include %s: %v", pat, err)
				}
				for _, p := range paths {
					inc, ok, err := c.read(p, !system)
					if err != nil {
						return err
					}
					if !ok {
						continue
					}
					if active && !h.final && !slices.Contains(h.files, p) {
						h.files = append(h.files, p)
					}
					if err := c.evalLines(ctx, h, inc, system, depth+1, active, neverMatch || !active); err != nil {
						return err
					}
				}
			}
		default:
			if active {
				h.set(l)
			}
		}
	}
	return nil
}

func (c *configFiles) includePaths(pat string, system bool) ([]string, error) {
	p, err := expandTilde(pat, c.home)
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(p) {
		if system {
			p = filepath.Join("/etc/ssh", p)
		} else {
			p = filepath.Join(c.home, ".ssh", p)
		}
	}
	matches, err := filepath.Glob(p)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range matches {
		if fi, err := os.Stat(m); err == nil && !fi.IsDir() {
			out = append(out, m)
		}
	}
	return out, nil
}

// matchHostLine is a Host line: some pattern matches the name and no
// negated one does.
func matchHostLine(name string, patterns []string) bool {
	return matchPatterns(name, patterns, true)
}

// matchPatternList matches s against a comma-separated list of patterns,
// some negated with !: true when one matches and no negated one does.
func matchPatternList(s, list string, lower bool) bool {
	return matchPatterns(s, strings.Split(list, ","), lower)
}

// matchPatterns is OpenSSH's match_pattern_list: true when a pattern
// matches s and no negated (!) one does; lower compares in lower case.
func matchPatterns(s string, patterns []string, lower bool) bool {
	if lower {
		s = strings.ToLower(s)
	}
	matched := false
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if lower {
			p = strings.ToLower(p)
		}
		neg := strings.HasPrefix(p, "!")
		if matchPattern(s, strings.TrimPrefix(p, "!")) {
			if neg {
				return false
			}
			matched = true
		}
	}
	return matched
}

// matchPattern matches s against a pattern where * is any run of
// characters and ? any one character.
func matchPattern(s, pat string) bool {
	for len(pat) > 0 {
		switch pat[0] {
		case '*':
			for len(pat) > 0 && pat[0] == '*' {
				pat = pat[1:]
			}
			if pat == "" {
				return true
			}
			for i := 0; i <= len(s); i++ {
				if matchPattern(s[i:], pat) {
					return true
				}
			}
			return false
		case '?':
			if s == "" {
				return false
			}
			s, pat = s[1:], pat[1:]
		default:
			if s == "" || s[0] != pat[0] {
				return false
			}
			s, pat = s[1:], pat[1:]
		}
	}
	return s == ""
}

// evalMatch evaluates a Match line: every criterion must hold.
func (c *configFiles) evalMatch(ctx context.Context, h *hostConfig, l configLine) (bool, error) {
	if len(l.args) == 0 {
		return false, l.errorf("Match without criteria")
	}
	result := true
	args := l.args
	for len(args) > 0 {
		crit := strings.ToLower(args[0])
		args = args[1:]
		neg := strings.HasPrefix(crit, "!")
		crit = strings.TrimPrefix(crit, "!")
		var r bool
		switch crit {
		case "all":
			r = true
		case "canonical", "final":
			if crit == "final" && !neg {
				h.wantFin = true
			}
			r = h.final
		case "host", "originalhost", "user", "localuser", "localnetwork", "tagged", "exec":
			if len(args) == 0 {
				return false, l.errorf("Match %s needs an argument", crit)
			}
			arg := args[0]
			args = args[1:]
			if !result {
				continue // OpenSSH stops evaluating (exec is not run) once one fails
			}
			var err error
			r, err = c.matchCriterion(ctx, h, l, crit, arg)
			if err != nil {
				return false, err
			}
		default:
			return false, l.errorf("Match %s is not supported by gitric", crit)
		}
		if r == neg {
			result = false
		}
	}
	return result, nil
}

func (c *configFiles) matchCriterion(ctx context.Context, h *hostConfig, l configLine, crit, arg string) (bool, error) {
	switch crit {
	case "host":
		return matchPatternList(h.currentHostName(), arg, true), nil
	case "originalhost":
		return matchPatternList(h.original, arg, true), nil
	case "user":
		return matchPatternList(h.currentUser(), arg, false), nil
	case "localuser":
		return matchPatternList(localUser(), arg, false), nil
	case "tagged":
		return matchPatternList(h.arg("tag"), arg, false), nil
	case "localnetwork":
		return matchLocalNetwork(arg), nil
	default: // exec
		cmd, err := h.expand(arg, execTokens)
		if err != nil {
			return false, l.errorf("Match exec: %v", err)
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		shell := os.Getenv("SHELL")
		if shell == "" {
			shell = "/bin/sh"
		}
		err = exec.CommandContext(ctx, shell, "-c", cmd).Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return true, nil
		case errors.As(err, &ee) && ctx.Err() == nil:
			return false, nil
		default:
			return false, l.errorf("Match exec %q: %v", cmd, err)
		}
	}
}

func matchLocalNetwork(list string) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, cidr := range strings.Split(list, ",") {
		neg := strings.HasPrefix(cidr, "!")
		_, n, err := net.ParseCIDR(strings.TrimPrefix(cidr, "!"))
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && n.Contains(ipn.IP) {
				if neg {
					return false
				}
				return true
			}
		}
	}
	return false
}

// currentHostName is the name Match host tests: HostName (its %h
// expanded) when set so far, else the name as written.
func (h *hostConfig) currentHostName() string {
	if hn := h.arg("hostname"); hn != "" {
		if s, err := expandTokens(hn, "%h", map[byte]string{'h': h.original}); err == nil {
			return s
		}
	}
	return h.original
}

func (h *hostConfig) currentUser() string {
	if u := h.arg("user"); u != "" {
		return u
	}
	return localUser()
}

// The tokens each keyword accepts (ssh_config(5), TOKENS).
const (
	fileTokens = "%CdhijkLlnpru"
	execTokens = "%CdhijkLlnpru"
)

// expand replaces %-tokens in s with the host's values so far.
func (h *hostConfig) expand(s, allowed string) (string, error) {
	return expandTokens(s, allowed, h.tokenValues())
}

func (h *hostConfig) tokenValues() map[byte]string {
	port := h.arg("port")
	if port == "" {
		port = "22"
	}
	host := h.currentHostName()
	ruser := h.currentUser()
	local, _ := os.Hostname()
	short, _, _ := strings.Cut(local, ".")
	alias := h.arg("hostkeyalias")
	if alias == "" {
		alias = h.original
	}
	vals := map[byte]string{
		'd': h.home,
		'h': host,
		'i': fmt.Sprint(os.Getuid()),
		'j': h.arg("proxyjump"),
		'k': alias,
		'L': short,
		'l': local,
		'n': h.original,
		'p': port,
		'r': ruser,
		'u': localUser(),
	}
	sum := sha1.Sum([]byte(local + host + port + ruser))
	vals['C'] = hex.EncodeToString(sum[:])
	return vals
}

// expandTokens replaces %x tokens (those in allowed) and %% in s.
func expandTokens(s, allowed string, vals map[byte]string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", fmt.Errorf("%q ends with a lone %%", s)
		}
		i++
		t := s[i]
		if t == '%' {
			b.WriteByte('%')
			continue
		}
		v, ok := vals[t]
		if !ok || !strings.ContainsRune(allowed, rune(t)) {
			return "", fmt.Errorf("%q: unknown or unsupported token %%%c", s, t)
		}
		b.WriteString(v)
	}
	return b.String(), nil
}

// expandEnv replaces ${VAR} with the environment variable's value; an
// unset variable is an error, as in ssh.
func expandEnv(s string) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("%q: unterminated ${", s)
		}
		name := s[i+2 : i+j]
		v, ok := os.LookupEnv(name)
		if !ok {
			return "", fmt.Errorf("%q: environment variable %s is not set", s, name)
		}
		b.WriteString(s[:i])
		b.WriteString(v)
		s = s[i+j+1:]
	}
}

// expandTilde replaces a leading ~ or ~user.
func expandTilde(p, home string) (string, error) {
	if !strings.HasPrefix(p, "~") {
		return p, nil
	}
	name, rest, _ := strings.Cut(p[1:], "/")
	if name == "" {
		if home == "" {
			return "", errors.New("no home directory to expand ~ in " + p)
		}
		return filepath.Join(home, rest), nil
	}
	dir, err := user.Lookup(name)
	if err != nil {
		return "", fmt.Errorf("expand %s: %w", p, err)
	}
	return filepath.Join(dir.HomeDir, rest), nil
}
