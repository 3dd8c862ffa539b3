package sshdtest

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Proxy is a loopback TCP proxy in front of a server, whose network can be
// made to fail: cut (connections closed) or frozen (connections stay open
// and nothing gets through, as when a host or link blackholes packets).
type Proxy struct {
	Addr string // "127.0.0.1:port", where clients connect

	target string
	ln     net.Listener
	closed chan struct{}
	wake   chan struct{} // closed by Thaw and Close: frozen pipes end

	mu       sync.Mutex
	conns    []net.Conn
	sent     int64 // bytes forwarded from clients to the target, all connections
	cutAt    int64 // cut every connection when sent reaches this; 0: never
	freezeAt int64 // stop forwarding when sent reaches this; 0: never
	frozen   bool
	frozenAt time.Time
	cuts     int
}

// StartProxy forwards connections on a new loopback port to target (host:port)
// until the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("sshdtest: proxy: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, closed: make(chan struct{}), wake: make(chan struct{})}
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// CutAfter makes the proxy close every connection once n more bytes have
// gone from clients to the target; n <= 0 stops cutting.
func (p *Proxy) CutAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutAt = 0
	if n > 0 {
		p.cutAt = p.sent + n
	}
}

// FreezeAfter makes the proxy stop forwarding anything, both ways, once n
// more bytes have gone from clients to the target, while keeping the
// connections open: the proxy stops reading, so that the senders' buffers
// fill and their writes block, as with a host that drops packets. n <= 0
// freezes at once. New connections are accepted and frozen too, until
// Thaw.
func (p *Proxy) FreezeAfter(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n <= 0 {
		p.frozen, p.frozenAt = true, time.Now()
		return
	}
	p.freezeAt = p.sent + n
}

// Thaw lets new connections through again. Connections that saw the
// freeze stay dead; they are closed.
func (p *Proxy) Thaw() {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.frozen, p.freezeAt = nil, false, 0
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}

// Sent is how many bytes went from clients to the target so far.
func (p *Proxy) Sent() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// FrozenAt is when the proxy last froze (zero if it never did).
func (p *Proxy) FrozenAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozenAt
}

// Cuts is how many times the proxy cut its connections.
func (p *Proxy) Cuts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts
}

// Close stops the proxy and closes its connections.
func (p *Proxy) Close() {
	p.mu.Lock()
	select {
	case <-p.closed:
		p.mu.Unlock()
		return
	default:
	}
	close(p.closed)
	close(p.wake)
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	p.ln.Close()
	for _, c := range conns {
		c.Close()
	}
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, client, server)
	p.mu.Unlock()
	go p.pipe(server, client, true)
	p.pipe(client, server, false)
}

// pipe copies from src to dst; up is the client-to-target direction.
func (p *Proxy) pipe(dst, src net.Conn, up bool) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 16<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			fwd, cut, wake := p.account(n, up)
			if fwd > 0 {
				if _, werr := dst.Write(buf[:fwd]); werr != nil {
					return
				}
			}
			if cut {
				p.cutAll()
				return
			}
			if wake != nil {
				<-wake // frozen: read nothing more
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			}
			return
		}
	}
}

// account counts n bytes read in one direction and says how many of them
// to forward, and whether to cut after that, or to freeze (wake is then
// the channel that ends the freeze).
func (p *Proxy) account(n int, up bool) (fwd int, cut bool, wake chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen {
		return 0, false, p.wake
	}
	if !up {
		return n, false, nil
	}
	fwd = n
	limit := int64(0)
	if p.cutAt > 0 {
		limit = p.cutAt
	}
	if p.freezeAt > 0 && (limit == 0 || p.freezeAt < limit) {
		limit = p.freezeAt
	}
	if limit > 0 && p.sent+int64(n) >= limit {
		fwd = int(limit - p.sent)
		if fwd < 0 {
			fwd = 0
		}
		if limit == p.cutAt {
			p.cutAt = 0
			p.cuts++
			cut = true
		} else {
			p.freezeAt = 0
			p.frozen, p.frozenAt = true, time.Now()
			wake = p.wake
		}
	}
	p.sent += int64(fwd)
	return fwd, cut, wake
}

func (p *Proxy) cutAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
