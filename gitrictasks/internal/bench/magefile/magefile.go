//go:build mage

// The benchmark's magefile: gitric as a user runs it, with every host
// detail taken from the environment. GITRIC_HOSTS names the hosts,
// GITRIC_IDENTITY and GITRIC_KNOWN_HOSTS say how to log in and whom to
// trust, GITRIC_BATCH how many hosts to cut over at a time. The stage
// itself comes from GITRIC_BENCH_PATH (the repository on each host),
// GITRIC_BENCH_MODE (inplace, the default, release or bluegreen) and
// GITRIC_BENCH_STOP and GITRIC_BENCH_START (the service commands; none
// when unset).
package main

import (
	"os"

	//mage:import
	"github.com/gitric/gitric/gitrictasks"
	"github.com/gitric/gitric/gitrictasks/deploy"
)

func init() {
	gitrictasks.SetStage("prod", gitrictasks.StageConfig{
		Path:  os.Getenv("GITRIC_BENCH_PATH"),
		Mode:  deploy.Mode(os.Getenv("GITRIC_BENCH_MODE")),
		Stop:  os.Getenv("GITRIC_BENCH_STOP"),
		Start: os.Getenv("GITRIC_BENCH_START"),
	})
}
