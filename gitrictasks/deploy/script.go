package deploy

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/console"
	"github.com/gitric/gitric/gitrictasks/receivepack"
	"github.com/gitric/gitric/gitrictasks/remote"
	"github.com/gitric/gitric/gitrictasks/shell"
)

// seedRef is where a push puts the commit on a host: a ref of gitric's own,
// so that seeding moves neither the checked-out branch nor the working copy.
const seedRef = "refs/gitric/seed"

// hostScript is the program a deploy runs on each host, in one session.
// Its standard output carries the protocol: lines that start with the
// session's token, with git receive-pack's own stream in the middle.
// Everything meant for people (git's messages, the service commands'
// output) goes to standard error, which gitric prints prefixed by host.
//
// Steps: prepare the repository (create it when missing), report HEAD, run
// git receive-pack, then read one line: "cutover <sha>" runs stop, reset,
// start and reports each; end of input ends the script with no change. On
// a first deploy (no HEAD yet) there is nothing to stop, and the stop
// command, which usually lives in the deployed tree, is not run.
const hostScript = `set -u
say() { printf '%s %s\n' "$T" "$*"; }
die() { printf 'gitric: %s\n' "$2" >&2; say error "$1"; exit 1; }
command -v git >/dev/null 2>&1 || die nogit "git is not installed on this host, or not on the PATH of a non-interactive ssh login (install it: apt-get install git)"
if [ ! -d "$P" ]; then
	mkdir -p -- "$P" 2>/dev/null || die path "cannot create $P as $(id -un): permission denied or a file is in the way; create it with the right owner, or choose another path"
fi
cd -- "$P" 2>/dev/null || die path "cannot enter $P as $(id -un)"
if [ "$(git rev-parse --git-dir 2>/dev/null)" != .git ]; then
	[ -w . ] || die path "$PWD is not writable by $(id -un): give that user the directory, or choose another path"
	if [ -n "$(ls -A)" ]; then die path "$PWD is not empty and is not a git repository; gitric will not take it over: empty it or choose another path"; fi
	git -c init.defaultBranch=main init -q . >&2 && git config receive.denyCurrentBranch ignore || die init "git init failed in $PWD"
fi
[ -w .git ] || die path "$PWD/.git is not writable by $(id -un)"
head=$(git rev-parse -q --verify 'HEAD^{commit}' 2>/dev/null) || head=none
say head "$head"
git receive-pack . || die seed "git receive-pack failed in $PWD"
say seeded
read -r cmd sha || exit 0
[ "$cmd" = cutover ] || exit 0
case $sha in *[!0-9a-f]*|'') die proto "bad commit '$sha'";; esac
say stopping
if [ -n "$STOP" ] && [ "$head" != none ]; then
	sh -c "$STOP" >&2 </dev/null; s=$?
	say stopped $s
	[ $s -eq 0 ] || exit 1
else
	say stopped - # nothing to stop, or nothing deployed yet to stop
fi
git reset -q --hard "$sha" >&2 </dev/null; r=$?
if [ $r -eq 0 ]; then git --no-pager log -1 --format='HEAD is now at %h %s' >&2; fi
say reset $r
s=0
if [ -n "$START" ]; then
	sh -c "$START" >&2 </dev/null; s=$?
fi
say started $s
[ $r -eq 0 ] && [ $s -eq 0 ]
`

// script returns the command line that runs hostScript with its values.
func script(token, path, stop, start string) string {
	// A path written as ~/x means the same as x: ssh starts in the home
	// directory, and a quoted ~ would not be expanded.
	path = strings.TrimPrefix(path, "~/")
	if path == "~" {
		path = "."
	}
	return "T=" + shell.Quote(token) + " P=" + shell.Quote(path) +
		" STOP=" + shell.Quote(stop) + " START=" + shell.Quote(start) + "\n" + hostScript
}

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "gitric-" + hex.EncodeToString(b[:])
}

// session is one host's deploy session, from prepare to cutover.
type session struct {
	host  *remote.Host
	proc  *remote.Process
	out   *bufio.Reader
	token string
	log   *console.Writer
	// stderrDone is closed when the host's stderr has been copied out.
	stderrDone chan struct{}
	// errCode is the code of the last "error" line the script sent.
	errCode string
	once    sync.Once
	waitErr error
}

// openSession starts the host script and reads the host's HEAD.
func openSession(ctx context.Context, h *remote.Host, path, stop, start string, log *console.Writer) (*session, plumbing.Hash, error) {
	token := newToken()
	p, err := h.Start(ctx, "gitric deploy script", script(token, path, stop, start))
	if err != nil {
		return nil, plumbing.ZeroHash, err
	}
	s := &session{host: h, proc: p, out: bufio.NewReaderSize(p.Stdout, 64<<10), token: token, log: log, stderrDone: make(chan struct{})}
	go func() {
		defer close(s.stderrDone)
		_, _ = io.Copy(log, p.Stderr)
		log.Flush()
	}()
	_, arg, err := s.expect("head")
	if err != nil {
		return s, plumbing.ZeroHash, err
	}
	if arg == "none" {
		return s, plumbing.ZeroHash, nil
	}
	if !plumbing.IsHash(arg) {
		return s, plumbing.ZeroHash, fmt.Errorf("the host reported HEAD as %q, which is not a commit hash", arg)
	}
	return s, plumbing.NewHash(arg), nil
}

// expect reads protocol lines until one with the given word. Lines that do
// not carry the token (a login script that prints something) are skipped.
func (s *session) expect(want string) (string, string, error) {
	for {
		line, err := s.out.ReadString('\n')
		if err != nil {
			return "", "", s.ended(fmt.Errorf("waiting for %q from the host script: %w", want, err))
		}
		rest, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), s.token+" ")
		if !ok {
			continue
		}
		word, arg, _ := strings.Cut(rest, " ")
		if word == "error" {
			s.errCode = arg
			return "", "", s.ended(fmt.Errorf("%s", arg))
		}
		if word != want {
			return "", "", fmt.Errorf("protocol: the host script said %q while gitric waited for %q", rest, want)
		}
		return word, arg, nil
	}
}

// ended waits for the script to finish and returns the best explanation:
// what the script printed on stderr is already on the console, so the
// error names the step.
func (s *session) ended(cause error) error {
	werr := s.wait()
	if s.errCode != "" {
		return &ScriptError{Code: s.errCode}
	}
	if werr != nil {
		return werr
	}
	return cause
}

func (s *session) wait() error {
	s.once.Do(func() {
		_ = s.proc.Stdin.Close()
		_, _ = io.Copy(io.Discard, s.out)
		<-s.stderrDone
		s.waitErr = s.proc.Wait()
	})
	return s.waitErr
}

// ScriptError is a refusal by the host script; the details were printed on
// the host's stderr, prefixed by host.
type ScriptError struct {
	Code string // nogit, path, init, seed
}

// Error says what kind of failure it was.
func (e *ScriptError) Error() string {
	switch e.Code {
	case "nogit":
		return "git is not installed on the host"
	case "path":
		return "the repository path on the host cannot be used (see the host's message above)"
	case "init":
		return "could not create the repository on the host"
	case "seed":
		return "git receive-pack failed on the host"
	default:
		return "the host script failed: " + e.Code
	}
}

// ErrScript lets errors.Is find any ScriptError.
var ErrScript = errors.New("host script failed")

// Is matches ErrScript.
func (e *ScriptError) Is(target error) bool { return target == ErrScript }

// push seeds the host: receive-pack's advertisement, then the update of
// seedRef to want with a pack of what the host lacks. It returns the pack's
// statistics; nothing is sent when the host already has want in seedRef.
func (s *session) push(ctx context.Context, want plumbing.Hash, head plumbing.Hash, pack func(w io.Writer, haves []plumbing.Hash) (int, int, error), progress io.Writer) (seedStats, error) {
	conn := receivepack.Conn{In: s.proc.Stdin, Out: s.out}
	p, err := receivepack.Start(conn)
	if err != nil {
		return seedStats{}, s.ended(err)
	}
	refs := p.Refs()
	var st seedStats
	var updates []receivepack.Update
	if refs[seedRef] != want {
		updates = append(updates, receivepack.Update{Ref: seedRef, Old: refs[seedRef], New: want})
	}
	haves := refs.Hashes()
	if !head.IsZero() {
		haves = append(haves, head)
	}
	cw := &countingWriter{}
	err = p.Send(ctx, updates, func(w io.Writer) error {
		cw.w = w
		stop := s.meter(cw)
		defer stop()
		st.commits, st.objects, err = pack(cw, haves)
		return err
	}, progress)
	st.bytes = cw.n
	if err != nil {
		return st, s.ended(err)
	}
	if _, _, err := s.expect("seeded"); err != nil {
		return st, err
	}
	return st, nil
}

// meter prints the push's progress every two seconds while it lasts.
func (s *session) meter(cw *countingWriter) (stop func()) {
	done := make(chan struct{})
	start := time.Now()
	go func() {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := cw.count()
				s.log.Printf("seeding: %s sent, %s/s", byteSize(n), byteSize(int64(float64(n)/time.Since(start).Seconds())))
			}
		}
	}()
	return func() { close(done) }
}

type seedStats struct {
	commits, objects int
	bytes            int64
}

// cutoverTimes are how long each step of a cutover took.
type cutoverTimes struct {
	stop, reset, start, downtime time.Duration
}

// cutover tells the script to stop, reset to want, and start, and times it.
func (s *session) cutover(ctx context.Context, want plumbing.Hash) (cutoverTimes, error) {
	var t cutoverTimes
	begin := time.Now()
	if _, err := fmt.Fprintf(s.proc.Stdin, "cutover %s\n", want); err != nil {
		return t, s.ended(fmt.Errorf("send cutover: %w", err))
	}
	if _, _, err := s.expect("stopping"); err != nil {
		return t, &HostError{Host: s.host.Address().Name(), Step: "stop", Err: err}
	}
	mark := time.Now()
	_, status, err := s.expect("stopped")
	if err != nil {
		return t, &HostError{Host: s.host.Address().Name(), Step: "stop", Err: err}
	}
	t.stop = time.Since(mark)
	mark = time.Now()
	if status != "0" && status != "-" {
		_ = s.wait() // the script has exited 1; its message is on the console
		return t, &HostError{Host: s.host.Address().Name(), Step: "stop", Err: fmt.Errorf("the stop command failed (exit status %s); the working copy was not changed", status)}
	}
	_, rstatus, err := s.expect("reset")
	if err != nil {
		return t, &HostError{Host: s.host.Address().Name(), Step: "reset", Err: err}
	}
	t.reset = time.Since(mark)
	mark = time.Now()
	_, sstatus, err := s.expect("started")
	if err != nil {
		return t, &HostError{Host: s.host.Address().Name(), Step: "start", Err: err}
	}
	t.start = time.Since(mark)
	t.downtime = time.Since(begin)
	werr := s.wait()
	switch {
	case rstatus != "0":
		return t, &HostError{Host: s.host.Address().Name(), Step: "reset", Err: fmt.Errorf("git reset --hard failed (exit status %s); the service was started again on the old working copy", rstatus)}
	case sstatus != "0":
		return t, &HostError{Host: s.host.Address().Name(), Step: "start", Err: fmt.Errorf("the start command failed (exit status %s) after the reset to %s", sstatus, want.String()[:7])}
	case werr != nil:
		return t, &HostError{Host: s.host.Address().Name(), Step: "cutover", Err: werr}
	}
	return t, ctx.Err()
}

type countingWriter struct {
	w  io.Writer
	mu sync.Mutex
	n  int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.mu.Lock()
	c.n += int64(n)
	c.mu.Unlock()
	return n, err
}

func (c *countingWriter) count() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}
