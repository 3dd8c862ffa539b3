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

// ErrBadAddress means a host was not written as user@host[:port].
var ErrBadAddress = errors.New("bad host address")

// Address says where a target is: who to log in as, and where.
type Address struct {
	User string
	Host string
	Port int // 22 when not given
}

// ParseAddress reads "user@host", "user@host:port", "host", or an IPv6
// literal in brackets ("user@[::1]:2222"). A missing user is the local user,
// as with ssh.
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
	} else {
		a.User = localUser()
	}
	a.Port = 22
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
	if strings.ContainsAny(a.Host+a.User, " \t\n/\\'\"`$;&|") {
		return bad("host and user names cannot hold spaces, quotes or shell characters")
	}
	return a, nil
}

// HostPort is host:port, for dialing.
func (a Address) HostPort() string { return net.JoinHostPort(a.Host, strconv.Itoa(a.Port)) }

// String is user@host, with :port when it is not 22.
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

// Name is host, or host:port when the port is not 22: how output names it.
func (a Address) Name() string {
	if a.Port == 22 || a.Port == 0 {
		return a.Host
	}
	return net.JoinHostPort(a.Host, strconv.Itoa(a.Port))
}

func localUser() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "root"
}
