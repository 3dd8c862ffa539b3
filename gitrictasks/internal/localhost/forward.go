package localhost

import (
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// dialTimeout bounds the connection a direct-tcpip channel opens.
const dialTimeout = 10 * time.Second

// directTCPIP is the payload of a "direct-tcpip" channel open (RFC 4254
// section 7.2).
type directTCPIP struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// forward serves a direct-tcpip channel, as ssh -L uses and gitric's HTTP
// check does: a TCP connection from the host's side. Only loopback
// destinations are allowed: the server is a stand-in for the machine it
// runs on, not a way off it.
func (s *Server) forward(nc ssh.NewChannel) {
	defer s.sessions.Done()
	var p directTCPIP
	if err := ssh.Unmarshal(nc.ExtraData(), &p); err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, "malformed direct-tcpip request")
		return
	}
	if !loopback(p.Host) || p.Port == 0 || p.Port > 65535 {
		_ = nc.Reject(ssh.Prohibited, "the local host forwards to loopback addresses only")
		return
	}
	addr := net.JoinHostPort(p.Host, strconv.Itoa(int(p.Port)))
	c, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		_ = nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	defer c.Close()
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_, _ = io.Copy(c, ch)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	go func() {
		defer wg.Done()
		_, _ = io.Copy(ch, c)
		_ = ch.CloseWrite()
	}()
	// Close ends both copies: the connection's and the channel's.
	select {
	case <-s.done:
		c.Close()
		ch.Close()
	case <-waitChan(&wg):
	}
	wg.Wait()
}

func waitChan(wg *sync.WaitGroup) <-chan struct{} {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	return done
}

// loopback reports whether host is "localhost" or a loopback address.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
