//go:build linux && !(mips || mipsle || mips64 || mips64le)

package main

// soReuseport is SO_REUSEPORT (Linux 3.9+), which the syscall package
// does not name.
const soReuseport = 0xf
