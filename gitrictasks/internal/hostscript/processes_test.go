package hostscript

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
	"github.com/gitric/gitric/gitrictasks/internal/receivepack"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

// shimTools are the commands the host script may run: each gets a shim on
// the PATH that logs its name (and git's subcommand) before it runs.
var shimTools = []string{"git", "head", "ln", "mkdir", "chmod", "cat", "readlink", "rm", "sed", "awk", "sort",
	"tail", "date", "ls", "ps", "sleep", "tr", "grep", "id", "sysctl", "basename", "dirname", "mv", "wc"}

// shimPath is a PATH whose tools log each run to the returned file.
func shimPath(t *testing.T) (path, log string) {
	t.Helper()
	bin := t.TempDir()
	log = filepath.Join(t.TempDir(), "runs")
	for _, tool := range shimTools {
		real, err := exec.LookPath(tool)
		if err != nil {
			continue
		}
		what := tool
		if tool == "git" {
			// The subcommand: the first word that is not an option or
			// the value of -C or -c.
			what = `git $(while [ $# -gt 0 ]; do case $1 in -C | -c) shift 2 ;; -*) shift ;; *) echo "$1"; break ;; esac; done)`
		}
		shim := "#!/bin/sh\necho \"" + what + "\" >>" + log + "\nexec " + real + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(bin, tool), []byte(shim), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin + ":" + os.Getenv("PATH"), log
}

// An incremental deploy's prelude and seed, on a clean in-place host, run
// only the processes that their checks need: the bootstrap's head, the
// lock's ln, one git for the head commit and its source, git status for
// the server-edit check and the untracked check,
// git receive-pack (which runs git's own connectivity check; its gc --auto
// only when there is something to pack), and at the exit the lock's
// readlink and rm. The cutover adds git reset and the audit line's date,
// and with a stop command the index's refresh before the stop.
// Each process is CPU that every host pays on every deploy: a new one must
// be worth it. The log directory of the service commands is made private,
// and made so again when a command is to run.
func TestDeployProcesses(t *testing.T) {
	t.Parallel()
	requireTool(t, "git")
	base := []string{"head", "ln", "git log", "git status", "git receive-pack", "readlink", "rm"}
	tests := []struct {
		name string
		host hostState
		want []string
	}{
		{name: "no command", host: hostState{logDir: 0o700}, want: base},
		{name: "no log directory yet", want: slices.Insert(slices.Clone(base), 2, "mkdir")},
		{name: "a stop command, the log directory opened up", host: hostState{logDir: 0o755, stop: "true"}, want: slices.Insert(slices.Clone(base), 2, "chmod")},
		{name: "cutover", host: hostState{logDir: 0o700, cutover: true}, want: slices.Insert(slices.Clone(base), 5, "git reset", "date")},
		// The index refreshed before the stop, so that the downtime holds
		// only the files' switch; the stop command's output goes to a
		// private log, shown and removed.
		{name: "cutover, a stop command", host: hostState{logDir: 0o700, cutover: true, stop: "true"}, want: []string{"head", "ln", "chmod", "git log", "git status", "git receive-pack",
			"git update-index", "rm", "cat", "rm", "git reset", "date", "readlink", "rm"}},
		// The branch in packed-refs only: git says what HEAD is.
		{name: "cutover, packed refs", host: hostState{logDir: 0o700, cutover: true, packRefs: true}, want: slices.Insert(slices.Clone(base), 5, "git rev-parse", "git reset", "date")},
		// git's own limit: over 27 loose objects in objects/17.
		{name: "loose objects to pack", host: hostState{logDir: 0o700, loose: 28}, want: slices.Insert(slices.Clone(base), 5, "git config", "git gc")},
		{name: "loose objects, receive.autogc=false", host: hostState{logDir: 0o700, loose: 28, noAutoGC: true}, want: slices.Insert(slices.Clone(base), 5, "git config")},
		{name: "loose objects under the limit", host: hostState{logDir: 0o700, loose: 27}, want: base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, app := deployToVerified(t, tt.host)
			// A command runs bounded: a sleep in the background kills it
			// when its time is up, and is itself killed when the command
			// ends, often before its shim has logged it.
			got = slices.DeleteFunc(got, func(s string) bool { return s == "sleep" })
			if !slices.Equal(got, tt.want) {
				t.Errorf("the deploy ran %q, want %q", got, tt.want)
			}
			fi, err := os.Stat(filepath.Join(app, ".git", "gitric", "log"))
			if err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("the log directory: %v, %v; want it private (0700)", fi.Mode(), err)
			}
			if _, err := os.Lstat(filepath.Join(app, ".git", "gitric", "lock")); !os.IsNotExist(err) {
				t.Errorf("the lock is still there (%v)", err)
			}
		})
	}
}

// hostState is how deployToVerified sets the host up, and how far the
// deploy goes.
type hostState struct {
	logDir   os.FileMode // of the gitric log directory; 0: none yet
	stop     string      // the stage's stop command
	loose    int         // files put in .git/objects/17 (gc.auto=0 keeps git gc from reading them)
	noAutoGC bool        // receive.autogc=false
	cutover  bool        // go on with the cutover to the new commit
	packRefs bool        // git pack-refs --all: no ref is a file of its own
}

// deployToVerified runs a deploy of a new commit to a clean in-place host
// set up as h says, up to its untracked check (or its cutover), then ends
// it. It returns the commands the script ran and the host's root.
func deployToVerified(t *testing.T, h hostState) (ran []string, app string) {
	t.Helper()
	src := repotest.New(t)
	src.History(t, 20, 5)
	home := t.TempDir()
	app = filepath.Join(home, "app")
	old := src.Head(t)
	// The host: a gitric root on the previous commit, clean.
	if out, err := exec.Command("git", "clone", "-q", src.Dir, app).CombinedOutput(); err != nil {
		t.Fatalf("clone: %v: %s", err, out)
	}
	g := filepath.Join(app, ".git", "gitric")
	if err := os.MkdirAll(g, 0o755); err != nil {
		t.Fatal(err)
	}
	if h.logDir != 0 {
		if err := os.Mkdir(filepath.Join(g, "log"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(g, "log"), h.logDir); err != nil {
			t.Fatal(err)
		}
	}
	if h.packRefs {
		if out, err := exec.Command("git", "-C", app, "pack-refs", "--all").CombinedOutput(); err != nil {
			t.Fatalf("git pack-refs: %v: %s", err, out)
		}
	}
	config := [][]string{{"gc.auto", "0"}}
	if h.noAutoGC {
		config = append(config, []string{"receive.autogc", "false"})
	}
	for _, kv := range config {
		if out, err := exec.Command("git", "-C", app, "config", kv[0], kv[1]).CombinedOutput(); err != nil {
			t.Fatalf("git config: %v: %s", err, out)
		}
	}
	if h.loose > 0 {
		dir := filepath.Join(app, ".git", "objects", "17")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range h.loose {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%038x", i)), nil, 0o444); err != nil {
				t.Fatal(err)
			}
		}
	}
	next := src.Commit(t, "next", map[string]string{"next.txt": "next\n"})

	path, log := shimPath(t)
	tok := NewToken()
	v := Vars{Action: Deploy, Path: "app", Mode: "inplace", New: next, Lock: "tester since now", Stop: h.stop}
	cmd := exec.Command("/bin/sh", "-c", Command(""))
	cmd.Env = []string{"HOME=" + home, "PATH=" + path, "GIT_CONFIG_NOSYSTEM=1"}
	stdin, d, stderr := startScript(t, cmd, v.Script(tok), tok)
	if err := d.Hello(); err != nil {
		t.Fatalf("hello: %v (%s)", err, stderr.String())
	}
	for {
		l, err := d.Next("the state")
		if err != nil {
			t.Fatalf("state: %v (%s)", err, stderr.String())
		}
		if l.Word == WordHead && l.Arg != old {
			t.Fatalf("head %s, want %s", l.Arg, old)
		}
		if l.Word == WordReady {
			break
		}
	}
	repo, err := localrepo.Open(src.Dir)
	if err != nil {
		t.Fatal(err)
	}
	p, err := receivepack.Start(receivepack.Conn{In: stdin, Out: d.Reader()})
	if err != nil {
		t.Fatalf("receive-pack: %v (%s)", err, stderr.String())
	}
	up := receivepack.Update{Ref: "refs/gitric/seed", New: plumbing.NewHash(next)}
	err = p.Send(context.Background(), []receivepack.Update{up}, func(w io.Writer) error {
		_, err := repo.WritePack(context.Background(), w, up.New, []plumbing.Hash{plumbing.NewHash(old)})
		return err
	}, nil)
	if err != nil {
		t.Fatalf("push: %v (%s)", err, stderr.String())
	}
	if arg, err := d.Expect(WordSeeded); err != nil || arg != "0 "+next {
		t.Fatalf("seeded %q, %v (%s)", arg, err, stderr.String())
	}
	if _, err := d.Expect(WordVerified); err != nil {
		t.Fatalf("verified: %v (%s)", err, stderr.String())
	}
	if h.cutover {
		if err := Send(stdin, tok, CmdCutover, next, "ok", "-", `{"who":"tester"`); err != nil {
			t.Fatal(err)
		}
		for {
			l, err := d.Next("the cutover")
			if err != nil {
				t.Fatalf("cutover: %v (%s)", err, stderr.String())
			}
			if l.Word == WordChecked {
				break
			}
		}
		if got, err := exec.Command("git", "-C", app, "rev-parse", "HEAD").Output(); err != nil || strings.TrimSpace(string(got)) != next {
			t.Fatalf("after the cutover the host is on %s (%v), want %s (%s)", got, err, next, stderr.String())
		}
	}
	if err := Send(stdin, tok, CmdBye); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v (%s)", err, stderr.String())
	}
	b, _ := os.ReadFile(log)
	return strings.Split(strings.TrimSpace(string(b)), "\n"), app
}
