package bench

import (
	"bytes"
	"cmp"
	"errors"
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
	"text/tabwriter"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/shell"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

const (
	// historyCommits and historyFiles shape the local repository.
	historyCommits = 1000
	historyFiles   = 200
	// defaultRuns is the number of timed runs per tool and scenario when
	// GITRIC_BENCH_RUNS is not set.
	defaultRuns = 7
)

// sample is one timed deploy.
type sample struct {
	elapsed time.Duration
	rssKiB  int64 // peak RSS of the measured process (ru_maxrss); 0 when unknown
	// treeKiB is the sampled peak of the measured process tree's RSS,
	// the summed resident sets of its processes alive at once; 0 unless
	// the run sampled it (see measureRSS).
	treeKiB int64
	// cpu is the user and system CPU time of the measured processes and
	// the children they waited for: the local side's work.
	cpu time.Duration
	// hostCPU is the same for the hosts' sshd and what they ran, where a
	// benchmark measures it; negative when unknown.
	hostCPU time.Duration
	out     string
}

// tool is one way of deploying a commit into a repository on the host.
type tool struct {
	name  string
	rssOf string // which process's peak RSS the samples hold
	// logins is how many SSH logins one deploy takes.
	logins int
	deploy func(t *testing.T, target, sha string) sample
}

// scenario is one kind of deploy, measured for both tools.
type scenario struct {
	name string
	// goal is the ratio of medians gitric/CLI aimed at.
	goal float64
	// fresh empties each target before every deploy, so that the whole
	// history is pushed; otherwise the targets are first brought to HEAD
	// and every run deploys one new commit on top.
	fresh bool
	// next prepares a run and returns the commit to deploy; not timed.
	next func(t *testing.T) string
	// treeRuns is how many runs follow the timed ones to sample the peak
	// RSS of each tool's whole process tree: sampling takes CPU, so
	// those runs are not timed.
	treeRuns int
}

// result is a scenario's samples, per tool (in the order of bench.tools).
type result struct {
	scenario string
	goal     float64
	samples  [2][]sample
	// tree is the samples of the treeRuns, per tool.
	tree [2][]sample
}

// bench is what the scenarios share: the host, the local repository and
// the two tools.
type bench struct {
	srv   *sshdtest.Server
	repo  *repotest.Repo
	dir   string // the targets live under here
	tools [2]tool
	// env is the environment of every command: repotest's git settings
	// and no ssh-agent, so that both tools log in with the same key.
	env []string
	// gitricEnv adds gitric's host, key and known_hosts to env.
	gitricEnv []string
	// mage is the compiled bench magefile.
	mage string
	// chain is the CLI chain, with the OpenSSH client's options.
	chain cliChain
	// pollTree has the deploys sample their process tree's RSS.
	pollTree bool
}

func TestCompare(t *testing.T) {
	if os.Getenv("GITRIC_BENCH") != "1" {
		t.Skip("benchmark: set GITRIC_BENCH=1 to run it")
	}
	runs := benchRuns(t, defaultRuns)
	sshdtest.Require(t)

	b := &bench{mage: compileMage(t), dir: t.TempDir()}
	b.srv, _ = startHost(t)
	b.repo = repotest.New(t)
	b.repo.History(t, historyCommits, historyFiles)

	b.env = benchEnv()
	b.gitricEnv = append(slices.Clip(b.env),
		"GITRIC_HOSTS="+b.srv.User+"@"+b.srv.Addr,
		"GITRIC_IDENTITY="+b.srv.ClientKeyFile,
		"GITRIC_KNOWN_HOSTS="+b.srv.KnownHostsFile,
	)
	b.chain = newCLIChain(b.env, b.repo.Dir, b.srv.ClientKeyFile, b.srv.KnownHostsFile)
	b.tools = [2]tool{
		{name: "gitric", rssOf: "gitric", logins: 1, deploy: b.gitric},
		{name: "CLI", rssOf: "git push", logins: 3, deploy: b.cli},
	}

	head := b.repo.Head(t)
	commits, err := strconv.Atoi(b.repo.Git(t, "rev-list", "--count", head))
	if err != nil {
		t.Fatal(err)
	}
	changed := b.repo.Git(t, "ls-files")
	changed, _, _ = strings.Cut(changed, "\n") // an existing file, changed by every incremental run
	n := 0

	// The first deploys go first, so that they push exactly the generated
	// history; the table lists incremental first all the same.
	first := b.measure(t, runs, scenario{
		name:  "first deploy",
		goal:  1.2,
		fresh: true,
		next:  func(*testing.T) string { return head },
	})
	incremental := b.measure(t, runs, scenario{
		name: "incremental",
		goal: 0.4,
		next: func(t *testing.T) string {
			n++
			return appendCommit(t, b.repo, changed, fmt.Sprintf("bench: incremental %d", n))
		},
	})

	rep := report{
		results:    []result{incremental, first},
		tools:      b.tools,
		runs:       runs,
		nproc:      nproc(),
		commits:    commits,
		files:      historyFiles,
		sshVersion: commandOutput("ssh", "-V"),
		gitVersion: commandOutput("git", "--version"),
	}
	publish(t, rep.text(), rep.markdown())
}

// startHost starts the host of a benchmark: an sshd whose logins get a
// fresh home directory, home (SetEnv HOME), so that the login shell reads
// none of the dotfiles of the user running the benchmark (a ~/.bashrc that
// sets up a language toolchain can cost 150 ms a login), the same for both
// tools.
func startHost(t *testing.T) (srv *sshdtest.Server, home string) {
	t.Helper()
	home = t.TempDir()
	return sshdtest.Start(t, sshdtest.Options{ExtraConfig: []string{"SetEnv HOME=" + home}}), home
}

// benchEnv is the environment of every command: repotest's git settings
// and no ssh-agent, so that both tools log in with the key they are given.
func benchEnv() []string {
	var env []string
	for _, kv := range repotest.Env() {
		if !strings.HasPrefix(kv, "SSH_AUTH_SOCK=") {
			env = append(env, kv)
		}
	}
	return env
}

// outMu guards outWritten.
var outMu sync.Mutex

// outWritten says whether this test process has written GITRIC_BENCH_OUT
// yet.
var outWritten bool

// publish prints a finished table (text) to the test log and standard
// output, and adds it as Markdown (md) to the file GITRIC_BENCH_OUT names,
// if any: the first table of a test process replaces the file, later ones
// are appended, so that one go test run leaves all of its tables in it.
func publish(t *testing.T, text, md string) {
	t.Helper()
	t.Logf("\n%s", text)
	fmt.Printf("\n%s\n", text)
	out := os.Getenv("GITRIC_BENCH_OUT")
	if out == "" {
		return
	}
	outMu.Lock()
	defer outMu.Unlock()
	flag := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if !outWritten {
		flag |= os.O_TRUNC
	} else {
		md = "\n" + md
	}
	f, err := os.OpenFile(out, flag, 0o644)
	if err == nil {
		_, err = f.WriteString(md)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("GITRIC_BENCH_OUT: %v", err)
	}
	outWritten = true
	abs, _ := filepath.Abs(out)
	t.Logf("wrote %s", abs)
}

// appendCommit commits a change to one existing file of repo, adding msg
// (the commit's message) as a line at its end, and returns the commit.
func appendCommit(t *testing.T, repo *repotest.Repo, file, msg string) string {
	t.Helper()
	old, err := os.ReadFile(filepath.Join(repo.Dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return repo.Commit(t, msg, map[string]string{file: string(old) + msg + "\n"})
}

// benchRuns is GITRIC_BENCH_RUNS, or def when it is not set.
func benchRuns(t *testing.T, def int) int {
	t.Helper()
	v := os.Getenv("GITRIC_BENCH_RUNS")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("GITRIC_BENCH_RUNS=%q: want a positive number of runs", v)
	}
	return n
}

// verbose says whether to log every run (GITRIC_BENCH_VERBOSE=1, which
// the project's "mage -v bench" sets).
func verbose() bool { return os.Getenv("GITRIC_BENCH_VERBOSE") == "1" }

// measure runs a scenario: one untimed warm-up run, then runs timed ones.
// Every run deploys the same commit with both tools, each into its own
// target, the tool that goes first alternating from run to run; after each
// deploy the target must be on the commit.
func (b *bench) measure(t *testing.T, runs int, sc scenario) result {
	t.Helper()
	res := result{scenario: sc.name, goal: sc.goal}
	var targets [2]string
	for k, tl := range b.tools {
		targets[k] = filepath.Join(b.dir, strings.ReplaceAll(sc.name, " ", "-"), tl.name)
	}
	if !sc.fresh {
		head := b.repo.Head(t)
		for k, tl := range b.tools {
			b.deploy(t, tl, targets[k], head)
		}
	}
	// Run 0 is the warm-up; the tree runs come after the timed ones.
	for run := 0; run <= runs+sc.treeRuns; run++ {
		b.pollTree = run > runs
		sha := sc.next(t)
		order := []int{0, 1}
		if run%2 == 1 {
			slices.Reverse(order)
		}
		for _, k := range order {
			tl := b.tools[k]
			if sc.fresh {
				if err := os.RemoveAll(targets[k]); err != nil {
					t.Fatal(err)
				}
			}
			s := b.deploy(t, tl, targets[k], sha)
			if verbose() {
				label := "run " + strconv.Itoa(run)
				switch {
				case run == 0:
					label = "warm-up"
				case b.pollTree:
					label = "tree run " + strconv.Itoa(run-runs)
				}
				t.Logf("%s, %s: %s %s, %s peak RSS %s, its tree %s", sc.name, label, tl.name, ms(s.elapsed), tl.rssOf, mib(s.rssKiB), mib(s.treeKiB))
			}
			switch {
			case b.pollTree:
				res.tree[k] = append(res.tree[k], s)
			case run > 0:
				res.samples[k] = append(res.samples[k], s)
			}
		}
	}
	b.pollTree = false
	t.Logf("%s: output of gitric's last run:\n%s", sc.name, res.samples[0][len(res.samples[0])-1].out)
	return res
}

// deploy has tl deploy sha into target, then checks the target and that
// the deploy logged in as often as it should have. It measures the host's
// CPU time too (sshd and what it ran).
func (b *bench) deploy(t *testing.T, tl tool, target, sha string) sample {
	t.Helper()
	before := logins(b.srv)
	cpuBefore := hostsCPU([]*sshdtest.Server{b.srv})
	s := tl.deploy(t, target, sha)
	s.hostCPU = -1
	if cpuAfter := hostsCPU([]*sshdtest.Server{b.srv}); cpuBefore >= 0 && cpuAfter >= 0 {
		s.hostCPU = cpuAfter - cpuBefore
	}
	verify(t, b.repo.Dir, tl.name, target, sha)
	if n := logins(b.srv) - before; n != tl.logins {
		t.Fatalf("%s: deploying %s took %d SSH logins, want %d\n%s", tl.name, sha[:7], n, tl.logins, s.out)
	}
	return s
}

// logins counts the logins in srv's log so far.
func logins(srv *sshdtest.Server) int {
	return strings.Count(srv.Log(), "Accepted publickey for ")
}

// gitric deploys HEAD, which must be sha, into target the way a user does:
// the compiled magefile's "prod deploy", run in the working copy.
func (b *bench) gitric(t *testing.T, target, sha string) sample {
	t.Helper()
	if head := b.repo.Head(t); head != sha {
		t.Fatalf("gitric deploys HEAD (%s), not %s", head, sha)
	}
	return runMageRSS(t, b.mage, b.repo.Dir, append(slices.Clip(b.gitricEnv), "GITRIC_BENCH_PATH="+target), b.pollTree, "prod", "deploy")
}

// runMage runs the compiled bench magefile mage with args (targets) in
// dir with the environment env, and times it; a failure fails the test.
func runMage(t *testing.T, mage, dir string, env []string, args ...string) sample {
	t.Helper()
	return runMageRSS(t, mage, dir, env, false, args...)
}

// runMageRSS is runMage, sampling the RSS of mage's process tree when tree
// is set.
func runMageRSS(t *testing.T, mage, dir string, env []string, tree bool, args ...string) sample {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), mage, args...)
	cmd.Dir = dir
	cmd.Env = env
	rssOf := measureRSS(t, cmd, tree)
	start := time.Now()
	out := run(t, cmd)
	elapsed := time.Since(start)
	rss, treeRSS, _ := rssOf()
	return sample{elapsed: elapsed, rssKiB: rss, treeKiB: treeRSS, cpu: cpuTime(cmd), out: out}
}

// cli deploys sha into target on the test's sshd with the CLI chain.
func (b *bench) cli(t *testing.T, target, sha string) sample {
	t.Helper()
	return b.chain.deploy(t, b.srv, target, sha, b.pollTree)
}

// cliChain deploys with the OpenSSH and git command lines, from a local
// repository, with a given key and known_hosts.
type cliChain struct {
	env  []string // every command's environment
	repo string   // the local repository
	opts []string // the OpenSSH client's options
}

// newCLIChain is the chain from the repository in dir, logging in with
// the private key file key and trusting the hosts in knownHosts only; no
// ssh-agent and no connection sharing.
func newCLIChain(env []string, dir, key, knownHosts string) cliChain {
	return cliChain{env: env, repo: dir, opts: []string{
		"-i", key,
		"-o", "IdentitiesOnly=yes",
		"-o", "UserKnownHostsFile=" + knownHosts,
		"-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes",
		"-o", "ControlMaster=no",
		"-o", "ControlPath=none",
	}}
}

// deploy deploys sha into target (an absolute path) on srv: one ssh to
// create the repository, git push over ssh, one ssh to reset the working
// copy.
func (c cliChain) deploy(t *testing.T, srv *sshdtest.Server, target, sha string, tree bool) sample {
	t.Helper()
	cmds := c.commands(t, srv, target, sha)
	rssOf := measureRSS(t, cmds[1], tree) // git push
	start := time.Now()
	var out string
	for _, cmd := range cmds {
		out += run(t, cmd)
	}
	elapsed := time.Since(start)
	rss, treeRSS, _ := rssOf()
	return sample{elapsed: elapsed, rssKiB: rss, treeKiB: treeRSS, cpu: cpuTime(cmds...), out: out}
}

// commands are the chain's three commands, to run in order: ssh (mkdir,
// git init), git push over ssh, ssh (git reset --hard).
func (c cliChain) commands(t *testing.T, srv *sshdtest.Server, target, sha string) []*exec.Cmd {
	t.Helper()
	q := shell.Quote(target)
	prepare := c.ssh(t, srv, "mkdir -p "+q+" && cd "+q+" && { [ -d .git ] || { git init -q && git config receive.denyCurrentBranch ignore; }; }")
	url := "ssh://" + srv.User + "@" + srv.Host + ":" + strconv.Itoa(srv.Port) + target
	push := exec.CommandContext(t.Context(), "git", "push", "-q", url, sha+":refs/heads/main")
	push.Dir = c.repo
	push.Env = append(slices.Clip(c.env), "GIT_SSH_COMMAND=ssh "+shell.Join(c.opts...))
	reset := c.ssh(t, srv, "cd "+q+" && git reset -q --hard "+shell.Quote(sha))
	return []*exec.Cmd{prepare, push, reset}
}

// cpuTime is the user and system CPU time of exited commands, with the
// children they waited for.
func cpuTime(cmds ...*exec.Cmd) time.Duration {
	var d time.Duration
	for _, c := range cmds {
		d += c.ProcessState.UserTime() + c.ProcessState.SystemTime()
	}
	return d
}

// ssh is the OpenSSH client running remote on srv.
func (c cliChain) ssh(t *testing.T, srv *sshdtest.Server, remote string) *exec.Cmd {
	t.Helper()
	args := append(slices.Clip(c.opts), "-p", strconv.Itoa(srv.Port), srv.User+"@"+srv.Host, remote)
	cmd := exec.CommandContext(t.Context(), "ssh", args...)
	cmd.Env = c.env
	return cmd
}

// run runs cmd and returns its combined output, failing the test with it
// if cmd fails.
func run(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s (in %s): %v\n%s", shell.Join(cmd.Args...), cmd.Dir, err, out.String())
	}
	return out.String()
}

// verify fails the test unless target's HEAD is sha and every file that sha
// changes has the content it has in the repository in dir (the local one)
// in target's working copy.
func verify(t *testing.T, dir, who, target, sha string) {
	t.Helper()
	head, err := repotest.Git(target, "rev-parse", "HEAD")
	if err != nil {
		t.Fatalf("%s: target %s: %v", who, target, err)
	}
	if head != sha {
		t.Fatalf("%s: target %s is on %s after deploying %s", who, target, head, sha)
	}
	paths, err := repotest.Git(dir, "diff-tree", "--root", "--no-commit-id", "--name-only", "--diff-filter=d", "-r", sha)
	if err != nil {
		t.Fatal(err)
	}
	if paths == "" {
		t.Fatalf("commit %s changes no file: nothing to check", sha)
	}
	for _, p := range strings.Fields(paths) {
		want := blob(t, dir, sha, p)
		got, err := os.ReadFile(filepath.Join(target, p))
		if err != nil {
			t.Fatalf("%s: working copy of %s: %v", who, target, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: %s in %s does not have the content of %s:%s\n--- got ---\n%s\n--- want ---\n%s", who, p, target, sha[:7], p, got, want)
		}
	}
}

// blob is the exact content of path in commit sha of the repository in dir.
func blob(t *testing.T, dir, sha, path string) []byte {
	t.Helper()
	cmd := exec.Command("git", "cat-file", "blob", sha+":"+path)
	cmd.Dir = dir
	cmd.Env = repotest.Env()
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, ee.Stderr)
		}
		t.Fatalf("git cat-file blob %s:%s: %v", sha, path, err)
	}
	return out
}

// compileMage compiles the bench magefile with the module's mage, as a user
// would with "mage -compile", and returns the binary.
func compileMage(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("magefile")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "gitric-mage")
	cmd := exec.CommandContext(t.Context(), "go", "tool", "mage", "-d", dir, "-compile", bin)
	cmd.Dir = moduleRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s (in %s): %v\n%s", shell.Join(cmd.Args...), cmd.Dir, err, out)
	}
	return bin
}

// moduleRoot is the nearest directory at or above the working directory
// that holds go.mod.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod at or above the working directory")
		}
		dir = parent
	}
}

// nproc is what nproc(1) says, or else Go's count of usable CPUs.
func nproc() string {
	if out := commandOutput("nproc"); out != "" {
		return out
	}
	return strconv.Itoa(runtime.NumCPU())
}

// commandOutput is the trimmed combined output of a command that
// describes the machine, or "" when it fails.
func commandOutput(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// report is the benchmark's outcome, printable as text or Markdown.
type report struct {
	results                []result
	tools                  [2]tool
	runs                   int
	nproc                  string
	commits, files         int
	sshVersion, gitVersion string
}

// table is the header and one row per scenario.
func (r report) table() [][]string {
	g, c := r.tools[0], r.tools[1]
	rows := [][]string{{
		"scenario",
		g.name + " median", c.name + " median",
		"ratio " + g.name + "/" + c.name, "target",
		g.rssOf + " peak RSS", c.rssOf + " peak RSS",
		g.name + " min..max", c.name + " min..max",
	}}
	for _, res := range r.results {
		gs, cs := res.samples[0], res.samples[1]
		ratio := float64(medianElapsed(gs)) / float64(medianElapsed(cs))
		rows = append(rows, []string{
			res.scenario,
			ms(medianElapsed(gs)), ms(medianElapsed(cs)),
			fmt.Sprintf("%.2f", ratio), goal(ratio, res.goal),
			mib(medianRSS(gs)), mib(medianRSS(cs)),
			spread(gs), spread(cs),
		})
	}
	return rows
}

// notes say how the table was made.
func (r report) notes() []string {
	return []string{
		fmt.Sprintf("runs: %d timed per tool and scenario, each after 1 untimed warm-up; which tool goes first alternates from run to run; medians, min and max of those runs", r.runs),
		fmt.Sprintf("machine: nproc %s, %s/%s, %s, %s", r.nproc, runtime.GOOS, runtime.GOARCH, r.sshVersion, r.gitVersion),
		fmt.Sprintf("history: %d commits over %d files; first deploy pushes all of it into an emptied target, incremental pushes one new commit changing one file per run", r.commits, r.files),
		"measured: wall clock of the compiled mage binary (`go tool mage -compile` of the bench magefile, run as `prod deploy` in the working copy: one SSH login, checked in sshd's log) " +
			"vs the chain ssh (mkdir, git init) + git push over ssh + ssh (git reset --hard): three SSH logins; " +
			"both against one loopback OpenSSH sshd on 127.0.0.1 with the same key and known_hosts, no ssh-agent, no connection sharing; " +
			"sshd gives the logins a fresh HOME (SetEnv HOME=<a temp dir>), so that no session runs the bench user's ~/.bashrc, for both tools",
		"peak RSS: ru_maxrss from wait4, median of the timed runs: the largest single process; for git push it is the largest of git push and the children it waited for (ssh, pack-objects); each measured command is started by a small launcher (about 2 MiB resident) that reports it, not by the bench process, since Linux charges a child the memory it shared with its parent before exec: started from the bench process, every command would report at least the bench's own RSS (about 18 MiB)",
	}
}

func (r report) text() string { return textTable(r.table(), r.notes()) }

func (r report) markdown() string {
	return markdownTable("gitric vs OpenSSH + git CLI", r.table(), r.notes())
}

// textTable is rows (the first is the header) in aligned columns, then
// the notes, one a line.
func textTable(rows [][]string, notes []string) string {
	var b strings.Builder
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, row := range rows {
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush()
	for _, n := range notes {
		b.WriteString(n + "\n")
	}
	return b.String()
}

// markdownTable is a section with a title, rows (the first is the header)
// as a Markdown table, and the notes as a list.
func markdownTable(title string, rows [][]string, notes []string) string {
	var b strings.Builder
	b.WriteString("# " + title + "\n\n")
	for i, row := range rows {
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
		if i == 0 {
			b.WriteString("|" + strings.Repeat(" --- |", len(row)) + "\n")
		}
	}
	b.WriteString("\n")
	for _, n := range notes {
		b.WriteString("- " + n + "\n")
	}
	return b.String()
}

// goal is the target "<= limit" for a ratio, with PASS or MISS.
func goal(ratio, limit float64) string {
	verdict := "MISS"
	if ratio <= limit {
		verdict = "PASS"
	}
	return fmt.Sprintf("<= %.2g %s", limit, verdict)
}

func medianElapsed(s []sample) time.Duration {
	xs := make([]time.Duration, len(s))
	for i, x := range s {
		xs[i] = x.elapsed
	}
	return median(xs)
}

func medianRSS(s []sample) int64 {
	return medianKiB(s, func(x sample) int64 { return x.rssKiB })
}

// medianTreeRSS is the median peak RSS of the process trees of samples
// taken with pollTree: per sample the larger of the sampled tree and the
// exact largest single process (ru_maxrss), since a single process's
// peak can fall between two samples.
func medianTreeRSS(s []sample) int64 {
	return medianKiB(s, func(x sample) int64 { return max(x.treeKiB, x.rssKiB) })
}

// medianKiB is the median of what of gives for the samples, leaving out
// zeros (unknown).
func medianKiB(s []sample, of func(sample) int64) int64 {
	var xs []int64
	for _, x := range s {
		if v := of(x); v > 0 {
			xs = append(xs, v)
		}
	}
	if len(xs) == 0 {
		return 0
	}
	return median(xs)
}

// median of xs, which must not be empty; the mean of the middle two for
// an even count.
func median[T time.Duration | int64](xs []T) T {
	xs = slices.Clone(xs)
	slices.Sort(xs)
	m := len(xs) / 2
	if len(xs)%2 == 0 {
		return (xs[m-1] + xs[m]) / 2
	}
	return xs[m]
}

func spread(s []sample) string {
	lo := slices.MinFunc(s, byElapsed)
	hi := slices.MaxFunc(s, byElapsed)
	return fmt.Sprintf("%.0f..%s", float64(lo.elapsed)/float64(time.Millisecond), ms(hi.elapsed))
}

func byElapsed(a, b sample) int { return cmp.Compare(a.elapsed, b.elapsed) }

func ms(d time.Duration) string {
	return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
}

func mib(kib int64) string {
	if kib <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}
