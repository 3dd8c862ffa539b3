package deploy

import (
	"bufio"
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/console"
	"github.com/gitric/gitric/gitrictasks/internal/receivepack"
	"github.com/gitric/gitric/gitrictasks/internal/remote"
	"github.com/gitric/gitric/gitrictasks/internal/shell"
)

// seedRef is where a push puts the commit on a host: a ref of gitric's own,
// so that seeding moves neither the checked-out branch nor the working copy.
const seedRef = "refs/gitric/seed"

// hostScript drives one host through a deploy in one session; see the
// comments at its top for the protocol. statusScript only reads.
var (
	//go:embed host.sh
	hostScript string
	//go:embed status.sh
	statusScript string
)

// scriptVars are the values a script run starts with.
type scriptVars struct {
	Path, Stop, Start, Check string
	Mode                     string
	Keep                     int
	CheckWait                time.Duration
	Lock                     string // owner description; empty: no lock
	Push                     bool
	Audit                    bool // report the audit log
	Colors                   map[string]map[string]string
	Sudo                     string
	Submodules               bool
}

// command returns the command line that runs body with vars and token.
func (v scriptVars) command(token, body string) string {
	// A path written as ~/x means the same as x: ssh starts in the home
	// directory, and a quoted ~ would not be expanded.
	path := strings.TrimPrefix(v.Path, "~/")
	if path == "~" {
		path = "."
	}
	flag := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	wait := int((v.CheckWait + time.Second - 1) / time.Second)
	mode := v.Mode
	if mode == "" {
		mode = ModeInPlace
	}
	// colorenv exports a colour's settings for its service commands.
	colorenv := "colorenv() { export GITRIC_COLOR=\"$1\"; case $1 in"
	for _, c := range []string{"blue", "green"} {
		var exports []string
		keys := make([]string, 0, len(v.Colors[c]))
		for k := range v.Colors[c] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			exports = append(exports, "export "+k+"="+shell.Quote(v.Colors[c][k]))
		}
		if len(exports) > 0 {
			colorenv += " " + c + ") " + strings.Join(exports, "; ") + " ;;"
		}
	}
	colorenv += " esac; }"
	script := strings.Join([]string{
		"T=" + shell.Quote(token),
		"P=" + shell.Quote(path),
		"MODE=" + shell.Quote(mode),
		"KEEP=" + strconv.Itoa(max(v.Keep, 2)),
		"STOP=" + shell.Quote(v.Stop),
		"START=" + shell.Quote(v.Start),
		"CHECK=" + shell.Quote(v.Check),
		"CHECKWAIT=" + strconv.Itoa(wait),
		"LOCK=" + shell.Quote(v.Lock),
		"PUSH=" + flag(v.Push),
		"AUDIT=" + flag(v.Audit),
		"SUBMODULES=" + flag(v.Submodules),
	}, " ") + "\n" + colorenv + "\n" + body
	if v.Sudo != "" {
		// -n: fail rather than ask for a password; -H: the user's home.
		return "sudo -n -H -u " + shell.Quote(v.Sudo) + " -- sh -c " + shell.Quote(script)
	}
	return script
}

func newToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "gitric-" + hex.EncodeToString(b[:])
}

// hostState is what a script reports about a host before any change.
type hostState struct {
	head    plumbing.Hash // zero: nothing deployed
	when    time.Time     // HEAD's commit time (status only)
	subject string        // HEAD's subject (status only)
	changed []string      // git status lines of tracked files changed on the host
	locked  string        // owner of a lock someone else holds
	audit   []AuditEntry
}

// session is one host's script run, from prepare to the last command.
type session struct {
	host  *remote.Host
	proc  *remote.Process
	out   *bufio.Reader
	token string
	log   *console.Writer
	// stderrDone is closed when the host's stderr has been copied out.
	stderrDone chan struct{}
	errCode    string
	stderr     tail
	sudo       string
	once       sync.Once
	waitErr    error
}

// tail keeps the last 2 KiB written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if n := len(t.buf) - 2048; n > 0 {
		t.buf = t.buf[n:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// openSession starts a script and reads the host's state: everything up to
// the "modified" line (host script) or to the end (status script).
func openSession(ctx context.Context, h *remote.Host, vars scriptVars, body string, log *console.Writer) (*session, hostState, error) {
	token := newToken()
	p, err := h.Start(ctx, "gitric host script", vars.command(token, body))
	if err != nil {
		return nil, hostState{}, err
	}
	s := &session{host: h, proc: p, out: bufio.NewReaderSize(p.Stdout, 64<<10), token: token, log: log, stderrDone: make(chan struct{}), sudo: vars.Sudo}
	go func() {
		defer close(s.stderrDone)
		_, _ = io.Copy(io.MultiWriter(log, &s.stderr), p.Stderr)
		log.Flush()
	}()
	var st hostState
	for {
		word, arg, err := s.next()
		if err != nil {
			if errors.Is(err, io.EOF) && body == statusScript {
				return s, st, s.wait()
			}
			return s, st, err
		}
		switch word {
		case "locked":
			st.locked = arg
		case "audit":
			var e AuditEntry
			if json.Unmarshal([]byte(arg), &e) == nil {
				st.audit = append(st.audit, e)
			}
		case "head":
			if arg != "none" {
				if !plumbing.IsHash(arg) {
					return s, st, fmt.Errorf("the host reported HEAD as %q, which is not a commit hash", arg)
				}
				st.head = plumbing.NewHash(arg)
			}
		case "commit":
			ts, subject, _ := strings.Cut(arg, " ")
			if n, err := strconv.ParseInt(ts, 10, 64); err == nil {
				st.when = time.Unix(n, 0)
			}
			st.subject = subject
		case "changed":
			st.changed = append(st.changed, arg)
		case "modified":
			if body == hostScript {
				return s, st, nil
			}
		default:
			return s, st, fmt.Errorf("protocol: unexpected %q from the host script", word)
		}
	}
}

// next reads the next protocol line. Lines without the token (a login
// script that prints something) are skipped; an "error" line ends the run.
func (s *session) next() (string, string, error) {
	for {
		line, err := s.out.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				if werr := s.ended(); werr != nil {
					return "", "", werr
				}
				return "", "", io.EOF
			}
			return "", "", err
		}
		rest, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), s.token+" ")
		if !ok {
			continue
		}
		word, arg, _ := strings.Cut(rest, " ")
		if word == "error" {
			s.errCode = arg
			return "", "", s.ended()
		}
		return word, arg, nil
	}
}

// expect reads the next protocol line and checks its word.
func (s *session) expect(want string) (string, error) {
	word, arg, err := s.next()
	if errors.Is(err, io.EOF) {
		return "", fmt.Errorf("the host script ended while gitric waited for %q", want)
	}
	if err != nil {
		return "", err
	}
	if word != want {
		return "", fmt.Errorf("protocol: the host script said %q while gitric waited for %q", word, want)
	}
	return arg, nil
}

// ended waits for the script to finish and returns the best explanation:
// what the script printed on stderr is already on the console.
func (s *session) ended() error {
	werr := s.wait()
	if s.errCode != "" {
		return &ScriptError{Code: s.errCode}
	}
	if s.sudo != "" && werr != nil {
		if out := s.stderr.String(); strings.Contains(out, "password is required") || strings.Contains(out, "a terminal is required") {
			return fmt.Errorf("%w: sudo asks for a password to run commands as %s on this host; gitric never types one. "+
				"Allow it without a password for the deploy user, e.g. in /etc/sudoers.d/gitric: <deploy user> ALL=(%s) NOPASSWD: ALL", ErrSudo, s.sudo, s.sudo)
		}
		if out := s.stderr.String(); strings.Contains(out, "unknown user") {
			return fmt.Errorf("%w: there is no user %s on this host", ErrSudo, s.sudo)
		}
	}
	return werr
}

// ErrSudo means the host's sudo refused to run gitric as the stage's user.
var ErrSudo = errors.New("sudo refused")

// wait ends the script's input (it exits, releasing its lock) and waits.
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
	Code string // nogit, path, init, seed, proto
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

// packFunc writes the pack for a push: what want needs beyond haves.
type packFunc func(w io.Writer, haves []plumbing.Hash) (commits, objects int, err error)

// seedStats describes a push.
type seedStats struct {
	commits, objects int
	bytes            int64
}

// refTarget is a ref a push sets on the host.
type refTarget struct {
	ref  string
	want plumbing.Hash
}

// push seeds the host: receive-pack's advertisement, then the updates of
// the targets' refs, with a pack of what the host lacks. A nil pack sends
// no update at all, which ends receive-pack (a host already on the commit).
func (s *session) push(ctx context.Context, targets []refTarget, head plumbing.Hash, pack packFunc, progress io.Writer) (seedStats, error) {
	conn := receivepack.Conn{In: s.proc.Stdin, Out: s.out}
	p, err := receivepack.Start(conn)
	if err != nil {
		if serr := s.ended(); serr != nil {
			return seedStats{}, serr
		}
		return seedStats{}, err
	}
	refs := p.Refs()
	var st seedStats
	var updates []receivepack.Update
	for _, t := range targets {
		if pack != nil && refs[t.ref] != t.want {
			updates = append(updates, receivepack.Update{Ref: t.ref, Old: refs[t.ref], New: t.want})
		}
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
		var perr error
		st.commits, st.objects, perr = pack(cw, haves)
		return perr
	}, progress)
	st.bytes = cw.count()
	if err != nil {
		if serr := s.ended(); serr != nil {
			return st, serr
		}
		return st, err
	}
	_, err = s.expect("seeded")
	return st, err
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

// cutoverResult is how a cutover went, step by step.
type cutoverResult struct {
	stop, reset, start, downtime time.Duration
	stopStatus, resetStatus      string
	startStatus, checkStatus     string
}

// failure names the step that failed, or returns nil.
func (r cutoverResult) failure(want plumbing.Hash) error {
	switch {
	case r.stopStatus == "p":
		return fmt.Errorf("could not check %s out on the host (see its message above); the service was not stopped", short(want))
	case r.stopStatus != "0" && r.stopStatus != "-":
		return fmt.Errorf("the stop command failed (exit status %s); the working copy was not changed", r.stopStatus)
	case r.resetStatus != "0":
		return fmt.Errorf("git reset --hard %s failed (exit status %s); the service was started again on the old working copy", short(want), r.resetStatus)
	case r.startStatus != "0":
		return fmt.Errorf("the start command failed (exit status %s) after the reset to %s", r.startStatus, short(want))
	case r.checkStatus != "0" && r.checkStatus != "-":
		return fmt.Errorf("the health check did not pass after the reset to %s", short(want))
	}
	return nil
}

// cutover tells the script to stop, reset to want, start and check, and
// times each step. The error is a broken session; a failing step is in the
// result (see failure).
func (s *session) cutover(want plumbing.Hash) (cutoverResult, error) {
	var r cutoverResult
	var begin time.Time
	if _, err := fmt.Fprintf(s.proc.Stdin, "cutover %s\n", want); err != nil {
		return r, fmt.Errorf("send cutover: %w", err)
	}
	steps := []struct {
		word   string
		status *string
		took   *time.Duration
	}{
		{"stopping", nil, nil},
		{"stopped", &r.stopStatus, &r.stop},
		{"reset", &r.resetStatus, &r.reset},
		{"started", &r.startStatus, &r.start},
	}
	mark := time.Now()
	for _, st := range steps {
		arg, err := s.expect(st.word)
		if err != nil {
			return r, err
		}
		if st.status != nil {
			*st.status, *st.took = arg, time.Since(mark)
		} else {
			begin = time.Now() // the downtime starts with the stop command
		}
		mark = time.Now()
		if st.word == "stopped" && arg != "0" && arg != "-" {
			return r, nil // the script goes no further
		}
	}
	r.downtime = time.Since(begin)
	arg, err := s.expect("checked")
	r.checkStatus = arg
	return r, err
}

// swap exchanges live and next (blue/green).
func (s *session) swap() error {
	if _, err := io.WriteString(s.proc.Stdin, "swap\n"); err != nil {
		return fmt.Errorf("send swap: %w", err)
	}
	status, err := s.expect("swapped")
	if err != nil {
		return err
	}
	if status != "0" {
		return fmt.Errorf("renaming the live and next symlinks failed (status %s)", status)
	}
	return nil
}

// logAudit appends e to the host's audit log.
func (s *session) logAudit(e AuditEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.proc.Stdin, "log %s\n", b); err != nil {
		return fmt.Errorf("write the audit log: %w", err)
	}
	_, err = s.expect("logged")
	return err
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
