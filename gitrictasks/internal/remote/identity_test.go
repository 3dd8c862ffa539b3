package remote

import (
	"context"
	"testing"
)

// TestIdentity: addresses written differently that reach one account
// have one Identity; another port, user or way there is another.
func TestIdentity(t *testing.T) {
	t.Parallel()
	cfgFile := writeConfig(t, t.TempDir(), "config", `
Host web1 web1-alias
  HostName Web1.Example.COM
Host web1-again
  HostName web1.example.com.
  User deploy
Host web1-2222
  HostName web1.example.com
  Port 2222
Host app-a app-a2
  HostName 10.0.0.5
  ProxyJump bastion-a
Host app-b
  HostName 10.0.0.5
  ProxyJump bastion-b
Host bastion-a
  HostName bastion-a.example.com
Host bastion-b
  HostName bastion-b.example.com
  Port 2200
Host *
  User alice
`)
	identity := func(s string) Identity {
		t.Helper()
		addr, err := ParseAddress(s)
		if err != nil {
			t.Fatal(err)
		}
		target, err := Resolve(context.Background(), addr, Config{SSHConfigFile: cfgFile})
		if err != nil {
			t.Fatalf("Resolve(%s): %v", s, err)
		}
		return target.Identity()
	}

	tests := []struct {
		name        string
		a, b        string
		sameMachine bool
		sameUser    bool
		wantA       Identity // checked when set
	}{
		{"aliases of one HostName", "web1", "web1-alias", true, true, Identity{"web1.example.com:22", "alice"}},
		{"alias and HostName", "web1", "web1.example.com", true, true, Identity{}},
		{"HostName in other case, with a final dot", "web1-again", "WEB1.example.com", true, false, Identity{"web1.example.com:22", "deploy"}},
		{"user@host and host with User in config", "alice@web1.example.com", "web1.example.com", true, true, Identity{"web1.example.com:22", "alice"}},
		{"user@ beats the config", "bob@web1", "web1", true, false, Identity{"web1.example.com:22", "bob"}},
		{"other port", "web1", "web1-2222", false, true, Identity{}},
		{"port from the config and written", "web1-2222", "web1.example.com:2222", true, true, Identity{"web1.example.com:2222", "alice"}},
		{"port 22 written and not", "web1.example.com:22", "web1.example.com", true, true, Identity{}},
		{"[::1]:22 and ::1", "[::1]:22", "::1", true, true, Identity{"[::1]:22", "alice"}},
		{"[::1]:2222 and ::1", "[::1]:2222", "::1", false, true, Identity{"[::1]:2222", "alice"}},
		{"IPv6 written in full", "0:0:0:0:0:0:0:1", "[::1]", true, true, Identity{}},
		{"IPv4-mapped IPv6", "::ffff:127.0.0.1", "127.0.0.1", true, true, Identity{"127.0.0.1:22", "alice"}},
		{"one address through one jump host", "app-a", "app-a2", true, true, Identity{"10.0.0.5:22 via bastion-a.example.com:22", "alice"}},
		{"one address through other jump hosts", "app-a", "app-b", false, true, Identity{}},
		{"through a jump host and directly", "app-a", "10.0.0.5", false, true, Identity{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := identity(tt.a), identity(tt.b)
			if (a.Machine == b.Machine) != tt.sameMachine {
				t.Errorf("%s is %q, %s is %q: same machine %v, want %v", tt.a, a.Machine, tt.b, b.Machine, !tt.sameMachine, tt.sameMachine)
			}
			if (a.User == b.User) != tt.sameUser {
				t.Errorf("%s logs in as %q, %s as %q: same user %v, want %v", tt.a, a.User, tt.b, b.User, !tt.sameUser, tt.sameUser)
			}
			if tt.wantA != (Identity{}) && a != tt.wantA {
				t.Errorf("Identity(%s) = %+v, want %+v", tt.a, a, tt.wantA)
			}
		})
	}
}
