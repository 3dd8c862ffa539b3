package remote

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
)

// ErrBadAddress means a host was not written as [user@]host[:port].
var ErrBadAddress = errors.New("bad host address")

// Address says where a target is, as the user wrote it: who to log in as,
// and where. Host may be an ssh_config alias. A part that was not written
// is left empty, so that ssh_config can supply it, as with ssh, where the
// command line beats the config file.
type Address struct {
	// User is "" when not given: ssh_config's User applies, else the
	// local user name.
	User string
	// Host is a host name, an IP address or an ssh_config Host alias.
	Host string
	// Port is 0 when not given: ssh_config's Port applies, else 22.
	Port int
}

// ParseAddress reads "user@host", "user@host:port", "host", "host:port",
// or an IPv6 literal in brackets ("user@[::1]:2222"). host may be an
// ssh_config alias. The parts not written stay empty (see Address).
func ParseAddress(s string) (Address, error) {
	orig := s
	bad := func(why string) (Address, error) {
		return Address{}, fmt.Errorf("%w %q: %s (write user@host or user@host:port)", ErrBadAddress, orig, why)
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return bad("empty")
	}
	var a Address
	if at := strings.LastIndex(s, "@"); at >= 0 {
		a.User, s = s[:at], s[at+1:]
		if a.User == "" {
			return bad("empty user name")
		}
	}
	host, port, err := net.SplitHostPort(s)
	switch {
	case err == nil:
		p, perr := strconv.Atoi(port)
		if perr != nil || p < 1 || p > 65535 {
			return bad("port must be a number from 1 to 65535")
		}
		a.Host, a.Port = host, p
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
		a.Host = s[1 : len(s)-1]
	case strings.Count(s, ":") > 1:
		a.Host = s // a bare IPv6 literal
	case strings.Contains(s, ":"):
		return bad("port must be a number from 1 to 65535")
	default:
		a.Host = s
	}
	if a.Host == "" {
		return bad("empty host name")
	}
	if strings.ContainsAny(a.Host+a.User, " \t\n/\\'\"`$;&|%") {
		return bad("host and user names cannot hold spaces, quotes, % or shell characters")
	}
	if strings.HasPrefix(a.Host, "-") || strings.HasPrefix(a.User, "-") {
		return bad("host and user names cannot start with -")
	}
	return a, nil
}

// String is [user@]host, with :port when a port other than 22 was given.
func (a Address) String() string {
	h := a.Host
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if a.Port != 22 && a.Port != 0 {
		h += ":" + strconv.Itoa(a.Port)
	}
	if a.User == "" {
		return h
	}
	return a.User + "@" + h
}

// Name is host, or host:port when a port other than 22 was given: how
// output names the host. For an ssh_config alias it is the alias.
func (a Address) Name() string {
	if a.Port == 22 || a.Port == 0 {
		return a.Host
	}
	return net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
}

func localUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "root"
}
