//go:build unix

package gitrictasks_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// mageCache is where this test process's mage keeps the magefiles it
// compiles. mage names a compiled magefile after the hash of the magefile
// alone, not of the packages it imports: a shared cache would run a binary
// built from older gitrictasks code.
var mageCache string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gitric-mage-cache")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mageCache = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestStopAsUsersDo runs `go tool mage` on the signal magefile, as a user
// does, and stops it the ways users and CI runners do while a host runs
// its slow start command: SIGTERM to the top process alone (which mage
// does not pass on: it dies of it) and Ctrl-C (SIGINT to the process
// group). Each time the compiled magefile must see it, say so at once,
// finish the host step under way, leave no lock behind and print the
// summary, all within a bound (for Ctrl-C, mage's 5 seconds); with two hosts cut over one at a time, the
// second one must not be.
func TestStopAsUsersDo(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a magefile")
	}
	magefiles, err := filepath.Abs(filepath.Join("testdata", "signals"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		hosts   int // 0: the local stage
		group   bool
		sig     syscall.Signal
		says    string        // the line that the cancellation prints
		within  time.Duration // from the signal to the last process's exit
		aborted int           // hosts left as they were
	}{
		{"SIGTERM to go tool mage, local", 0, false, syscall.SIGTERM, "is gone: finishing the host steps under way", 10 * time.Second, 0},
		{"SIGTERM to go tool mage, two hosts", 2, false, syscall.SIGTERM, "is gone: finishing the host steps under way", 10 * time.Second, 1},
		{"Ctrl-C, local", 0, true, syscall.SIGINT, "interrupted: finishing the host steps under way", 5 * time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			repo := repotest.New(t)
			repo.Commit(t, "v1", map[string]string{"index.html": "v1\n"})
			marks := t.TempDir()
			mark, finished := filepath.Join(marks, "started"), filepath.Join(marks, "finished")
			env := append(repotest.Env(), "MAGEFILE_CACHE="+mageCache, "GITRIC_OUTPUT=json",
				"GITRIC_TEST_START=touch "+mark+" && sleep 3 && touch "+finished)
			stage := "gitric:local"
			locks := []string{filepath.Join(repo.Dir, ".gitric", "local", "app", ".git", "gitric", "lock")}
			if tt.hosts > 0 {
				sshdtest.Require(t)
				fleet := sshdtest.StartFleet(t, tt.hosts)
				env = append(env, "GITRIC_HOSTS="+strings.Join(fleet.Addresses(tt.hosts), ","), "GITRIC_BATCH=1",
					"GITRIC_IDENTITY="+fleet.ClientKeyFile, "GITRIC_KNOWN_HOSTS="+fleet.KnownHostsFile, "GITRIC_SSH_CONFIG=none")
				stage = "gitric:prod"
				locks = nil
				for _, home := range fleet.Homes {
					locks = append(locks, filepath.Join(home, "app", ".git", "gitric", "lock"))
				}
			}
			cmd := exec.Command("go", "tool", "mage", "-d", magefiles, "-w", repo.Dir, stage, "gitric:deploy")
			cmd.Env = env
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Wait returns once every process holding the output is gone,
			// the compiled magefile included, whoever its parent is then.
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			pgid := cmd.Process.Pid
			t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })

			deadline := time.Now().Add(3 * time.Minute) // compiling included
			for {
				if _, err := os.Stat(mark); err == nil {
					break
				}
				select {
				case err := <-done:
					t.Fatalf("mage ended before the start command ran: %v\n%s%s", err, stdout.String(), stderr.String())
				case <-time.After(20 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("the start command did not run:\n%s%s", stdout.String(), stderr.String())
				}
			}
			signalled := time.Now()
			target := pgid
			if tt.group {
				target = -pgid
			}
			if err := syscall.Kill(target, tt.sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
			case <-time.After(tt.within):
				t.Fatalf("still running %s after %v:\n%s%s", tt.within, tt.sig, stdout.String(), stderr.String())
			}
			took := time.Since(signalled)

			var said, summary time.Time
			results := map[string]int{}
			for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
				var v struct {
					Time    time.Time
					Msg     string
					Summary bool
					Result  string
				}
				if err := json.Unmarshal([]byte(line), &v); err != nil {
					t.Errorf("stdout line is not JSON: %q", line)
					continue
				}
				if strings.Contains(v.Msg, tt.says) && said.IsZero() {
					said = v.Time
				}
				if v.Summary {
					summary = time.Now()
					results[v.Result]++
				}
			}
			if said.IsZero() {
				t.Errorf("no line says %q:\n%s", tt.says, stdout.String())
			} else if d := said.Sub(signalled); d > time.Second {
				t.Errorf("the deploy noticed %v after %s", tt.sig, d)
			}
			if summary.IsZero() {
				t.Errorf("no summary:\n%s", stdout.String())
			}
			if results["aborted"] != tt.aborted {
				t.Errorf("%d host(s) aborted, want %d:\n%s", results["aborted"], tt.aborted, stdout.String())
			}
			if _, err := os.Stat(finished); err != nil {
				t.Errorf("the start command under way was not finished: %v", err)
			}
			for _, lock := range locks {
				if _, err := os.Stat(lock); !os.IsNotExist(err) {
					t.Errorf("the lock %s is still there (%v)", lock, err)
				}
			}
			t.Logf("%v: everything ended %s after it", tt.sig, took.Round(time.Millisecond))
		})
	}
}
