// Package bench holds gitric's side-by-side benchmarks against the plain
// OpenSSH and git command line doing the same work, on real OpenSSH sshd
// servers on the loopback interface:
//
//   - TestCompare: an incremental deploy (one new commit on a 1000-commit
//     history) and a first deploy of that whole history, gitric vs ssh +
//     git push + ssh.
//   - TestCompareCode: the same on a generated history that looks like a
//     real project's (3,000 commits of small edits to ~300 source files,
//     renames, packed by git repack and gc), with the bytes each sends,
//     the host's repository size, and the pack of a one-line change.
//   - TestCompareFleet: one new commit to 1, 4 and 8 hosts, and the same 8
//     hosts done with the CLI chain host after host, and all at once (one
//     background chain per host).
//   - TestCompareFleet50: one deploy to 50 hosts, with gitric's peak
//     memory and open file descriptors.
//   - TestCompareDowntime: the downtime window (stop to start) of an
//     in-place reset vs release mode, 5,000 files with 500 changed.
//
// They run only when asked to, and never fail on timing:
//
//	go tool mage bench
//	GITRIC_BENCH=1 go test ./gitrictasks/... -run '^TestCompare' -count=1 -v
//
// GITRIC_BENCH_RUNS sets the number of timed runs per tool and scenario,
// GITRIC_BENCH_OUT names a file that collects every table of the run as
// Markdown (a relative name is relative to this directory), and
// GITRIC_BENCH_VERBOSE=1 logs every run. gitric is timed as a user runs
// it: a mage binary compiled from the magefile in the magefile directory,
// called as "prod deploy" in the working copy to deploy.
package bench
