package remote

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeConfig writes an ssh_config file (mode 0600) and returns its path.
func writeConfig(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{`a b	c`, []string{"a", "b", "c"}},
		{`"with space" x`, []string{"with space", "x"}},
		{`'single q' "mixed 'q'"`, []string{"single q", "mixed 'q'"}},
		{`a\ b`, []string{"a b"}},
		{`x # a comment`, []string{"x"}},
		{`x#notacomment`, []string{"x#notacomment"}},
		{``, nil},
	}
	for _, tt := range tests {
		got, err := splitArgs(tt.in)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("splitArgs(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := splitArgs(`"open`); err == nil {
		t.Error("an unterminated quote was accepted")
	}
}

func TestMatchPattern(t *testing.T) {
	tests := []struct {
		s, pat string
		want   bool
	}{
		{"web1", "web1", true},
		{"web1", "web*", true},
		{"web1", "w?b1", true},
		{"web1", "*", true},
		{"web12", "web?", false},
		{"db1", "web*", false},
		{"a.example.com", "*.example.com", true},
		{"[a.example.com]:2222", "*.example.com", false},
		{"[a.example.com]:2222", "[*.example.com]:2222", true},
	}
	for _, tt := range tests {
		if got := matchPattern(tt.s, tt.pat); got != tt.want {
			t.Errorf("matchPattern(%q, %q) = %v", tt.s, tt.pat, got)
		}
	}
	if !matchPatternList("web1", "db*,web*", true) || matchPatternList("web1", "*,!web1", true) || matchPatternList("WEB1", "db*", true) {
		t.Error("matchPatternList")
	}
	if !matchHostLine("web1", []string{"db", "web*"}) || matchHostLine("web-bad", []string{"web*", "!web-bad"}) {
		t.Error("matchHostLine")
	}
}

func TestExpandTokens(t *testing.T) {
	vals := map[byte]string{'h': "host.example", 'p': "2222", 'r': "deploy", 'u': "me"}
	got, err := expandTokens("~/.ssh/%r@%h:%p-%%", "%hpru", vals)
	if err != nil || got != "~/.ssh/deploy@host.example:2222-%" {
		t.Errorf("expandTokens = %q, %v", got, err)
	}
	if _, err := expandTokens("%z", "%hpru", vals); err == nil {
		t.Error("an unknown token was accepted")
	}
	if _, err := expandTokens("%p", "%h", vals); err == nil {
		t.Error("a token the keyword does not take was accepted")
	}
}

func TestParseSeconds(t *testing.T) {
	for in, want := range map[string]time.Duration{"5": 5 * time.Second, "1m30s": 90 * time.Second, "2h": 2 * time.Hour, "10S": 10 * time.Second} {
		if got, err := parseSeconds(in); err != nil || got != want {
			t.Errorf("parseSeconds(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := parseSeconds("soon"); err == nil {
		t.Error("parseSeconds(soon) succeeded")
	}
}

// TestResolveConfig covers the ssh_config rules gitric follows: first
// value wins, Host patterns and negation, Match host after HostName,
// Match originalhost/user/final/exec, Include (glob, relative, inside a
// block), IdentityFile accumulating with tokens, the command line beating
// the file, and ProxyJump chains.
func TestResolveConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	home, _ := os.UserHomeDir()
	writeConfig(t, dir, "conf.d/10-web.conf", `
Host web-inc
  HostName 10.0.0.9
  User included
`)
	writeConfig(t, dir, "conf.d/20-port.conf", `
Port 2201
`)
	writeConfig(t, dir, "only-for-db.conf", `
IdentityFile /keys/db-only
`)
	marker := filepath.Join(dir, "exec-ran")
	cfgFile := writeConfig(t, dir, "config", `
# comment
Host web1 web2
    HostName %h.internal.example
    User deploy
    IdentityFile ~/.ssh/id_%r_%h
    IdentityFile /keys/second
    Port=2222

Host web-bad
    HostName shouldnotapply

Host web* !web-bad
    User notfirst
    IdentitiesOnly yes
    ConnectTimeout 7
    ServerAliveInterval 2
    ServerAliveCountMax 4

Match host *.internal.example
    UserKnownHostsFile `+dir+`/kh1 "`+dir+`/kh 2"
    StrictHostKeyChecking accept-new
    HashKnownHosts yes

Match originalhost db user dbadmin
    Include `+dir+`/only-for-db.conf

Host db
    Include `+dir+`/only-for-db.conf
    HostName db.example

Host bastion
    HostName 10.1.1.1
    User jumper
    Port 2022

Host behind
    HostName 10.2.2.2
    ProxyJump bastion,inner@10.3.3.3:2200

Host inner-via-config 10.3.3.3
    ProxyJump never-used-for-an-explicit-chain

Host loop
    ProxyJump loop

Host direct
    ProxyJump none

Host dir*
    ProxyJump bastion

Host viacmd
    ProxyCommand nc %h %p

Host cmdnone
    ProxyCommand none
    ProxyJump bastion

Match exec "touch `+marker+`; true" host never-matches
    User exec

Match final host final.example
    User from-final-pass

Host fin
    HostName final.example

Host *
Include `+dir+`/conf.d/*.conf
`)
	resolve := func(host string, cfg Config) (*Target, error) {
		addr, err := ParseAddress(host)
		if err != nil {
			t.Fatal(err)
		}
		cfg.SSHConfigFile = cfgFile
		return Resolve(context.Background(), addr, cfg)
	}
	must := func(host string, cfg Config) *Hop {
		t.Helper()
		tg, err := resolve(host, cfg)
		if err != nil {
			t.Fatalf("Resolve(%s): %v", host, err)
		}
		return tg.Host()
	}

	h := must("web1", Config{})
	if h.HostName != "web1.internal.example" || h.User != "deploy" || h.Port != 2222 {
		t.Errorf("web1: %s@%s:%d", h.User, h.HostName, h.Port)
	}
	if want := []string{filepath.Join(home, ".ssh/id_deploy_web1.internal.example"), "/keys/second"}; !reflect.DeepEqual(h.IdentityFiles, want) || h.DefaultIdentities {
		t.Errorf("web1 identity files %q, want %q", h.IdentityFiles, want)
	}
	if !h.IdentitiesOnly || h.ConnectTimeout != 7*time.Second || h.KeepAliveInterval != 2*time.Second || h.KeepAliveCountMax != 4 {
		t.Errorf("web1: IdentitiesOnly %v, ConnectTimeout %v, ServerAlive %v x %d", h.IdentitiesOnly, h.ConnectTimeout, h.KeepAliveInterval, h.KeepAliveCountMax)
	}
	if want := []string{dir + "/kh1", dir + "/kh 2"}; !reflect.DeepEqual(h.KnownHostsFiles, want) || h.StrictHostKeyChecking != StrictAcceptNew || !h.HashKnownHosts {
		t.Errorf("web1: known hosts %q %s hash %v (Match host after HostName)", h.KnownHostsFiles, h.StrictHostKeyChecking, h.HashKnownHosts)
	}
	if h.knownHostsName() != "[web1.internal.example]:2222" {
		t.Errorf("known_hosts name %q", h.knownHostsName())
	}
	if len(h.Applied) < 2 || !strings.Contains(h.Applied[0], "config:3 Host web1 web2") {
		t.Errorf("applied blocks: %q", h.Applied)
	}

	// The command line (user@host:port) beats the config.
	h = must("root@web2:2200", Config{})
	if h.User != "root" || h.Port != 2200 || h.HostName != "web2.internal.example" {
		t.Errorf("root@web2:2200 resolved to %s@%s:%d", h.User, h.HostName, h.Port)
	}
	if h.IdentityFiles[0] != filepath.Join(home, ".ssh/id_root_web2.internal.example") {
		t.Errorf("%%r did not take the command line's user: %q", h.IdentityFiles)
	}

	// Negated pattern; Config fields beat the file; defaults.
	h = must("web-bad", Config{ConnectTimeout: time.Second, StrictHostKeyChecking: StrictYes, KnownHostsFiles: []string{"/x/kh"}, IdentityFiles: []string{"/x/id"}})
	if h.HostName != "shouldnotapply" || h.User != localUser() || h.IdentitiesOnly || h.ConnectTimeout != time.Second {
		t.Errorf("web-bad: %+v", h)
	}
	if h.Port != 2201 {
		t.Errorf("web-bad: port %d, want 2201 from the Include at the end", h.Port)
	}
	if h.StrictHostKeyChecking != StrictYes || !reflect.DeepEqual(h.KnownHostsFiles, []string{"/x/kh"}) || !reflect.DeepEqual(h.IdentityFiles, []string{"/x/id"}) {
		t.Errorf("web-bad: Config did not override: %s %q %q", h.StrictHostKeyChecking, h.KnownHostsFiles, h.IdentityFiles)
	}

	// Include inside a Host block, and Match originalhost+user.
	h = must("dbadmin@db", Config{})
	if !reflect.DeepEqual(h.IdentityFiles, []string{"/keys/db-only"}) || h.HostName != "db.example" {
		t.Errorf("db: identity files %q, hostname %s", h.IdentityFiles, h.HostName)
	}
	h = must("other@db", Config{})
	if !reflect.DeepEqual(h.IdentityFiles, []string{"/keys/db-only"}) {
		t.Errorf("other@db: identity files %q", h.IdentityFiles)
	}

	// Include of a glob at the end of the file.
	h = must("web-inc", Config{})
	if h.HostName != "10.0.0.9" || h.User != "notfirst" {
		t.Errorf("web-inc: %s@%s", h.User, h.HostName)
	}
	h = must("nothing-configured", Config{})
	if !h.DefaultIdentities || h.Port != 2201 || h.StrictHostKeyChecking != StrictYes || h.ConnectTimeout != DefaultConnectTimeout || h.KeepAliveInterval != DefaultKeepAliveInterval {
		t.Errorf("defaults: %+v", h)
	}

	// Match final applies in the second pass.
	if h = must("fin", Config{}); h.User != "from-final-pass" {
		t.Errorf("fin: user %q, want the one from Match final", h.User)
	}
	// exec is not run when an earlier criterion already failed... and
	// here it comes first, so it runs; its host criterion fails.
	if _, err := os.Stat(marker); err != nil {
		t.Errorf("Match exec did not run: %v", err)
	}

	// ProxyJump chain: each hop through the config; an explicit chain's
	// hops don't use their own ProxyJump.
	tg, err := resolve("behind", Config{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, hop := range tg.Hops {
		got = append(got, hop.Name+"="+hop.User+"@"+hop.HostPort())
	}
	want := []string{"bastion=jumper@10.1.1.1:2022", "inner@10.3.3.3:2200=inner@10.3.3.3:2200", "behind=" + localUser() + "@10.2.2.2:2201"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("chain %q, want %q", got, want)
	}
	if tg, err := resolve("behind", Config{ProxyJump: "none"}); err != nil || len(tg.Hops) != 1 {
		t.Errorf("ProxyJump none: %v hops, %v", tg, err)
	}
	if tg, err := resolve("direct", Config{ProxyJump: ""}); err != nil || len(tg.Hops) != 1 {
		t.Errorf("ProxyJump none in the config: %v", err)
	}
	if _, err := resolve("loop", Config{}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "loop") {
		t.Errorf("a looping ProxyJump: %v", err)
	}
	if _, err := resolve("viacmd", Config{}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "ProxyCommand is not supported") {
		t.Errorf("ProxyCommand: %v", err)
	}
	if tg, err := resolve("cmdnone", Config{}); err != nil || len(tg.Hops) != 2 {
		t.Errorf("ProxyCommand none then ProxyJump: %v", err)
	}
}

func TestResolveConfigErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tests := []struct {
		name, config, says string
	}{
		{"bad port", "Host x\n Port http\n", "config:2: Port \"http\" is not a number"},
		{"bad strict", "StrictHostKeyChecking maybe\n", "config:1: StrictHostKeyChecking \"maybe\""},
		{"bad match", "Match hostname x\n", "config:1: Match hostname is not supported"},
		{"quote", "Host \"x\n", "config:1: host: unterminated quote"},
		{"unset env", "Host *\n  IdentityFile ${GITRIC_SURELY_UNSET_VAR}/id\n", "config:2: identityfile: \"${GITRIC_SURELY_UNSET_VAR}/id\": environment variable GITRIC_SURELY_UNSET_VAR is not set"},
		{"include loop", "Include \"" + dir + "/include loop/config\"\n", "nested more than 16 deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeConfig(t, filepath.Join(dir, tt.name), "config", tt.config)
			_, err := Resolve(context.Background(), Address{Host: "x"}, Config{SSHConfigFile: p})
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.says) {
				t.Errorf("error %v, want ErrConfig saying %q", err, tt.says)
			}
		})
	}
	t.Run("writable by others", func(t *testing.T) {
		p := writeConfig(t, filepath.Join(dir, "perm"), "config", "Host x\n")
		if err := os.Chmod(p, 0o666); err != nil {
			t.Fatal(err)
		}
		_, err := Resolve(context.Background(), Address{Host: "x"}, Config{SSHConfigFile: p})
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "bad owner or permissions") {
			t.Errorf("error %v", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Resolve(context.Background(), Address{Host: "x"}, Config{SSHConfigFile: filepath.Join(dir, "nope")})
		if !errors.Is(err, ErrConfig) {
			t.Errorf("error %v", err)
		}
	})
}

// TestRelativeInclude: a relative Include is under ~/.ssh for a user
// file, under /etc/ssh for the system file.
func TestRelativeInclude(t *testing.T) {
	home := t.TempDir()
	writeConfig(t, home, ".ssh/extra.conf", "User from-include\n")
	main := writeConfig(t, home, ".ssh/config", "Host a\n  Include extra.conf\n")
	cf := newConfigFiles(home)
	hc, err := cf.evalConfig(context.Background(), "a", nil, []configFile{{path: main}})
	if err != nil || hc.currentUser() != "from-include" {
		t.Fatalf("user %q, %v", hc.currentUser(), err)
	}
	if want := []string{main, filepath.Join(home, ".ssh/extra.conf")}; !reflect.DeepEqual(hc.files, want) {
		t.Errorf("files %q, want %q", hc.files, want)
	}
	paths, err := cf.includePaths("ssh_config.d/*.conf", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		if !strings.HasPrefix(p, "/etc/ssh/ssh_config.d/") {
			t.Errorf("system include %s", p)
		}
	}
}

func TestParseAddress(t *testing.T) {
	tests := []struct {
		in   string
		want Address
		name string
	}{
		{"web1", Address{Host: "web1"}, "web1"},
		{"deploy@web1", Address{User: "deploy", Host: "web1"}, "web1"},
		{"web1:2222", Address{Host: "web1", Port: 2222}, "web1:2222"},
		{"deploy@[::1]:2222", Address{User: "deploy", Host: "::1", Port: 2222}, "[::1]:2222"},
		{"a@b@host:22", Address{User: "a@b", Host: "host", Port: 22}, "host"},
	}
	for _, tt := range tests {
		got, err := ParseAddress(tt.in)
		if err != nil || got != tt.want || got.Name() != tt.name {
			t.Errorf("ParseAddress(%q) = %+v (%q), %v; want %+v (%q)", tt.in, got, got.Name(), err, tt.want, tt.name)
		}
	}
	for _, in := range []string{"", "@host", "host:0", "host:99999", "host:x", "us er@host", "-oProxyCommand=x", "host%h"} {
		if _, err := ParseAddress(in); !errors.Is(err, ErrBadAddress) {
			t.Errorf("ParseAddress(%q) = %v, want ErrBadAddress", in, err)
		}
	}
}
