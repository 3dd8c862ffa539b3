//go:build linux && (mips || mipsle || mips64 || mips64le)

package main

// soReuseport is SO_REUSEPORT on MIPS.
const soReuseport = 0x200
