package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/console"
	"github.com/gitric/gitric/gitrictasks/internal/hostscript"
	"github.com/gitric/gitric/gitrictasks/internal/receivepack"
	"github.com/gitric/gitric/gitrictasks/internal/remote"
	"github.com/gitric/gitric/gitrictasks/internal/stream"
)

// seedRef is where a push puts the commit on a host: a ref of gitric's own,
// so that seeding moves neither the checked-out branch nor the working copy.
const seedRef = "refs/gitric/seed"

// link is the engine's seam to one host: it starts a command there. An
// SSH connection is one; the tests also drive the host script through a
// local sh.
type link interface {
	start(ctx context.Context, cmd string) (*process, error)
	close()
}

// process is a command started through a link.
type process struct {
	stdin  io.WriteCloser
	stdout io.Reader
	stderr io.Reader
	wait   func() error
	kill   func() // ends it at once: its streams close
}

// input is a session's standard input. Its writes and its close are
// serialised: the close may come from another goroutine (an interrupt, a
// push aborted), and an SSH channel's CloseWrite races with a Write in
// progress. A close asked for during a write takes effect as that write
// returns, and every write after it fails; a write that never returns (a
// host that stopped reading) is the caller's to end, by killing the
// session.
type input struct {
	mu     sync.Mutex
	w      io.WriteCloser
	want   atomic.Bool // a close was asked for
	closed bool
	err    error // of the close
}

func (in *input) Write(p []byte) (int, error) {
	in.mu.Lock()
	n, err := 0, io.ErrClosedPipe
	if !in.closed {
		n, err = in.w.Write(p)
	}
	in.mu.Unlock()
	if in.want.Load() {
		_ = in.Close()
	}
	return n, err
}

// Close closes the input now, or, while a write is in progress, as soon
// as it returns; it does not wait for it.
func (in *input) Close() error {
	in.want.Store(true)
	if !in.mu.TryLock() {
		return nil // the write in progress closes it when it returns
	}
	defer in.mu.Unlock()
	if !in.closed {
		in.closed, in.err = true, in.w.Close()
	}
	return in.err
}

// sshLink is a link over one SSH connection.
type sshLink struct{ host *remote.Host }

func (l sshLink) start(ctx context.Context, cmd string) (*process, error) {
	p, err := l.host.Start(ctx, "gitric host script", cmd)
	if err != nil {
		return nil, err
	}
	// A closed session alone does not end the reads: sshd closes the
	// channel only once the command has ended (a build that goes on).
	// The connection is this session's: closing it ends them at once,
	// and the host's script goes on, as when the client dies.
	kill := func() {
		_ = p.Close()
		_ = l.host.Close()
	}
	return &process{stdin: p.Stdin, stdout: p.Stdout, stderr: p.Stderr, wait: p.Wait, kill: kill}, nil
}

func (l sshLink) close() { l.host.Close() }

// hostState is what a script reports about a host before any change.
type hostState struct {
	head      plumbing.Hash // zero: nothing deployed
	when      time.Time     // HEAD's commit time (status only)
	subject   string        // HEAD's subject (status only)
	changed   []string      // git status lines of tracked files changed on the host
	cutShort  string        // a cutover to this commit was killed halfway ("unknown": to a commit not recorded)
	locked    string        // owner of a lock someone else holds
	tookOver  string        // owner of a dead deploy's lock this run took over
	foreign   bool          // a repository gitric did not create (status)
	source    plumbing.Hash // for gitric's deploy commit at HEAD: its source commit
	tree      plumbing.Hash // and HEAD's tree
	releases  []release     // release mode: the releases on the host
	notEmpty  bool          // plan: the path is a non-empty directory, not gitric's
	untracked []string      // plan: the host's untracked files
	missing   []string      // plan: the shared files the host lacks
	unlocked  string        // the owner of the lock an unlock removed; "-": none
	audit     []AuditEntry
}

// release is a release directory on a host (release mode).
type release struct {
	name string // releases/<time>-<short>
	head plumbing.Hash
}

// sourceOf is the commit a host's state speaks of: the source of gitric's
// deploy commit, or the head itself.
func (st hostState) sourceOf() plumbing.Hash {
	if !st.source.IsZero() {
		return st.source
	}
	return st.head
}

// session is one run of the host script, from its hello to its end.
type session struct {
	proc  *process
	dec   *hostscript.Decoder
	token string
	log   *console.Writer
	sudo  string
	// stderrDone is closed when the host's stderr has been copied out.
	stderrDone chan struct{}
	stderr     stream.Tail

	timedOut atomic.Pointer[string] // what a wait was for when its bound ran out
	waitOnce sync.Once
	waitErr  error
}

// TimeoutError is a wait for a host that ran out of its bound.
type TimeoutError struct {
	What  string // what gitric waited for
	After time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%v: no answer from the host within %s while waiting for %s; the session was closed", ErrTimeout, e.After, e.What)
}

func (e *TimeoutError) Unwrap() error { return ErrTimeout }

// ErrTimeout means a host did not answer within a bound.
var ErrTimeout = errors.New("timed out")

// helloTimeout bounds the login: from the session's start to the script's
// first line (a login script that waits for input ends here).
const helloTimeout = 30 * time.Second

// stepTimeout bounds a host step that runs no user command (the state
// report, the untracked check, an audit line).
const stepTimeout = 2 * time.Minute

// openSession starts the host script for vars and reads the host's state:
// everything up to the "ready" line.
func openSession(ctx context.Context, l link, vars hostscript.Vars, log *console.Writer, secrets map[string]string) (*session, hostState, error) {
	token := hostscript.NewToken()
	p, err := l.start(ctx, hostscript.Command(vars.Sudo))
	if err != nil {
		return nil, hostState{}, err
	}
	p.stdin = &input{w: p.stdin}
	s := &session{proc: p, dec: hostscript.NewDecoder(p.stdout, token), token: token, log: log, sudo: vars.Sudo, stderrDone: make(chan struct{}), stderr: stream.Tail{Max: 2 << 10}}
	go func() {
		defer close(s.stderrDone)
		out := newMasker(io.MultiWriter(log, &s.stderr), secrets)
		_, _ = io.Copy(out, p.stderr)
		if m, ok := out.(*masker); ok {
			m.Flush()
		}
		log.Flush()
	}()
	var st hostState
	err = s.bounded("the host script to start", helloTimeout, func() error {
		if _, err := io.WriteString(p.stdin, vars.Script(token)); err != nil {
			return s.noScript(err)
		}
		if err := s.dec.Hello(); err != nil {
			return s.noScript(err)
		}
		return nil
	})
	if err != nil {
		return s, st, err
	}
	err = s.bounded("the host's state", stepTimeout, func() error {
		head := false // every state report names the head before ready
		for {
			l, err := s.next("the host's state")
			if err != nil {
				return err
			}
			switch l.Word {
			case hostscript.WordLocked:
				st.locked = l.Arg
			case hostscript.WordTookOver:
				st.tookOver = l.Arg
			case hostscript.WordForeign:
				st.foreign = true
			case hostscript.WordNotEmpty:
				st.notEmpty = true
			case hostscript.WordUntracked:
				st.untracked = append(st.untracked, l.Arg)
			case hostscript.WordMissing:
				st.missing = append(st.missing, l.Arg)
			case hostscript.WordUnlocked:
				st.unlocked = l.Arg
				return nil
			case hostscript.WordAudit:
				var e AuditEntry
				if json.Unmarshal([]byte(l.Arg), &e) == nil {
					st.audit = append(st.audit, e)
				}
			case hostscript.WordHead:
				head = true
				if l.Arg != "none" {
					if !plumbing.IsHash(l.Arg) {
						return &hostscript.ProtocolError{Want: "a commit hash after head", Got: []byte(l.Arg)}
					}
					st.head = plumbing.NewHash(l.Arg)
				}
			case hostscript.WordSource:
				src, tree, _ := strings.Cut(l.Arg, " ")
				if plumbing.IsHash(src) {
					st.source = plumbing.NewHash(src)
				}
				if plumbing.IsHash(tree) {
					st.tree = plumbing.NewHash(tree)
				}
			case hostscript.WordRelease:
				name, head, _ := strings.Cut(l.Arg, " ")
				r := release{name: name}
				if plumbing.IsHash(head) {
					r.head = plumbing.NewHash(head)
				}
				st.releases = append(st.releases, r)
			case hostscript.WordCommit:
				ts, subject, _ := strings.Cut(l.Arg, " ")
				if n, err := strconv.ParseInt(ts, 10, 64); err == nil {
					st.when = time.Unix(n, 0)
				}
				st.subject = subject
			case hostscript.WordChanged:
				st.changed = append(st.changed, l.Arg)
			case hostscript.WordCutShort:
				st.cutShort = l.Arg
			case hostscript.WordReady:
				if !head {
					return &hostscript.ProtocolError{Want: `"head" before "ready"`, Got: []byte(l.Word)}
				}
				return nil
			default:
				return &hostscript.ProtocolError{Want: "the host's state", Got: []byte(l.Word)}
			}
		}
	})
	return s, st, err
}

// noScript explains a session that ended (or broke) before the script ran:
// a shell that cannot run it, a forced command, sudo asking for a password.
func (s *session) noScript(err error) error {
	var pe *hostscript.ProtocolError
	switch {
	case errors.As(err, &pe) && !pe.EOF:
		return err
	case pe == nil:
		// The script could not be sent: the host ended the session first.
		// What it printed is still to be read (to its end, or until the
		// bound of the caller's wait kills the session), before wait drops
		// the rest.
		_ = s.dec.Hello()
	}
	werr := s.wait()
	out := strings.TrimSpace(s.dec.Before() + s.stderr.String())
	if s.sudo != "" && werr != nil {
		if strings.Contains(out, "password is required") || strings.Contains(out, "a terminal is required") {
			return fmt.Errorf("%w: sudo asks for a password to run commands as %s on this host; gitric never types one. "+
				"Allow it without a password for the deploy user, e.g. in /etc/sudoers.d/gitric: <deploy user> ALL=(%s) NOPASSWD: ALL", ErrSudo, s.sudo, s.sudo)
		}
		if strings.Contains(out, "unknown user") {
			return fmt.Errorf("%w: there is no user %s on this host", ErrSudo, s.sudo)
		}
	}
	var ee *remote.ExitError
	if errors.As(werr, &ee) && ee.Status == hostscript.ExitConsumed {
		return fmt.Errorf("%w: the login shell read part of the script gitric sent on standard input (a login script such as ~/.bashrc that reads stdin?); nothing was changed", ErrNoShell)
	}
	if errors.As(werr, &ee) && ee.Status == hostscript.ExitNotBootstrapped {
		return fmt.Errorf("%w: the login shell did not run gitric's command: another shell read the script gitric sent on standard input as its own input (a login script such as ~/.bashrc that execs a shell?); nothing was changed", ErrNoShell)
	}
	if out == "" {
		out = "nothing"
	}
	why := err.Error()
	if werr != nil {
		why = werr.Error()
	}
	return fmt.Errorf("%w: the host did not run gitric's script under /bin/sh (%s). It printed: %s. "+
		"The login shell must be able to run a command (not /bin/false or nologin), and no forced command (command= in authorized_keys, ForceCommand) may replace it",
		ErrNoShell, why, printableText(clip(out, 400)))
}

// ErrNoShell means the host gave no shell that could run the host script.
var ErrNoShell = errors.New("the host did not run the host script")

// ErrSudo means the host's sudo refused to run gitric as the stage's user.
var ErrSudo = errors.New("sudo refused")

// bounded runs fn, closing the session if it takes longer than d: the read
// under way then fails, and the error says what was awaited and how long.
func (s *session) bounded(what string, d time.Duration, fn func() error) error {
	t := time.AfterFunc(d, func() {
		s.timedOut.Store(&what)
		s.proc.kill()
	})
	err := fn()
	if !t.Stop() && err != nil {
		if w := s.timedOut.Load(); w != nil {
			return &TimeoutError{What: *w, After: d}
		}
	}
	return err
}

// next reads the next protocol line; an error line ends the run.
func (s *session) next(want string) (hostscript.Line, error) {
	l, err := s.dec.Next(want)
	if err != nil {
		var pe *hostscript.ProtocolError
		if errors.As(err, &pe) && pe.EOF {
			if werr := s.wait(); werr != nil {
				return l, fmt.Errorf("%w (%v)", err, werr)
			}
		}
		return l, err
	}
	return l, nil
}

func (s *session) expect(word string) (string, error) {
	l, err := s.next(strconv.Quote(word))
	if err != nil {
		return "", err
	}
	if l.Word != word {
		return "", &hostscript.ProtocolError{Want: strconv.Quote(word), Got: []byte(l.Word + " " + l.Arg)}
	}
	return l.Arg, nil
}

// send writes one command line to the script.
func (s *session) send(words ...string) error {
	if err := hostscript.Send(s.proc.stdin, s.token, words...); err != nil {
		return fmt.Errorf("send %s to the host script: %w", words[0], err)
	}
	return nil
}

// wait ends the script's input (it exits, releasing its lock) and waits.
func (s *session) wait() error {
	s.waitOnce.Do(func() {
		_ = s.proc.stdin.Close()
		_, _ = io.Copy(io.Discard, s.dec.Reader())
		<-s.stderrDone
		s.waitErr = s.proc.wait()
	})
	return s.waitErr
}

// abandon closes the session without waiting: the script finishes its
// step on the host by itself and releases its lock.
func (s *session) abandon() { s.proc.kill() }

// packFunc writes the pack for a push: what want needs beyond haves. It
// calls estimate with the pack's expected size before the first byte.
type packFunc func(w io.Writer, haves []plumbing.Hash, estimate func(int64)) (commits, objects int, err error)

// seedStats describes a push.
type seedStats struct {
	commits, objects int
	bytes            int64
	untracked        []string // host files the new commit would overwrite
	missing          []string // shared files the host lacks
}

// refTarget is a ref a push sets on the host.
type refTarget struct {
	ref  string
	want plumbing.Hash
}

// idleTimeout bounds a push that makes no progress: the host neither takes
// bytes nor answers.
const idleTimeout = 2 * time.Minute

// push seeds the host: receive-pack's advertisement, then the updates of
// the targets' refs, with a pack of what the host lacks. A nil pack sends
// no update at all, which ends receive-pack (a host already on the commit,
// or refused). The script then reports the seed and the untracked files
// the new commit would overwrite.
func (s *session) push(ctx context.Context, targets []refTarget, head plumbing.Hash, pack packFunc, progress io.Writer) (seedStats, error) {
	var st seedStats
	cw := &stream.Counter{W: s.proc.stdin}
	stop := s.watchProgress(cw)
	defer stop()
	conn := receivepack.Conn{In: cw, Out: s.dec.Reader(), Abort: func() { _ = s.proc.stdin.Close() }}
	p, err := receivepack.Start(conn)
	if err != nil {
		return st, s.pushError(err)
	}
	refs := p.Refs()
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
	start := cw.Count()
	// The meter lasts until the host has the pack: once it is all handed
	// to the connection, a slow link or a big pack can keep the host busy
	// for a while yet.
	var total atomic.Int64
	var written atomic.Bool
	stopMeter := func() {}
	err = p.Send(ctx, updates, func(w io.Writer) error {
		stopMeter = s.meter(cw, &total, &written, meterEvery(s.log.Live()))
		var perr error
		st.commits, st.objects, perr = pack(w, haves, total.Store)
		written.Store(true)
		return perr
	}, progress)
	stopMeter()
	st.bytes = cw.Count() - start
	if err != nil {
		return st, s.pushError(err)
	}
	err = s.bounded("the host to store the pack", stepTimeout, func() error {
		arg, err := s.expect(hostscript.WordSeeded)
		if err != nil {
			return err
		}
		rc, seed, _ := strings.Cut(arg, " ")
		if rc != "0" {
			return fmt.Errorf("git receive-pack failed on the host (exit status %s); see its message above", rc)
		}
		if len(updates) > 0 && seed != targets[0].want.String() {
			return fmt.Errorf("the host's git did not store %s (refs/gitric/seed is %s)", short(targets[0].want), seed)
		}
		st.untracked, st.missing, err = s.untrackedList()
		return err
	})
	return st, err
}

// untrackedList reads untracked and missing lines up to "verified".
func (s *session) untrackedList() (untracked, missing []string, err error) {
	const want = `"untracked", "missing" or "verified"`
	for {
		l, err := s.next(want)
		if err != nil {
			return untracked, missing, err
		}
		switch l.Word {
		case hostscript.WordUntracked:
			untracked = append(untracked, l.Arg)
		case hostscript.WordMissing:
			missing = append(missing, l.Arg)
		case hostscript.WordVerified:
			return untracked, missing, nil
		default:
			return untracked, missing, &hostscript.ProtocolError{Want: want, Got: []byte(l.Word)}
		}
	}
}

// verify asks which untracked files checking want out would overwrite,
// and which shared files the host lacks.
func (s *session) verify(want plumbing.Hash) (untracked, missing []string, err error) {
	err = s.bounded("the host's untracked files", stepTimeout, func() error {
		if err := s.send(hostscript.CmdVerify, want.String()); err != nil {
			return err
		}
		var err error
		untracked, missing, err = s.untrackedList()
		return err
	})
	return untracked, missing, err
}

// prepare has the host make the release of want (release mode, phase
// one): check it out beside the live one, link the shared paths, build.
// With reuse, only an existing complete release will do (a rollback).
func (s *session) prepare(want, source plumbing.Hash, reuse bool, build time.Duration) (release, built string, err error) {
	how := "new"
	if reuse {
		how = "reuse"
	}
	err = s.bounded("the release to be prepared", build+stepTimeout, func() error {
		if err := s.send(hostscript.CmdPrepare, want.String(), how, source.String()); err != nil {
			return err
		}
		// "built" comes first, unless the checkout failed before any build.
		l, err := s.next(`"built" or "prepared"`)
		if err != nil {
			return err
		}
		built = "-"
		if l.Word == hostscript.WordBuilt {
			built = l.Arg
			if l, err = s.next(`"prepared"`); err != nil {
				return err
			}
		}
		if l.Word != hostscript.WordPrepared {
			return &hostscript.ProtocolError{Want: `"prepared"`, Got: []byte(l.Word)}
		}
		arg := l.Arg
		status, rel, _ := strings.Cut(arg, " ")
		if status != "0" {
			return errPrepare
		}
		release = rel
		return nil
	})
	return release, built, err
}

var errPrepare = errors.New("the release could not be prepared")

// discard removes the release prepare made, when no host is cut over.
func (s *session) discard() error {
	return s.bounded("the release to be removed", stepTimeout, func() error {
		if err := s.send(hostscript.CmdDiscard); err != nil {
			return err
		}
		_, err := s.expect(hostscript.WordDiscarded)
		return err
	})
}

// once runs the stage's run-once command on this host.
func (s *session) runOnce(want, source plumbing.Hash, timeout time.Duration) (string, error) {
	var status string
	err := s.bounded("the run-once command", timeout+15*time.Second, func() error {
		if err := s.send(hostscript.CmdOnce, want.String(), source.String()); err != nil {
			return err
		}
		var err error
		status, err = s.expect(hostscript.WordOnced)
		return err
	})
	return status, err
}

// pushError prefers the script's account of a failed push, then git's.
func (s *session) pushError(err error) error {
	var se *hostscript.ScriptError
	if errors.As(err, &se) {
		return err
	}
	if w := s.timedOut.Load(); w != nil {
		return &TimeoutError{What: *w, After: idleTimeout}
	}
	// A dead connection explains a broken stream better than the stream.
	var werr error
	_ = s.bounded("the host script to end", 10*time.Second, func() error { werr = s.wait(); return werr })
	if errors.Is(werr, remote.ErrConnectionLost) {
		return werr
	}
	return err
}

// watchProgress closes the session when the push makes no progress for
// idleTimeout (keepalives catch a dead connection; this, a live one whose
// other end stopped reading).
func (s *session) watchProgress(cw *stream.Counter) (stop func()) {
	done := make(chan struct{})
	go func() {
		last, since := int64(-1), time.Now()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if n := cw.Count(); n != last {
					last, since = n, time.Now()
				} else if time.Since(since) > idleTimeout {
					what := "the host to take the pack"
					s.timedOut.Store(&what)
					s.proc.kill()
					return
				}
			}
		}
	}()
	return func() { close(done) }
}

// meterEvery is how often the push's meter shows: every second on a
// terminal (live, redrawn in place), every five seconds elsewhere.
func meterEvery(live bool) time.Duration {
	if live {
		return time.Second
	}
	return 5 * time.Second
}

// meter shows the push's progress every so often while it lasts: bytes
// sent, rate and the expected total (nothing in JSON mode); once written is
// set (the whole pack handed to the connection), that the host is still
// taking it.
func (s *session) meter(cw *stream.Counter, total *atomic.Int64, written *atomic.Bool, every time.Duration) (stop func()) {
	done := make(chan struct{})
	start, base := time.Now(), cw.Count()
	go func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				s.log.Progress("")
				return
			case <-t.C:
				n := cw.Count() - base
				if written.Load() {
					s.log.Progress(fmt.Sprintf("seeding: %s sent; the host is storing it", byteSize(n)))
					continue
				}
				msg := fmt.Sprintf("seeding: %s", byteSize(n))
				if all := total.Load(); all > 0 {
					msg += fmt.Sprintf(" of ~%s (%d%%)", byteSize(all), min(100, n*100/all))
				}
				s.log.Progress(msg + fmt.Sprintf(", %s/s", byteSize(int64(float64(n)/time.Since(start).Seconds()))))
			}
		}
	}()
	return func() { close(done) }
}

// cutoverResult is how a cutover went, step by step.
type cutoverResult struct {
	stop, reset, build, start, downtime  time.Duration
	stopStatus, resetStatus, buildStatus string
	startStatus, checkStatus             string
	overlap                              bool  // started before the old one stopped
	httpErr                              error // why the HTTP check failed
}

// timeouts are the bounds of the service commands, for messages.
type timeouts struct{ stop, start, check, build time.Duration }

// failure names the step that failed, or returns nil.
func (r cutoverResult) failure(want plumbing.Hash, t timeouts) error {
	switch {
	case r.stopStatus == "p":
		return fmt.Errorf("could not check %s out on the host (see its message above); the service was not stopped", short(want))
	case r.stopStatus == "t":
		return fmt.Errorf("%w: the stop command did not finish within %s and was killed; the working copy was not changed, and the service was started again", ErrCommandTimeout, t.stop)
	case r.stopStatus != "0" && r.stopStatus != "-":
		return fmt.Errorf("the stop command failed (exit status %s); the working copy was not changed, and the service was started again", r.stopStatus)
	case r.resetStatus == "f":
		return fmt.Errorf("could not check %s out on the host (a full disk?); the working copy was put back on the old commit and the service started there", short(want))
	case r.resetStatus == "x":
		return fmt.Errorf("%w: could not check %s out on the host, nor put the old commit back: the working copy is mixed, and the service was NOT started. Free the disk (or fix what the host's message above says) and deploy again", ErrMixed, short(want))
	case r.resetStatus != "0" && !(r.overlap && r.resetStatus == "-"):
		return fmt.Errorf("checking %s out failed (status %s)", short(want), r.resetStatus)
	case r.buildStatus == "t":
		return fmt.Errorf("%w: the build did not finish within %s and was killed, after the switch to %s", ErrCommandTimeout, t.build, short(want))
	case r.buildStatus != "0" && r.buildStatus != "-":
		return fmt.Errorf("the build failed (exit status %s) after the switch to %s; see its last lines above", r.buildStatus, short(want))
	case r.startStatus == "t":
		return fmt.Errorf("%w: the start command did not finish within %s and was killed, after the switch to %s", ErrCommandTimeout, t.start, short(want))
	case r.startStatus != "0" && r.startStatus != "-":
		return fmt.Errorf("the start command failed (exit status %s) after the switch to %s", r.startStatus, short(want))
	case r.checkStatus == "t":
		return fmt.Errorf("%w: the health check did not pass within %s (its last attempt was killed) after the switch to %s", ErrCommandTimeout, t.check, short(want))
	case r.checkStatus != "0" && r.checkStatus != "-" && r.httpErr != nil:
		return fmt.Errorf("the HTTP check failed after the start of %s: %w", short(want), r.httpErr)
	case r.checkStatus != "0" && r.checkStatus != "-":
		return fmt.Errorf("the health check did not pass within %s after the switch to %s", t.check, short(want))
	}
	return nil
}

// moved says whether the host's working copy is on the new commit.
func (r cutoverResult) moved() bool {
	return r.resetStatus == "0" && (r.stopStatus == "0" || r.stopStatus == "-" || r.overlap)
}

var (
	// ErrCommandTimeout means a service command ran past its timeout and
	// was killed.
	ErrCommandTimeout = errors.New("command timed out")
	// ErrMixed means a host's working copy is neither on the old commit
	// nor on the new one.
	ErrMixed = errors.New("working copy left mixed")
)

// auditHead is what gitric tells the host to put at the start of the audit
// line it writes at the switch.
type auditHead struct {
	Who      string `json:"who"`
	Action   Action `json:"action"`
	From     string `json:"from,omitempty"`
	To       string `json:"to,omitempty"`
	Message  string `json:"message,omitempty"`
	Deployed string `json:"deployed,omitempty"`
	Cutover  string `json:"cutover,omitempty"` // "overlap"
}

func (a auditHead) prefix() string {
	b, _ := json.Marshal(a)
	return strings.TrimSuffix(string(b), "}")
}

// cutover tells the script to stop, switch to want, build, start and
// check, and times each step. The host writes the audit line (ok is its
// result if every step passes). The script says each step's word once, in
// the order of its mode; a "checkhttp" on the way is answered with the
// verdict of httpCheck. The error is a broken session; a failing step is
// in the result (see failure).
func (s *session) cutover(want plumbing.Hash, ok Outcome, audit auditHead, t timeouts, overall time.Duration, httpCheck func() error) (cutoverResult, error) {
	var r cutoverResult
	source := audit.To
	if source == "" {
		source = want.String()
	}
	if err := s.send(hostscript.CmdCutover, want.String(), string(ok), source, audit.prefix()); err != nil {
		return r, err
	}
	const grace = 15 * time.Second // the kill after a timeout, and the network
	bounds := map[string]time.Duration{
		hostscript.WordStopping: overall, hostscript.WordStopped: t.stop + grace,
		hostscript.WordReset: overall, hostscript.WordBuilt: t.build + grace,
		hostscript.WordStarted: t.start + grace, hostscript.WordChecked: t.check + grace,
	}
	status := map[string]*string{
		hostscript.WordStopped: &r.stopStatus, hostscript.WordReset: &r.resetStatus, hostscript.WordBuilt: &r.buildStatus,
		hostscript.WordStarted: &r.startStatus, hostscript.WordChecked: &r.checkStatus,
	}
	took := map[string]*time.Duration{
		hostscript.WordStopped: &r.stop, hostscript.WordReset: &r.reset, hostscript.WordBuilt: &r.build, hostscript.WordStarted: &r.start,
	}
	seen := map[string]time.Time{}
	mark := time.Now()
	const step = "the next step of the cutover"
	for len(seen) < len(bounds) {
		// The bound is the longest step still to come.
		var bound time.Duration
		for w, b := range bounds {
			if _, done := seen[w]; !done {
				bound = max(bound, b)
			}
		}
		var l hostscript.Line
		err := s.bounded(step, bound, func() error {
			var err error
			l, err = s.next(step)
			return err
		})
		if err != nil {
			return r, err
		}
		now := time.Now()
		if l.Word == hostscript.WordCheckHTTP {
			r.httpErr = httpCheck()
			verdict := "0"
			if r.httpErr != nil {
				verdict = "1"
			}
			if err := s.send(hostscript.CmdHTTP, verdict); err != nil {
				return r, err
			}
			continue
		}
		if _, ok := bounds[l.Word]; !ok {
			return r, &hostscript.ProtocolError{Want: step, Got: []byte(l.Word)}
		}
		if _, dup := seen[l.Word]; dup {
			return r, &hostscript.ProtocolError{Want: step + " (once each)", Got: []byte(l.Word)}
		}
		seen[l.Word] = now
		if p := status[l.Word]; p != nil {
			*p = l.Arg
		}
		if p := took[l.Word]; p != nil {
			*p = now.Sub(mark)
		}
		if l.Word == hostscript.WordStarted {
			if begin, ok := seen[hostscript.WordStopping]; ok {
				r.downtime = now.Sub(begin) // from the stop command's start
			} else {
				r.overlap = true // the new one started before the old one stopped
			}
		}
		mark = now
	}
	if r.overlap {
		r.stop = seen[hostscript.WordStopped].Sub(seen[hostscript.WordStopping])
	}
	return r, nil
}

// swap exchanges live and next (blue/green).
func (s *session) swap(audit auditHead) error {
	var status string
	err := s.bounded("the swap", stepTimeout, func() error {
		if err := s.send(hostscript.CmdSwap, audit.prefix()); err != nil {
			return err
		}
		var err error
		status, err = s.expect(hostscript.WordSwapped)
		return err
	})
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
	return s.bounded("the audit log", stepTimeout, func() error {
		if err := s.send(hostscript.CmdLog, string(b)); err != nil {
			return err
		}
		_, err := s.expect(hostscript.WordLogged)
		return err
	})
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
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
