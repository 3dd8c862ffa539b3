//go:build mage

// The signal tests' magefile: stages prod (hosts from GITRIC_HOSTS) and
// local, both with the repository at app and the start command of
// GITRIC_TEST_START.
package main

import (
	"os"

	//mage:import gitric
	"github.com/gitric/gitric/gitrictasks"
)

func init() {
	for _, name := range []string{"prod", "local"} {
		gitrictasks.SetStage(name, gitrictasks.StageConfig{Path: "app", Start: os.Getenv("GITRIC_TEST_START")})
	}
}
