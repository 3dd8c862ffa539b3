// Package bench holds gitric's side-by-side benchmark against the plain
// OpenSSH and git command line doing the same work: push a commit to a
// repository on a host over SSH, then reset that host's working copy to it.
//
// The benchmark is a test that only runs when asked to, against a real
// OpenSSH sshd on the loopback interface:
//
//	GITRIC_BENCH=1 go test ./gitrictasks/internal/bench/ -run TestCompare -count=1 -v
//
// GITRIC_BENCH_RUNS sets the number of timed runs per tool and scenario
// (default 7), GITRIC_BENCH_OUT names a file to write the results to as
// Markdown (a relative name is relative to this directory), and
// GITRIC_BENCH_VERBOSE=1 logs every run. gitric is timed as a user runs
// it: a mage binary compiled from the magefile in the magefile directory,
// called as "prod deploy" in the working copy to deploy.
package bench
