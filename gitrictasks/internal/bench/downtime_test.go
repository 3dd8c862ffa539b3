package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

const (
	// downtimeRuns is the number of timed runs per mode when
	// GITRIC_BENCH_RUNS is not set.
	downtimeRuns = 5
	// downtimeFiles is the size of the deployed tree, downtimeChanged how
	// many of its files every deploy changes.
	downtimeFiles   = 5000
	downtimeChanged = 500
	// downtimeGoal is the aim for the release mode's downtime over the
	// in-place mode's: shorter, since the checkout is done before the
	// service stops.
	downtimeGoal = 1.0
	// serviceCommand is the stop and start command: one that does
	// nothing, so that the window is gitric's own.
	serviceCommand = "true"
)

// downtimeMode is one layout of the working copy on the host, with the
// environment that has the bench magefile deploy in it.
type downtimeMode struct {
	name string
	mode deploy.Mode // Stage.Mode
	path string      // relative to the host's home
	env  []string
}

// workingCopy is the mode's working copy on a host with home directory
// home: the repository itself in place, the live release's otherwise.
func (m downtimeMode) workingCopy(home string) string {
	if m.mode == deploy.ModeRelease {
		return filepath.Join(home, m.path, "current")
	}
	return filepath.Join(home, m.path)
}

// cutover is how long one host's cutover took, as gitric reports it.
type cutover struct {
	// downtime, stop, reset and start are from the host's line "downtime
	// X (stop X, reset X, start X)".
	downtime, stop, reset, start time.Duration
	// downtimeMS is downtime_ms of the host's JSON summary object.
	downtimeMS int64
	// wall is the whole mage call's.
	wall time.Duration
}

func TestCompareDowntime(t *testing.T) {
	if os.Getenv("GITRIC_BENCH") != "1" {
		t.Skip("benchmark: set GITRIC_BENCH=1 to run it")
	}
	runs := benchRuns(t, downtimeRuns)
	sshdtest.Require(t)

	load := loadAverage()
	mage := compileMage(t)
	srv, home := startHost(t)
	repo := repotest.New(t)
	// commits[0] is the first deploy, commits[1] the warm-up, then one
	// per timed run.
	commits := changeChain(t, repo, downtimeFiles, downtimeChanged, runs+1)

	env := append(benchEnv(),
		"GITRIC_HOSTS="+srv.User+"@"+srv.Addr,
		"GITRIC_IDENTITY="+srv.ClientKeyFile,
		"GITRIC_KNOWN_HOSTS="+srv.KnownHostsFile,
		"GITRIC_OUTPUT=json",
		"GITRIC_BENCH_STOP="+serviceCommand,
		"GITRIC_BENCH_START="+serviceCommand,
	)
	modes := []downtimeMode{
		{name: "in-place", mode: deploy.ModeInPlace, path: "inplace"},
		{name: "release", mode: deploy.ModeRelease, path: "release"},
	}
	for k, m := range modes {
		modes[k].env = append(slices.Clip(env), "GITRIC_BENCH_MODE="+string(m.mode), "GITRIC_BENCH_PATH="+m.path)
	}
	deployTo := func(t *testing.T, m downtimeMode, sha string) (cutover, string) {
		t.Helper()
		s := runMage(t, mage, repo.Dir, m.env, "ref", sha, "prod", "deploy")
		checkCheckout(t, m.name, m.workingCopy(home), sha)
		c := parseCutover(t, s.out)
		c.wall = s.elapsed
		return c, s.out
	}

	// The first deploy checks all the files out; there is nothing to stop
	// yet.
	for _, m := range modes {
		deployTo(t, m, commits[0])
	}
	samples := make([][]cutover, len(modes))
	last := make([]string, len(modes))
	for run, sha := range commits[1:] { // run 0 is the warm-up
		for j := range modes {
			k := (j + run) % len(modes) // which mode goes first alternates
			c, out := deployTo(t, modes[k], sha)
			if verbose() {
				t.Logf("%s, run %d: downtime %s (stop %s, reset %s, start %s), mage %s", modes[k].name, run, c.downtime, c.stop, c.reset, c.start, ms(c.wall))
			}
			if run > 0 {
				samples[k] = append(samples[k], c)
				last[k] = out
			}
		}
	}
	for k, m := range modes {
		t.Logf("%s: output of the last run:\n%s", m.name, last[k])
	}

	rows := [][]string{{"mode", "downtime median", "min..max", "stop", "reset / switch", "start", "JSON downtime_ms", "mage wall", "ratio release/in-place", "target"}}
	base := medianOf(samples[0], func(c cutover) time.Duration { return c.downtime })
	for k, m := range modes {
		s := samples[k]
		down := medianOf(s, func(c cutover) time.Duration { return c.downtime })
		ratio, target := "", "-"
		if m.mode == deploy.ModeRelease {
			r := float64(down) / float64(base)
			ratio, target = fmt.Sprintf("%.2f", r), goal(r, downtimeGoal)
		}
		lo := slices.MinFunc(s, byDowntime)
		hi := slices.MaxFunc(s, byDowntime)
		jsonMS := make([]int64, len(s))
		for i, c := range s {
			jsonMS[i] = c.downtimeMS
		}
		rows = append(rows, []string{
			m.name, msFine(down), fmt.Sprintf("%.1f..%s", millis(lo.downtime), msFine(hi.downtime)),
			msFine(medianOf(s, func(c cutover) time.Duration { return c.stop })),
			msFine(medianOf(s, func(c cutover) time.Duration { return c.reset })),
			msFine(medianOf(s, func(c cutover) time.Duration { return c.start })),
			fmt.Sprintf("%d ms", median(jsonMS)),
			ms(medianOf(s, func(c cutover) time.Duration { return c.wall })),
			ratio, target,
		})
	}
	notes := []string{
		fmt.Sprintf("runs: %d timed per mode, after a first deploy and 1 untimed warm-up; every run deploys the next commit of a chain in which each commit changes %d of the tree's %d files (one line added to each), with both modes; which mode goes first alternates from run to run; medians, min and max of those runs", runs, downtimeChanged, downtimeFiles),
		fmt.Sprintf("machine: nproc %s, %s/%s, %s, %s; load average (1, 5, 15 min) %s before, %s after", nproc(), runtime.GOOS, runtime.GOARCH, commandOutput("ssh", "-V"), commandOutput("git", "--version"), load, loadAverage()),
		"downtime: from the start of the stop command to the end of the start command, as gitric reports it on the host's line \"downtime X (stop X, switch X, start X)\" (its precise value, used for the medians) and as downtime_ms in its JSON summary (GITRIC_OUTPUT=json; whole milliseconds)",
		fmt.Sprintf("service: stop and start are %q, so the window is gitric's own: in-place it holds git reset --hard to the new commit; in release mode only the rename of the current symlink, the new release having been checked out (git worktree add) before the stop, outside the window", serviceCommand),
		"mage wall: the whole `ref <commit> prod deploy` call of the compiled bench magefile (seed, checkout, cutover, audit log); one deploy per call",
		"host: one OpenSSH sshd on 127.0.0.1 with SetEnv HOME=<a temp dir>, both modes' repositories relative to it; the window is inside gitric's one session, so no login shell startup is in it in any case",
		"checked after every deploy: the working copy's HEAD is the commit and git status is clean",
	}
	publish(t, textTable(rows, notes), markdownTable("gitric downtime: in-place vs release mode", rows, notes))
}

// changeChain fills repo, which must be empty, with a first commit of
// files files and then n commits each changing changed of them, in one
// git fast-import run, and checks the last one out. It returns the n+1
// commits, oldest first. files must be a multiple of changed.
func changeChain(t *testing.T, repo *repotest.Repo, files, changed, n int) []string {
	t.Helper()
	stride := files / changed
	var in bytes.Buffer
	contents := make([]string, files)
	for i := range contents {
		contents[i] = fmt.Sprintf("file %d\n%s", i, strings.Repeat(fmt.Sprintf("a line of file %d\n", i), 10))
	}
	for c := 0; c <= n; c++ {
		fmt.Fprintf(&in, "commit refs/heads/main\nmark :%d\n", c+1)
		fmt.Fprintf(&in, "committer Test <test@example.com> %d +0000\n", 1700000000+c)
		msg := fmt.Sprintf("change %d", c)
		fmt.Fprintf(&in, "data %d\n%s\n", len(msg), msg)
		if c > 0 {
			fmt.Fprintf(&in, "from :%d\n", c)
		}
		for i := range contents {
			if c > 0 && i%stride != c%stride {
				continue
			}
			if c > 0 {
				contents[i] += msg + "\n"
			}
			fmt.Fprintf(&in, "M 100644 inline src/d%02d/s%d/file%04d.txt\ndata %d\n%s\n", i/200, i/20%10, i, len(contents[i]), contents[i])
		}
	}
	cmd := exec.CommandContext(t.Context(), "git", "fast-import", "--quiet")
	cmd.Dir = repo.Dir
	cmd.Env = repotest.Env()
	cmd.Stdin = &in
	run(t, cmd)
	repo.Git(t, "reset", "-q", "--hard", "main")
	commits := strings.Fields(repo.Git(t, "rev-list", "--reverse", "main"))
	if len(commits) != n+1 {
		t.Fatalf("git fast-import made %d commits, want %d", len(commits), n+1)
	}
	if got := strings.Count(repo.Git(t, "diff", "--name-only", commits[n-1], commits[n]), "\n") + 1; got != changed {
		t.Fatalf("the last commit changes %d files, want %d", got, changed)
	}
	return commits
}

// checkCheckout fails the test unless the working copy dir is on sha and
// holds exactly its files.
func checkCheckout(t *testing.T, who, dir, sha string) {
	t.Helper()
	head, err := repotest.Git(dir, "rev-parse", "HEAD")
	if err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	if head != sha {
		t.Fatalf("%s: %s is on %s after deploying %s", who, dir, head, sha)
	}
	status, err := repotest.Git(dir, "status", "--porcelain")
	if err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	if status != "" {
		t.Fatalf("%s: the working copy %s differs from %s:\n%s", who, dir, sha[:7], status)
	}
}

// downtimeLine is the message gitric prints for a host after its
// cutover.
var downtimeLine = regexp.MustCompile(`^downtime (\S+) \(stop (\S+), switch (\S+), start (\S+)\)$`)

// parseCutover reads the cutover of the one host of a deploy from gitric's
// JSON lines: its downtime message and its summary object, which must
// agree.
func parseCutover(t *testing.T, out string) cutover {
	t.Helper()
	var c cutover
	var lines, summaries int
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var l struct {
			Host       string `json:"host"`
			Msg        string `json:"msg"`
			Summary    bool   `json:"summary"`
			DowntimeMS int64  `json:"downtime_ms"`
			Result     string `json:"result"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("gitric's output with GITRIC_OUTPUT=json has a line that is not JSON: %q: %v\n%s", sc.Text(), err, out)
		}
		if l.Summary {
			summaries++
			if l.Result != string(deploy.OutcomeOK) {
				t.Fatalf("gitric's summary says %q, want %q:\n%s", l.Result, deploy.OutcomeOK, out)
			}
			c.downtimeMS = l.DowntimeMS
			continue
		}
		m := downtimeLine.FindStringSubmatch(l.Msg)
		if l.Host == "" || m == nil {
			continue
		}
		lines++
		for i, d := range []*time.Duration{&c.downtime, &c.stop, &c.reset, &c.start} {
			var err error
			if *d, err = time.ParseDuration(m[i+1]); err != nil {
				t.Fatalf("gitric's downtime line %q: %v", l.Msg, err)
			}
		}
	}
	if lines != 1 || summaries != 1 {
		t.Fatalf("gitric printed %d downtime line(s) and %d summary object(s), want 1 of each:\n%s", lines, summaries, out)
	}
	// The line rounds to 100µs (10ms from a second on), downtime_ms
	// truncates to the millisecond.
	slack := time.Millisecond + 100*time.Microsecond
	if c.downtime >= time.Second {
		slack = time.Millisecond + 10*time.Millisecond
	}
	if diff := c.downtime - time.Duration(c.downtimeMS)*time.Millisecond; diff < -slack || diff > slack {
		t.Errorf("gitric's downtime line says %s but its JSON summary says downtime_ms %d:\n%s", c.downtime, c.downtimeMS, out)
	}
	return c
}

// medianOf is the median of one duration of every cutover.
func medianOf(cs []cutover, of func(cutover) time.Duration) time.Duration {
	xs := make([]time.Duration, len(cs))
	for i, c := range cs {
		xs[i] = of(c)
	}
	return median(xs)
}

func byDowntime(a, b cutover) int { return cmp.Compare(a.downtime, b.downtime) }

func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// msFine is d in milliseconds with one decimal, for short windows.
func msFine(d time.Duration) string { return fmt.Sprintf("%.1f ms", millis(d)) }
