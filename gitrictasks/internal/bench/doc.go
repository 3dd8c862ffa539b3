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
// (default 7) and GITRIC_BENCH_OUT names a file to write the results to as
// Markdown. gitric is timed as a user runs it: a mage binary compiled from
// the magefile in the magefile directory, called as "prod deploy".
package bench
