// Package e2e holds end-to-end tests that drive a whole deploy (package
// deploy) through the SSH layer (package remote) against real sshd
// servers, with the network failing in between: a connection cut in the
// middle of the pack, a network that goes silent, a jump host.
//
// It has no code of its own; run it with go test.
package e2e
