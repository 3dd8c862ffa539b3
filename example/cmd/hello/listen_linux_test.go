package main

import (
	"net"
	"testing"
	"time"
)

// TestListenSteering listens twice on one port, as an old and a new
// version do: with steering every new connection goes to the second
// socket, and once the first closes, to the newest again; without it both
// get some.
func TestListenSteering(t *testing.T) {
	for _, tt := range []struct {
		name  string
		steer bool
	}{{"steered", true}, {"hashed", false}} {
		t.Run(tt.name, func(t *testing.T) {
			old, err := listen(t.Context(), "127.0.0.1:0", tt.steer)
			if err != nil {
				t.Fatal(err)
			}
			defer old.Close()
			addr := old.Addr().String()
			cur, err := listen(t.Context(), addr, tt.steer)
			if err != nil {
				t.Fatalf("second listener on %s: %v", addr, err)
			}
			defer cur.Close()
			// Connections from many source ports, so that the hash
			// spreads them when nothing steers.
			counts := map[net.Listener]int{}
			const conns = 64
			for range conns {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
			}
			for _, ln := range []net.Listener{old, cur} {
				counts[ln] = acceptAll(t, ln)
			}
			if counts[old]+counts[cur] != conns {
				t.Fatalf("accepted %d + %d connections, want %d", counts[old], counts[cur], conns)
			}
			if tt.steer && counts[old] != 0 {
				t.Errorf("steered: the old socket got %d of %d connections, want 0", counts[old], conns)
			}
			if !tt.steer && (counts[old] == 0 || counts[cur] == 0) {
				t.Errorf("hashed: %d and %d connections; the kernel should spread them", counts[old], counts[cur])
			}
			if !tt.steer {
				return
			}
			// The old one goes; a third comes: the group keeps its program.
			old.Close()
			next, err := listen(t.Context(), addr, true)
			if err != nil {
				t.Fatal(err)
			}
			defer next.Close()
			for range conns {
				c, err := net.DialTimeout("tcp", addr, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				c.Close()
			}
			if n, m := acceptAll(t, cur), acceptAll(t, next); n != 0 || m != conns {
				t.Errorf("after a third listener: %d to the second, %d to the third; want 0 and %d", n, m, conns)
			}
		})
	}
}

// acceptAll accepts the connections queued on ln, until none comes within
// 200ms.
func acceptAll(t *testing.T, ln net.Listener) int {
	t.Helper()
	tl := ln.(*net.TCPListener)
	n := 0
	for {
		tl.SetDeadline(time.Now().Add(200 * time.Millisecond))
		c, err := tl.Accept()
		if err != nil {
			return n
		}
		c.Close()
		n++
	}
}
