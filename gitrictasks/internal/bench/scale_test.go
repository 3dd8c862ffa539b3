package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// bigFleet is the number of hosts of TestCompareFleet50.
const bigFleet = 50

// TestCompareFleet50 deploys one new commit to 50 hosts (50 sshd on the
// loopback) in one gitric deploy, and reports the client's peak memory and
// open file descriptors; every host must end on the commit. Its file sorts
// after fleet_test.go, so that go test runs it after TestCompareFleet,
// whose timings its 50 servers would otherwise disturb.
func TestCompareFleet50(t *testing.T) {
	if os.Getenv("GITRIC_BENCH") != "1" {
		t.Skip("benchmark: set GITRIC_BENCH=1 to run it")
	}
	runs := benchRuns(t, 3)
	sshdtest.Require(t)

	load := loadAverage()
	mage := compileMage(t)
	f := startFleet(t, bigFleet)
	repo := repotest.New(t)
	repo.History(t, historyCommits, historyFiles)
	changed := repo.Git(t, "ls-files")
	changed = changed[:bytes.IndexByte([]byte(changed), '\n')]
	sc := fleetScenario{
		name:   fmt.Sprintf("gitric, %d hosts, batch %s", bigFleet, fleetBatch),
		hosts:  bigFleet,
		batch:  fleetBatch,
		path:   "gitric-50",
		logins: 1,
	}
	env := append(benchEnv(),
		"GITRIC_HOSTS="+f.addresses(bigFleet),
		"GITRIC_IDENTITY="+f.ClientKeyFile,
		"GITRIC_KNOWN_HOSTS="+f.KnownHostsFile,
		"GITRIC_BATCH="+fleetBatch,
		"GITRIC_BENCH_PATH="+sc.path,
	)
	var fds []int
	sc.deploy = func(t *testing.T, sha string) sample {
		t.Helper()
		s, n := runMageSampled(t, mage, repo.Dir, env, "prod", "deploy")
		fds = append(fds, n)
		return s
	}

	var first sample
	var samples []sample
	for run := 0; run <= runs; run++ { // run 0: the first deploy of the whole history
		sha := repo.Head(t)
		if run > 0 {
			sha = appendCommit(t, repo, changed, fmt.Sprintf("bench: fleet50 %d", run))
		}
		s := deployFleet(t, f, repo.Dir, sc, sha)
		if run == 0 {
			first = s
			continue
		}
		samples = append(samples, s)
	}
	rows := [][]string{
		{"deploy", "hosts", "median", "min..max", "gitric peak RSS", "gitric peak open fds", "local CPU", "hosts' CPU"},
		{"first (whole history)", strconv.Itoa(bigFleet), ms(first.elapsed), "-", mib(first.rssKiB), fdString(fds[0]), ms(first.cpu), ms(first.hostCPU)},
		{"one new commit", strconv.Itoa(bigFleet), ms(medianElapsed(samples)), spread(samples), mib(medianRSS(samples)), fdString(slices.Max(fds[1:])), medianCPU(samples, false), medianCPU(samples, true)},
	}
	notes := []string{
		fmt.Sprintf("runs: 1 first deploy, then %d timed deploys of one new commit changing one file; medians, min and max; peak open fds is the largest count over the runs", runs),
		fmt.Sprintf("machine: nproc %s, load average %s before, %s after; %d OpenSSH sshd on 127.0.0.1, each with its own port, host key and HOME", nproc(), load, loadAverage(), bigFleet),
		fmt.Sprintf("gitric: the compiled bench magefile as `prod deploy`, GITRIC_BATCH=%s, GITRIC_PARALLEL unset; peak RSS is ru_maxrss of the mage binary; open fds are sampled every 5 ms from /proc/<pid>/fd", fleetBatch),
		fmt.Sprintf("history: %d commits over %d files; checked after every deploy: each host's HEAD is the commit and one SSH login per host", historyCommits, historyFiles),
	}
	publish(t, textTable(rows, notes), markdownTable(fmt.Sprintf("gitric deploy to %d hosts", bigFleet), rows, notes))
}

// runMageSampled is runMage, also sampling the number of file descriptors
// the process holds open; it returns the largest count seen (-1 when
// /proc cannot tell).
func runMageSampled(t *testing.T, mage, dir string, env []string, args ...string) (sample, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), mage, args...)
	cmd.Dir = dir
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	resetPeakRSS()
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	most := -1
	fdDir := filepath.Join("/proc", strconv.Itoa(cmd.Process.Pid), "fd")
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var err error
loop:
	for {
		select {
		case err = <-done:
			break loop
		case <-tick.C:
			if ents, rerr := os.ReadDir(fdDir); rerr == nil {
				most = max(most, len(ents))
			}
		}
	}
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("%s (in %s): %v\n%s", mage, dir, err, out.String())
	}
	rss, _ := peakRSSKiB(cmd.ProcessState)
	return sample{elapsed: elapsed, rssKiB: rss, cpu: cpuTime(cmd), out: out.String()}, most
}

func fdString(n int) string {
	if n < 0 {
		return "n/a"
	}
	return strconv.Itoa(n)
}
