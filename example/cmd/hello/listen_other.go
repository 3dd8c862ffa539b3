//go:build !linux

package main

import (
	"context"
	"net"
)

// listen listens on addr. Without Linux's SO_REUSEPORT semantics two
// versions cannot share the port: use stop-then-start, not Overlap.
func listen(ctx context.Context, addr string, _ bool) (net.Listener, error) {
	var lc net.ListenConfig
	return lc.Listen(ctx, "tcp", addr)
}
