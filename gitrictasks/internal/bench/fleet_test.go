package bench

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/shell"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

const (
	// fleetRuns is the number of timed runs per scenario when
	// GITRIC_BENCH_RUNS is not set.
	fleetRuns = 5
	// fleetSize is the largest fleet; the smaller ones are its first hosts.
	fleetSize = 8
	// fleetBatch is GITRIC_BATCH for the fleet sizes compared: every host
	// is cut over at once.
	fleetBatch = "all"
	// fleetScaleGoal is the aim for t(8 hosts)/t(1 host) of gitric.
	fleetScaleGoal = 2.5
	// fleetCLIGoal is the aim for gitric(8 hosts)/CLI(8 hosts).
	fleetCLIGoal = 0.25
	// fleetParallelGoal is the aim for gitric(8 hosts)/CLI(8 hosts at
	// once, one background chain per host).
	fleetParallelGoal = 0.2
)

// fleet is the benchmark's hosts; see sshdtest.Fleet.
type fleet struct{ *sshdtest.Fleet }

func startFleet(t *testing.T, n int) *fleet { return &fleet{sshdtest.StartFleet(t, n)} }

// addresses is GITRIC_HOSTS for the first n hosts.
func (f *fleet) addresses(n int) string { return strings.Join(f.Addresses(n), ",") }

// fleetScenario is one way of deploying a commit to the first hosts of
// the fleet.
type fleetScenario struct {
	name  string
	hosts int
	batch string
	// path is the repository on each host, relative to its home; gitric
	// is given it as is, the CLI chain as an absolute path (sshd's SetEnv
	// HOME is no home to git push's ssh:// URLs).
	path string
	// logins is how many SSH logins one deploy takes on each host.
	logins int
	deploy func(t *testing.T, sha string) sample
}

// target is the repository on host i.
func (sc fleetScenario) target(f *fleet, i int) string {
	return filepath.Join(f.Homes[i], sc.path)
}

func TestCompareFleet(t *testing.T) {
	if os.Getenv("GITRIC_BENCH") != "1" {
		t.Skip("benchmark: set GITRIC_BENCH=1 to run it")
	}
	runs := benchRuns(t, fleetRuns)
	sshdtest.Require(t)

	load := loadAverage()
	mage := compileMage(t)
	f := startFleet(t, fleetSize)
	repo := repotest.New(t)
	repo.History(t, historyCommits, historyFiles)
	env := benchEnv()
	chain := newCLIChain(env, repo.Dir, f.ClientKeyFile, f.KnownHostsFile)
	changed, _, _ := strings.Cut(repo.Git(t, "ls-files"), "\n")

	gitric := func(hosts int, batch string) fleetScenario {
		sc := fleetScenario{
			name:   fmt.Sprintf("gitric, %d host(s), batch %s", hosts, batch),
			hosts:  hosts,
			batch:  batch,
			path:   fmt.Sprintf("gitric-%d-%s", hosts, batch),
			logins: 1,
		}
		gitricEnv := append(slices.Clip(env),
			"GITRIC_HOSTS="+f.addresses(hosts),
			"GITRIC_IDENTITY="+f.ClientKeyFile,
			"GITRIC_KNOWN_HOSTS="+f.KnownHostsFile,
			"GITRIC_BATCH="+batch,
			"GITRIC_BENCH_PATH="+sc.path,
		)
		sc.deploy = func(t *testing.T, sha string) sample {
			t.Helper()
			if head := repo.Head(t); head != sha {
				t.Fatalf("gitric deploys HEAD (%s), not %s", head, sha)
			}
			return runMage(t, mage, repo.Dir, gitricEnv, "prod", "deploy")
		}
		return sc
	}
	cli := fleetScenario{
		name:   fmt.Sprintf("CLI, %d hosts, one after another", fleetSize),
		hosts:  fleetSize,
		batch:  "1 (sequential)",
		path:   "cli",
		logins: 3,
	}
	cli.deploy = func(t *testing.T, sha string) sample {
		t.Helper()
		var total sample
		for i, srv := range f.Servers[:cli.hosts] {
			s := chain.deploy(t, srv, cli.target(f, i), sha, false)
			total.elapsed += s.elapsed
			total.cpu += s.cpu
			total.out += s.out
		}
		return total
	}
	cliAll := fleetScenario{
		name:   fmt.Sprintf("CLI, %d hosts at once", fleetSize),
		hosts:  fleetSize,
		batch:  "all (one chain per host)",
		path:   "cli-parallel",
		logins: 3,
	}
	cliAll.deploy = func(t *testing.T, sha string) sample {
		t.Helper()
		return parallelChains(t, chain, f.Servers[:cliAll.hosts], func(i int) string { return cliAll.target(f, i) }, sha)
	}
	// The scenarios, in the table's order.
	const (
		one = iota
		four
		all
		allBatch1
		allCLI
		allCLIParallel
	)
	scenarios := []fleetScenario{
		one:            gitric(1, fleetBatch),
		four:           gitric(4, fleetBatch),
		all:            gitric(fleetSize, fleetBatch),
		allBatch1:      gitric(fleetSize, "1"),
		allCLI:         cli,
		allCLIParallel: cliAll,
	}

	samples := make([][]sample, len(scenarios))
	for run := 0; run <= runs; run++ { // run 0 is the untimed warm-up: a first deploy of the whole history
		sha := repo.Head(t)
		if run > 0 {
			sha = appendCommit(t, repo, changed, fmt.Sprintf("bench: fleet %d", run))
		}
		// Every scenario deploys the run's commit; which goes first
		// rotates from run to run.
		for j := range scenarios {
			k := (j + run) % len(scenarios)
			sc := scenarios[k]
			s := deployFleet(t, f, repo.Dir, sc, sha)
			if verbose() {
				t.Logf("%s, run %d: %s", sc.name, run, ms(s.elapsed))
			}
			if run > 0 {
				samples[k] = append(samples[k], s)
			}
		}
	}
	t.Logf("%s: output of the last run:\n%s", scenarios[all].name, samples[all][len(samples[all])-1].out)

	rows := [][]string{{"scenario", "hosts", "batch", "median", "min..max", "local CPU", "hosts' CPU", "SSH logins per host", "ratio", "target"}}
	t1 := medianElapsed(samples[one])
	tAll := medianElapsed(samples[all])
	for k, sc := range scenarios {
		ratio, target := "", "-"
		switch k {
		case four, allBatch1:
			ratio = fmt.Sprintf("t/t(1) = %.2f", float64(medianElapsed(samples[k]))/float64(t1))
		case all:
			r := float64(tAll) / float64(t1)
			ratio, target = fmt.Sprintf("t(%d)/t(1) = %.2f", fleetSize, r), goal(r, fleetScaleGoal)
		case allCLI:
			r := float64(tAll) / float64(medianElapsed(samples[k]))
			ratio, target = fmt.Sprintf("gitric(%d)/CLI(%d) = %.2f", fleetSize, fleetSize, r), goal(r, fleetCLIGoal)
		case allCLIParallel:
			r := float64(tAll) / float64(medianElapsed(samples[k]))
			ratio, target = fmt.Sprintf("gitric(%d)/CLI(%d at once) = %.2f", fleetSize, fleetSize, r), goal(r, fleetParallelGoal)
		}
		rows = append(rows, []string{
			sc.name, strconv.Itoa(sc.hosts), sc.batch,
			ms(medianElapsed(samples[k])), spread(samples[k]), medianCPU(samples[k], false), medianCPU(samples[k], true),
			strconv.Itoa(sc.logins), ratio, target,
		})
	}
	notes := []string{
		fmt.Sprintf("runs: %d timed per scenario, after 1 untimed warm-up (the first deploy of the whole history); every run makes one new commit changing one file and deploys it in every scenario, each scenario's repositories being on the run before's commit; which scenario goes first rotates from run to run; medians, min and max of those runs", runs),
		fmt.Sprintf("machine: nproc %s, %s/%s, %s, %s; load average (1, 5, 15 min) %s before, %s after", nproc(), runtime.GOOS, runtime.GOARCH, commandOutput("ssh", "-V"), commandOutput("git", "--version"), load, loadAverage()),
		fmt.Sprintf("hosts: %d OpenSSH sshd on 127.0.0.1, each with its own port, host key and HOME (sshd_config SetEnv HOME=<its own temp dir>), the smaller fleets being the first of them; "+
			"with that HOME the login shell does not find root's ~/.bashrc (pyenv), so no session pays its startup, for both tools alike", fleetSize),
		fmt.Sprintf("history: %d commits over %d files", historyCommits, historyFiles),
		fmt.Sprintf("gitric: the compiled bench magefile run as `prod deploy` with GITRIC_HOSTS listing the hosts, GITRIC_BATCH=%s (all hosts cut over at once) unless the row says batch 1, GITRIC_PARALLEL unset (10 hosts seeded at a time), no stop or start command; its repository is the relative path gitric-<hosts>-<batch> on every host; one SSH login per host (checked in each sshd's log)", fleetBatch),
		"CLI: for each host in turn, ssh (mkdir, git init if missing) + git push over ssh + ssh (git reset --hard): three SSH logins per host, no connection sharing; its repository is <that host's HOME>/cli; the time is the sum over the hosts",
		"CLI at once: the same chain for every host, each host's in its own background job, all started together; the time is the wall clock until the last one ends; its repository is <that host's HOME>/cli-parallel",
		fmt.Sprintf("CPU: medians of user + system CPU time: local, of the local processes (the mage binary; ssh and git push with their children); hosts', of all the hosts' sshd connection processes with the shells and git commands they ran (from cutime and cstime of each listening sshd in /proc); the same %s cores run both", nproc()),
		"checked after every deploy: each host's HEAD is the commit and the file it changes has the commit's content",
	}
	publish(t, textTable(rows, notes), markdownTable("gitric fleet deploy vs OpenSSH + git CLI host after host", rows, notes))
}

// deployFleet has sc deploy sha to its hosts, then checks every host's
// repository and the number of logins the deploy took on each host.
func deployFleet(t *testing.T, f *fleet, dir string, sc fleetScenario, sha string) sample {
	t.Helper()
	hosts := f.Servers[:sc.hosts]
	before := make([]int, len(hosts))
	for i, srv := range hosts {
		before[i] = logins(srv)
	}
	cpuBefore := hostsCPU(hosts)
	s := sc.deploy(t, sha)
	s.hostCPU = -1
	if cpuAfter := hostsCPU(hosts); cpuBefore >= 0 && cpuAfter >= 0 {
		s.hostCPU = cpuAfter - cpuBefore
	}
	for i, srv := range hosts {
		verify(t, dir, fmt.Sprintf("%s, host %d", sc.name, i), sc.target(f, i), sha)
		if n := logins(srv) - before[i]; n != sc.logins {
			t.Fatalf("%s: deploying %s took %d SSH logins on host %d, want %d\n%s", sc.name, sha[:7], n, i, sc.logins, s.out)
		}
	}
	return s
}

// hostsCPU is the CPU time the hosts' sshd have spent on connections so
// far, or -1 when it is unknown.
func hostsCPU(hosts []*sshdtest.Server) time.Duration {
	var total time.Duration
	for _, srv := range hosts {
		cpu, ok := childrenCPU(srv.PID, 2*time.Second)
		if !ok {
			return -1
		}
		total += cpu
	}
	return total
}

// medianCPU is the median of the local (or with host, the hosts') CPU
// times of samples, "n/a" when unknown.
func medianCPU(s []sample, host bool) string {
	xs := make([]time.Duration, len(s))
	for i, x := range s {
		xs[i] = x.cpu
		if host {
			xs[i] = x.hostCPU
		}
		if xs[i] < 0 {
			return "n/a"
		}
	}
	return ms(median(xs))
}

// loadAverage is the system's load average over 1, 5 and 15 minutes, as
// /proc/loadavg has it, or "n/a": a busy machine makes for slow runs.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "n/a"
}

// parallelChains runs the CLI chain for every host at once, one
// background chain per host (as a shell loop of `( ssh; git push; ssh ) &`
// would), and returns the wall clock until the last one ended.
func parallelChains(t *testing.T, chain cliChain, hosts []*sshdtest.Server, target func(i int) string, sha string) sample {
	t.Helper()
	chains := make([][]*exec.Cmd, len(hosts))
	for i, srv := range hosts {
		chains[i] = chain.commands(t, srv, target(i), sha)
	}
	outs := make([]string, len(hosts))
	errs := make([]error, len(hosts))
	var wg sync.WaitGroup
	start := time.Now()
	for i, cmds := range chains {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			for _, cmd := range cmds {
				cmd.Stdout, cmd.Stderr = &out, &out
				if err := cmd.Run(); err != nil {
					errs[i] = fmt.Errorf("%s: %w", shell.Join(cmd.Args...), err)
					break
				}
			}
			outs[i] = out.String()
		}()
	}
	wg.Wait()
	s := sample{elapsed: time.Since(start)}
	for i, cmds := range chains {
		if errs[i] != nil {
			t.Fatalf("host %d: %v\n%s", i, errs[i], outs[i])
		}
		s.cpu += cpuTime(cmds...)
		s.out += outs[i]
	}
	return s
}
