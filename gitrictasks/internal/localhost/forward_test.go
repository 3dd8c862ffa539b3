package localhost

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestDirectTCPIP opens TCP connections from the server's side, as
// gitric's HTTP check does: to loopback only.
func TestDirectTCPIP(t *testing.T) {
	srv := startServer(t)
	c := dial(t, srv)
	web := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok "+r.URL.Path) })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go web.Serve(ln)
	t.Cleanup(func() { web.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	for _, tt := range []struct {
		name, addr string
		reason     ssh.RejectionReason // 0: accepted
	}{
		{"loopback", "127.0.0.1:" + port, 0},
		{"localhost", "localhost:" + port, 0},
		{"off the machine", "192.0.2.1:80", ssh.Prohibited},
		{"nothing listens", closedAddr, ssh.ConnectionFailed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			client := &http.Client{Transport: &http.Transport{
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					return c.DialContext(ctx, network, addr)
				},
				DisableKeepAlives: true,
			}}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+tt.addr+"/health", nil)
			resp, err := client.Do(req)
			if tt.reason != 0 {
				var oce *ssh.OpenChannelError
				if !errors.As(err, &oce) || oce.Reason != tt.reason {
					t.Fatalf("GET via %s: %v, want a rejection %v", tt.addr, err, tt.reason)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(b), "ok /health") {
				t.Errorf("GET via %s: %q", tt.addr, b)
			}
		})
	}
}
