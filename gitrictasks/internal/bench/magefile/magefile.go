//go:build mage

// The benchmark's magefile: gitric as a user runs it, with every host
// detail taken from the environment. GITRIC_HOSTS names the host,
// GITRIC_IDENTITY and GITRIC_KNOWN_HOSTS say how to log in and whom to
// trust, and GITRIC_BENCH_PATH is the repository on the host.
package main

import (
	"os"

	//mage:import
	"github.com/gitric/gitric/gitrictasks"
)

func init() {
	gitrictasks.SetStage("prod", gitrictasks.Stage{Path: os.Getenv("GITRIC_BENCH_PATH")})
}
