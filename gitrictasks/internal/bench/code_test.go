package bench

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// codeHistory is the generated history of TestCompareCode: small edits to
// a few hundred source files of 2–20 KB, renames now and then.
var codeHistory = repotest.Code{Commits: 3000, Files: 300, Seed: 1}

// Goals of TestCompareCode, gitric/CLI.
const (
	codeFirstGoal       = 0.8
	codeIncrementalGoal = 0.3
	codeBytesGoal       = 1.1 // pack bytes, and the host's repository size
	codeRSSGoal         = 1.0
)

// treeRuns is how many runs of each TestCompareCode scenario sample the
// RSS of each tool's process tree, after the timed runs.
const treeRuns = 5

// TestCompareCode deploys a history that looks like a real project's (see
// repotest.CodeHistory), packed as a developer's clone is, with gitric and
// with the CLI chain: first deploy, incremental deploy of a one-line change,
// and what each sends and leaves on the host.
func TestCompareCode(t *testing.T) {
	if os.Getenv("GITRIC_BENCH") != "1" {
		t.Skip("benchmark: set GITRIC_BENCH=1 to run it")
	}
	runs := benchRuns(t, defaultRuns)
	sshdtest.Require(t)

	b := &bench{mage: compileMage(t), dir: t.TempDir()}
	b.srv, _ = startHost(t)
	b.repo = repotest.New(t)
	b.repo.CodeHistory(t, codeHistory)
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
	commits, _ := strconv.Atoi(b.repo.Git(t, "rev-list", "--count", head))
	files := len(strings.Fields(b.repo.Git(t, "ls-files")))
	changed := strings.Fields(b.repo.Git(t, "ls-files"))[files/2]

	// What each sends for the first deploy, counted the same way: the
	// bytes of the pack stream; git's is what git push has
	// pack-objects make (--revs --thin --delta-base-offset).
	oursFirst := gitricPackBytes(t, b.repo.Dir, head, "")
	gitFirst := gitPackBytes(t, b.repo.Dir, head, "")

	first := b.measure(t, runs, scenario{
		name:     "first deploy",
		goal:     codeFirstGoal,
		fresh:    true,
		next:     func(*testing.T) string { return head },
		treeRuns: treeRuns,
	})
	// The host's repository after the last first deploy of each tool.
	var hostSize [2]int64
	for k, tl := range b.tools {
		hostSize[k] = dirSize(t, filepath.Join(b.dir, "first-deploy", tl.name, ".git", "objects"))
	}
	n := 0
	var oursInc, gitInc int64
	incremental := b.measure(t, runs, scenario{
		name: "incremental",
		goal: codeIncrementalGoal,
		next: func(t *testing.T) string {
			n++
			prev := b.repo.Head(t)
			sha := appendCommit(t, b.repo, changed, fmt.Sprintf("bench: incremental %d", n))
			oursInc, gitInc = gitricPackBytes(t, b.repo.Dir, sha, prev), gitPackBytes(t, b.repo.Dir, sha, prev)
			return sha
		},
		treeRuns: treeRuns,
	})

	// The floor under gitric's peak RSS: its binary doing no work.
	var idle []sample
	for range runs {
		idle = append(idle, runMage(t, b.mage, b.repo.Dir, b.gitricEnv, "-l"))
	}

	rep := report{
		results:    []result{incremental, first},
		tools:      b.tools,
		runs:       runs,
		nproc:      nproc(),
		commits:    commits,
		files:      files,
		sshVersion: commandOutput("ssh", "-V"),
		gitVersion: commandOutput("git", "--version"),
	}
	ratio := func(a, c int64) string { return fmt.Sprintf("%.2f", float64(a)/float64(c)) }
	// rss is a row of peak RSS figures, with its target when there is one.
	rss := func(name string, g, c int64, target bool) []string {
		row := []string{name, strconv.FormatInt(g, 10), strconv.FormatInt(c, 10), ratio(g, c), "-"}
		if target {
			row[4] = goal(float64(g)/float64(c), codeRSSGoal)
		}
		return row
	}
	rows := [][]string{
		{"measure", "gitric", "CLI", "ratio gitric/CLI", "target"},
		{"first deploy, pack bytes", strconv.FormatInt(oursFirst, 10), strconv.FormatInt(gitFirst, 10), ratio(oursFirst, gitFirst), goal(float64(oursFirst)/float64(gitFirst), codeBytesGoal)},
		{"host .git/objects after first deploy", strconv.FormatInt(hostSize[0], 10), strconv.FormatInt(hostSize[1], 10), ratio(hostSize[0], hostSize[1]), goal(float64(hostSize[0])/float64(hostSize[1]), codeBytesGoal)},
		rss("first deploy, peak RSS of the process tree (KiB)", medianTreeRSS(first.tree[0]), medianTreeRSS(first.tree[1]), true),
		rss("incremental, peak RSS of the process tree (KiB)", medianTreeRSS(incremental.tree[0]), medianTreeRSS(incremental.tree[1]), true),
		rss("first deploy, peak RSS of the largest single process (KiB)", medianRSS(first.samples[0]), medianRSS(first.samples[1]), false),
		rss("incremental, peak RSS of the largest single process (KiB)", medianRSS(incremental.samples[0]), medianRSS(incremental.samples[1]), false),
		{"gitric's binary listing its targets (mage -l), peak RSS (KiB)", strconv.FormatInt(medianRSS(idle), 10), "-", "-", "the floor of gitric's peak RSS"},
		{"one-line change, pack bytes", strconv.FormatInt(oursInc, 10), strconv.FormatInt(gitInc, 10), ratio(oursInc, gitInc), "few hundred bytes"},
		{"incremental, host CPU", medianCPU(incremental.samples[0], true), medianCPU(incremental.samples[1], true), cpuRatio(incremental.samples[0], incremental.samples[1]), "-"},
	}
	notes := []string{
		fmt.Sprintf("history: repotest.CodeHistory %+v: %d commits, %d files at HEAD, made by git fast-import, then git repack -adf and git gc", codeHistory, commits, files),
		"pack bytes: the pack stream for the deploy, gitric's from localrepo.WritePack, git's from git pack-objects --revs --stdout --thin --delta-base-offset (what git push runs) for the same wants and haves",
		"host .git/objects: the bytes of every file under the host repository's .git/objects after the last first deploy of each tool",
		fmt.Sprintf("peak RSS of the process tree: median of %d more runs of each scenario after the timed ones, untimed since sampling takes CPU: every millisecond the resident sets (/proc/<pid>/statm) of the deploying process and all its descendants alive at that moment, summed as ps would add them; gitric's tree is its compiled mage binary alone (what the mage command runs and waits for), git push's is git push, the sh that runs GIT_SSH_COMMAND, ssh and pack-objects; per run the larger of that sampled sum and the exact largest single process (ru_maxrss), since a peak can fall between two samples", treeRuns),
		"peak RSS of the largest single process: median of the timed runs, ru_maxrss from wait4: gitric's mage binary vs the largest of git push and the children it waited for (ssh, pack-objects) alone; the mage -l row is gitric's binary run without a deploy: its code and data, resident, and Go's runtime",
		"host CPU: median of user + system CPU time of the sshd connections and what they ran (login shell, host script, git), from sshd's cutime and cstime in /proc; the CLI's is its three logins'",
	}
	publish(t, rep.text()+"\n"+textTable(rows, notes), rep.markdown()+"\n"+markdownTable("gitric vs git on a history of code", rows, notes))
}

// gitricPackBytes is the size of the pack gitric writes for want, for a
// target that has have ("" for none).
func gitricPackBytes(t *testing.T, dir, want, have string) int64 {
	t.Helper()
	r, err := localrepo.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var haves []plumbing.Hash
	if have != "" {
		haves = append(haves, plumbing.NewHash(have))
	}
	st, err := r.WritePack(context.Background(), io.Discard, plumbing.NewHash(want), haves)
	if err != nil {
		t.Fatal(err)
	}
	return st.Bytes
}

// gitPackBytes is the size of the pack git push would send for want to a
// target that has have ("" for none).
func gitPackBytes(t *testing.T, dir, want, have string) int64 {
	t.Helper()
	in := want + "\n"
	if have != "" {
		in += "^" + have + "\n"
	}
	cmd := exec.Command("git", "pack-objects", "--revs", "--stdout", "--thin", "--delta-base-offset", "-q")
	cmd.Dir = dir
	cmd.Env = repotest.Env()
	cmd.Stdin = strings.NewReader(in)
	cw := &byteCounter{}
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = cw, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("git pack-objects: %v: %s", err, stderr.String())
	}
	return cw.n
}

// cpuRatio is the ratio of the median host CPU times of a and b, "n/a"
// when either is unknown.
func cpuRatio(a, b []sample) string {
	x, y := medianCPU(a, true), medianCPU(b, true)
	if x == "n/a" || y == "n/a" {
		return "n/a"
	}
	host := func(s []sample) time.Duration {
		xs := make([]time.Duration, len(s))
		for i := range s {
			xs[i] = s[i].hostCPU
		}
		return median(xs)
	}
	if host(b) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", float64(host(a))/float64(host(b)))
}

type byteCounter struct{ n int64 }

func (c *byteCounter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// dirSize is the total size of the files under dir.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
