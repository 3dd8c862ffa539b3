//go:build mage

// gitric's own tasks. Run them with `go tool mage <target>` (mage is pinned
// in go.mod), or with an installed mage.
package main

import (
	"os"

	"github.com/magefile/mage/mg"
	"github.com/magefile/mage/sh"
)

// Test vets and runs every test, end-to-end ones against a real OpenSSH sshd included.
func Test() error {
	if err := sh.RunV("go", "vet", "./..."); err != nil {
		return err
	}
	return sh.RunV("go", "test", "-count=1", "./...")
}

// Race runs the tests with the race detector.
func Race() error {
	return sh.RunV("go", "test", "-race", "-count=1", "./...")
}

// Bench times gitric against the plain ssh + git CLI chain on a loopback sshd and prints medians and ratios.
func Bench() error {
	env := map[string]string{"GITRIC_BENCH": "1"}
	if mg.Verbose() {
		os.Setenv("GITRIC_BENCH_VERBOSE", "1")
	}
	return sh.RunWithV(env, "go", "test", "-count=1", "-timeout=60m", "-run=^TestCompare", "-v", "./gitrictasks/...")
}
