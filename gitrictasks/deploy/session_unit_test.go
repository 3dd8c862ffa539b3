package deploy

import (
	"context"
	"errors"
	"io"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/console"
	"github.com/gitric/gitric/gitrictasks/internal/hostscript"
	"github.com/gitric/gitric/gitrictasks/internal/remote"
	"github.com/gitric/gitric/gitrictasks/internal/stream"
)

// scriptedLink is a host whose "script" prints crafted bytes: out, with
// TOKEN replaced by the run's protocol token (read from the script gitric
// sends), then ends with exit (or, with hold, stays until gitric closes
// its input). It records what gitric wrote after the script.
type scriptedLink struct {
	out, stderr string
	exit        error
	hold        bool
	stdin       *stdinRecorder
}

var tokenLine = regexp.MustCompile(`(?m)^T='?(gitric-[0-9a-f]+)'?$`)

// stdinRecorder is the script's standard input: it never blocks, and it
// learns the token as soon as the script's values arrive.
type stdinRecorder struct {
	mu     sync.Mutex
	buf    strings.Builder
	token  string
	ready  chan struct{} // closed when the token is known or stdin closed
	once   sync.Once
	closed bool
}

func (r *stdinRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, io.ErrClosedPipe
	}
	r.buf.Write(p)
	if r.token == "" {
		if m := tokenLine.FindStringSubmatch(r.buf.String()); m != nil {
			r.token = m[1]
			r.once.Do(func() { close(r.ready) })
		}
	}
	return len(p), nil
}

func (r *stdinRecorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	r.once.Do(func() { close(r.ready) })
	return nil
}

// commands are the protocol lines gitric sent after the script.
func (r *stdinRecorder) commands() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, after, _ := strings.Cut(r.buf.String(), "\n#gitric-end "+r.token+"\n")
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(after), "\n") {
		if l != "" {
			out = append(out, strings.TrimPrefix(l, r.token+" "))
		}
	}
	return out
}

func (l *scriptedLink) start(ctx context.Context, cmd string) (*process, error) {
	if cmd != hostscript.Command("") {
		return nil, errors.New("not the bootstrap command")
	}
	l.stdin = &stdinRecorder{ready: make(chan struct{})}
	pr, pw := io.Pipe()
	done := make(chan struct{})
	killed := make(chan struct{})
	var killOnce sync.Once
	go func() {
		defer close(done)
		<-l.stdin.ready
		l.stdin.mu.Lock()
		token := l.stdin.token
		l.stdin.mu.Unlock()
		_, _ = io.WriteString(pw, strings.ReplaceAll(l.out, "TOKEN", token))
		if l.hold {
			for {
				l.stdin.mu.Lock()
				closed := l.stdin.closed
				l.stdin.mu.Unlock()
				if closed {
					break
				}
				select {
				case <-killed:
				case <-time.After(5 * time.Millisecond):
					continue
				}
				break
			}
		}
		_ = pw.Close()
	}()
	return &process{
		stdin:  l.stdin,
		stdout: pr,
		stderr: strings.NewReader(l.stderr),
		wait:   func() error { <-done; return l.exit },
		kill: func() {
			killOnce.Do(func() { close(killed) })
			_ = pr.CloseWithError(io.ErrClosedPipe)
		},
	}, nil
}

func (l *scriptedLink) close() {}

// open runs openSession against l; the session is ended with the test.
func (l *scriptedLink) open(t *testing.T) (*session, hostState, error, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	con := console.New(out, console.Options{}, "h1")
	vars := hostscript.Vars{Action: hostscript.Deploy, Path: "app"}
	s, st, err := openSession(context.Background(), l, vars, con.Host("h1"), nil)
	if s != nil {
		t.Cleanup(s.abandon)
	}
	return s, st, err, out
}

func exit(n int) error { return &remote.ExitError{Host: "h1", Cmd: "gitric host script", Status: n} }

// printable: no control byte (but newline and tab), no invalid UTF-8.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return false
		}
	}
	return true
}

const (
	sha1 = "1111111111111111111111111111111111111111"
	sha2 = "2222222222222222222222222222222222222222"
	sha3 = "3333333333333333333333333333333333333333"
)

const binaryJunk = "\x00\xff\xfe\x1b[2J\x1b]0;pwned\x07\r\x08junk"

func TestUnitOpenSessionDecoding(t *testing.T) {
	t.Parallel()
	var (
		protocol = func(err error) bool { var pe *hostscript.ProtocolError; return errors.As(err, &pe) && !pe.EOF }
		eof      = func(err error) bool { var pe *hostscript.ProtocolError; return errors.As(err, &pe) && pe.EOF }
		script   = func(code string) func(error) bool {
			return func(err error) bool { var se *hostscript.ScriptError; return errors.As(err, &se) && se.Code == code }
		}
		noShell = func(err error) bool { return errors.Is(err, ErrNoShell) }
	)
	for _, c := range []struct {
		name   string
		link   scriptedLink
		is     func(error) bool
		in     string // the error's text holds this
		stderr string
	}{
		{name: "garbage after hello", link: scriptedLink{out: "TOKEN hello 2\nnot a protocol line\n", hold: true}, is: protocol, in: "not a protocol line"},
		{name: "binary junk after hello", link: scriptedLink{out: "TOKEN hello 2\n" + binaryJunk + "\n", hold: true}, is: protocol},
		{name: "binary junk in a word", link: scriptedLink{out: "TOKEN hello 2\nTOKEN hea\x1b[31md\x00 " + sha1 + "\n", hold: true}, is: protocol},
		{name: "an unknown word", link: scriptedLink{out: "TOKEN hello 2\nTOKEN head none\nTOKEN frobnicate x\n", hold: true}, is: protocol, in: "frobnicate"},
		{name: "head without a hash", link: scriptedLink{out: "TOKEN hello 2\nTOKEN head\n", hold: true}, is: protocol, in: "a commit hash after head"},
		{name: "head with a bad hash", link: scriptedLink{out: "TOKEN hello 2\nTOKEN head 12345\n", hold: true}, is: protocol, in: "12345"},
		{name: "ready without head", link: scriptedLink{out: "TOKEN hello 2\nTOKEN ready\n", hold: true}, is: protocol, in: "head"},
		{name: "an error word", link: scriptedLink{out: "TOKEN hello 2\nTOKEN error foreign /srv/app is a git repository that gitric did not create\n", hold: true},
			is: script("foreign"), in: "did not create"},
		{name: "an error word without a message", link: scriptedLink{out: "TOKEN hello 2\nTOKEN error nogit\n", hold: true}, is: script("nogit")},
		{name: "EOF after hello", link: scriptedLink{out: "TOKEN hello 2\n", exit: exit(1)}, is: eof, in: "exit status 1"},
		{name: "EOF inside a line", link: scriptedLink{out: "TOKEN hello 2\nTOKEN hea", exit: exit(1)}, is: protocol, in: "whole line"},
		{name: "EOF inside the state", link: scriptedLink{out: "TOKEN hello 2\nTOKEN head none\n"}, is: eof},
		{name: "an overlong line", link: scriptedLink{out: "TOKEN hello 2\nTOKEN changed " + strings.Repeat("x", 64<<10) + "\n", hold: true}, is: protocol},
		{name: "a shell that refuses", link: scriptedLink{out: "This account is currently not available.\n", exit: exit(1)}, is: noShell, in: "This account is currently not available."},
		{name: "a forced command's binary junk", link: scriptedLink{out: binaryJunk + "\n", stderr: binaryJunk, exit: exit(1)}, is: noShell, in: "junk"},
		{name: "a login script that ate the script", link: scriptedLink{exit: exit(hostscript.ExitConsumed)}, is: noShell, in: "read part of the script"},
		{name: "nothing at all", link: scriptedLink{exit: exit(127)}, is: noShell, in: "It printed: nothing"},
		{name: "another protocol version", link: scriptedLink{out: "TOKEN hello 1\n", exit: exit(1)}, is: func(err error) bool { return errors.Is(err, hostscript.ErrProtocol) }, in: "version"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			l := c.link
			_, _, err, _ := l.open(t)
			if err == nil {
				t.Fatal("no error")
			}
			if !c.is(err) {
				t.Errorf("wrong kind of error (%T): %v", err, err)
			}
			if !strings.Contains(err.Error(), c.in) {
				t.Errorf("error %q lacks %q", err, c.in)
			}
			if !printable(err.Error()) {
				t.Errorf("raw bytes in the error: %q", err.Error())
			}
		})
	}
}

func TestUnitOpenSessionState(t *testing.T) {
	t.Parallel()
	l := scriptedLink{hold: true, out: "motd: welcome\x1b[0m\nTOKEN hello 2\n" +
		"TOKEN tookover pid=1 boot=b old@ci\n" +
		`TOKEN audit {"who":"a@b","action":"deploy","to":"` + sha1 + `","result":"ok","time":"2024-01-02T03:04:05Z"}` + "\n" +
		"TOKEN audit not json\n" +
		"TOKEN head " + sha2 + "\n" +
		"TOKEN source " + sha1 + " " + sha3 + "\n" +
		"TOKEN changed  M index.html\n" +
		"TOKEN changed  D old.txt\n" +
		"TOKEN ready\n"}
	_, st, err, _ := l.open(t)
	if err != nil {
		t.Fatal(err)
	}
	if st.head.String() != sha2 || st.source.String() != sha1 || st.tree.String() != sha3 || st.sourceOf().String() != sha1 {
		t.Errorf("head %s source %s tree %s", st.head, st.source, st.tree)
	}
	if st.tookOver != "pid=1 boot=b old@ci" {
		t.Errorf("tookOver %q", st.tookOver)
	}
	if len(st.changed) != 2 || st.changed[0] != " M index.html" {
		t.Errorf("changed %q", st.changed)
	}
	if len(st.audit) != 1 || st.audit[0].To != sha1 || st.audit[0].Result != OutcomeOK {
		t.Errorf("audit %+v (the line that is not JSON is skipped)", st.audit)
	}
}

// Up to the host's ready, gitric writes nothing after the script: the
// bootstrap's head -c may read ahead of what it prints (busybox's does),
// so nothing may be there to read before the script has spoken.
func TestUnitNothingAfterTheScriptBeforeReady(t *testing.T) {
	t.Parallel()
	l := scriptedLink{hold: true, out: "TOKEN hello 2\nTOKEN head " + sha1 + "\nTOKEN changed  M index.html\nTOKEN ready\n"}
	if _, _, err, _ := l.open(t); err != nil {
		t.Fatal(err)
	}
	l.stdin.mu.Lock()
	in, token := l.stdin.buf.String(), l.stdin.token
	l.stdin.mu.Unlock()
	if end := "\n#gitric-end " + token + "\n"; !strings.HasSuffix(in, end) {
		t.Errorf("gitric's input to the host ends in %q before the host's ready, not in the script's end line", in[max(0, len(in)-80):])
	}
}

// cutoverLink is a host that opens a session, then says the cutover's
// words.
func cutoverLink(words string) *scriptedLink {
	return &scriptedLink{hold: true, out: "TOKEN hello 2\nTOKEN head " + sha1 + "\nTOKEN ready\n" + words}
}

func TestUnitCutoverWords(t *testing.T) {
	t.Parallel()
	inPlace := "TOKEN stopping\nTOKEN stopped 0\nTOKEN reset 0\nTOKEN built -\nTOKEN started 0\nTOKEN checked 0\n"
	errHTTP := errors.New("503 Service Unavailable")
	for _, c := range []struct {
		name    string
		words   string
		http    error
		err     func(error) bool // nil: no error
		check   func(t *testing.T, r cutoverResult)
		sentHTT string // the http verdict gitric must send
	}{
		{name: "in place", words: inPlace, check: func(t *testing.T, r cutoverResult) {
			if r.overlap || r.stopStatus != "0" || r.resetStatus != "0" || r.buildStatus != "-" || r.startStatus != "0" || r.checkStatus != "0" || !r.moved() {
				t.Errorf("%+v", r)
			}
		}},
		{name: "overlap order", words: "TOKEN built -\nTOKEN started 0\nTOKEN checked 0\nTOKEN reset 0\nTOKEN stopping\nTOKEN stopped 0\n", check: func(t *testing.T, r cutoverResult) {
			if !r.overlap || r.downtime != 0 || !r.moved() {
				t.Errorf("%+v", r)
			}
		}},
		{name: "any order", words: "TOKEN checked 1\nTOKEN reset f\nTOKEN stopped 3\nTOKEN started t\nTOKEN stopping\nTOKEN built 2\n", check: func(t *testing.T, r cutoverResult) {
			if r.stopStatus != "3" || r.resetStatus != "f" || r.buildStatus != "2" || r.startStatus != "t" || r.checkStatus != "1" {
				t.Errorf("%+v", r)
			}
		}},
		{name: "an HTTP check that fails", words: "TOKEN stopping\nTOKEN stopped 0\nTOKEN reset 0\nTOKEN built -\nTOKEN started 0\nTOKEN checkhttp\nTOKEN checked 1\n",
			http: errHTTP, sentHTT: "http 1", check: func(t *testing.T, r cutoverResult) {
				if !errors.Is(r.httpErr, errHTTP) {
					t.Errorf("httpErr %v", r.httpErr)
				}
				if err := r.failure(plumbing.NewHash(sha2), timeouts{}); err == nil || !errors.Is(err, errHTTP) {
					t.Errorf("failure %v", err)
				}
			}},
		{name: "an HTTP check that passes", words: "TOKEN stopping\nTOKEN stopped 0\nTOKEN reset 0\nTOKEN built -\nTOKEN started 0\nTOKEN checkhttp\nTOKEN checked 0\n", sentHTT: "http 0"},
		{name: "a duplicated word", words: "TOKEN stopping\nTOKEN stopped 0\nTOKEN stopped 0\n", err: func(err error) bool {
			var pe *hostscript.ProtocolError
			return errors.As(err, &pe) && strings.Contains(err.Error(), "once each")
		}},
		{name: "an unknown word", words: "TOKEN stopping\nTOKEN exploded 0\n", err: func(err error) bool {
			var pe *hostscript.ProtocolError
			return errors.As(err, &pe) && strings.Contains(err.Error(), "exploded")
		}},
		{name: "a state word", words: "TOKEN stopping\nTOKEN head " + sha1 + "\n", err: func(err error) bool { return errors.Is(err, hostscript.ErrProtocol) }},
		{name: "binary junk", words: "TOKEN stopping\n" + binaryJunk + "\n", err: func(err error) bool { return errors.Is(err, hostscript.ErrProtocol) }},
		{name: "an error word", words: "TOKEN stopping\nTOKEN error proto cutover without the lock\n", err: func(err error) bool {
			var se *hostscript.ScriptError
			return errors.As(err, &se) && se.Code == "proto"
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			l := cutoverLink(c.words)
			s, _, err, _ := l.open(t)
			if err != nil {
				t.Fatal(err)
			}
			called := 0
			r, err := s.cutover(plumbing.NewHash(sha2), OutcomeOK, auditHead{Who: "w"}, timeouts{time.Minute, time.Minute, time.Minute, time.Minute}, time.Minute,
				func() error { called++; return c.http })
			switch {
			case c.err == nil && err != nil:
				t.Fatalf("cutover: %v", err)
			case c.err != nil && (err == nil || !c.err(err)):
				t.Fatalf("cutover: %v (%T)", err, err)
			}
			if err != nil && !printable(err.Error()) {
				t.Errorf("raw bytes in the error: %q", err.Error())
			}
			if c.check != nil {
				c.check(t, r)
			}
			cmds := l.stdin.commands()
			if len(cmds) == 0 || !strings.HasPrefix(cmds[0], "cutover "+sha2+" ok "+sha2+" {") { // sha, result, source, audit
				t.Errorf("gitric sent %q", cmds)
			}
			if c.sentHTT != "" && (called != 1 || len(cmds) < 2 || cmds[1] != c.sentHTT) {
				t.Errorf("HTTP check called %d times; gitric sent %q, want %q", called, cmds, c.sentHTT)
			}
		})
	}
}

func TestUnitCutoverFailure(t *testing.T) {
	t.Parallel()
	want := plumbing.NewHash(sha2)
	to := timeouts{stop: time.Second, start: time.Second, check: time.Second, build: time.Second}
	ok := cutoverResult{stopStatus: "0", resetStatus: "0", buildStatus: "-", startStatus: "0", checkStatus: "0"}
	with := func(f func(r *cutoverResult)) cutoverResult { r := ok; f(&r); return r }
	for _, c := range []struct {
		name  string
		r     cutoverResult
		is    error  // errors.Is, or nil
		in    string // "" for no failure
		moved bool
	}{
		{name: "ok", r: ok, moved: true},
		{name: "nothing to stop", r: with(func(r *cutoverResult) { r.stopStatus = "-" }), moved: true},
		{name: "not prepared", r: with(func(r *cutoverResult) { r.stopStatus, r.resetStatus = "p", "-" }), in: "was not stopped"},
		{name: "stop timed out", r: with(func(r *cutoverResult) { r.stopStatus, r.resetStatus = "t", "-" }), is: ErrCommandTimeout, in: "stop command"},
		{name: "stop failed", r: with(func(r *cutoverResult) { r.stopStatus, r.resetStatus = "2", "-" }), in: "exit status 2"},
		{name: "back on the old commit", r: with(func(r *cutoverResult) { r.resetStatus = "f" }), in: "put back"},
		{name: "mixed", r: with(func(r *cutoverResult) { r.resetStatus = "x" }), is: ErrMixed},
		{name: "build timed out", r: with(func(r *cutoverResult) { r.buildStatus = "t" }), is: ErrCommandTimeout, in: "build", moved: true},
		{name: "build failed", r: with(func(r *cutoverResult) { r.buildStatus = "1" }), in: "the build failed", moved: true},
		{name: "start failed", r: with(func(r *cutoverResult) { r.startStatus = "4" }), in: "start command failed (exit status 4)", moved: true},
		{name: "check timed out", r: with(func(r *cutoverResult) { r.checkStatus = "t" }), is: ErrCommandTimeout, in: "health check", moved: true},
		{name: "check failed", r: with(func(r *cutoverResult) { r.checkStatus = "1" }), in: "health check did not pass", moved: true},
		{name: "overlap that failed its check", r: cutoverResult{stopStatus: "-", resetStatus: "-", buildStatus: "-", startStatus: "0", checkStatus: "1", overlap: true}, in: "health check"},
	} {
		err := c.r.failure(want, to)
		switch {
		case c.in == "" && c.is == nil && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case (c.in != "" || c.is != nil) && err == nil:
			t.Errorf("%s: no failure", c.name)
		case err != nil && (c.is != nil && !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.in)):
			t.Errorf("%s: %v, want %v with %q", c.name, err, c.is, c.in)
		}
		if c.r.moved() != c.moved {
			t.Errorf("%s: moved() = %v", c.name, c.r.moved())
		}
	}
}

// TestUnitMeter checks the push's meter: bytes, share of the expected
// total and rate while the pack is written, then, once it is all handed to
// the connection, that the host is still taking it (a slow link, a big
// pack); nothing once it is stopped.
func TestUnitMeter(t *testing.T) {
	t.Parallel()
	var out syncBuffer
	c := console.New(&out, console.Options{}, "h")
	s := &session{log: c.Host("h")}
	cw := &stream.Counter{W: io.Discard}
	var total atomic.Int64
	var written atomic.Bool
	total.Store(4 << 20)
	stop := s.meter(cw, &total, &written, 10*time.Millisecond)
	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(out.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the meter's lines:\n%s", what, out.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	cw.Write(make([]byte, 1<<20))
	waitFor("[h] seeding: 1.0 MiB of ~4.0 MiB (25%), ")
	cw.Write(make([]byte, 3<<20))
	written.Store(true)
	waitFor("[h] seeding: 4.0 MiB sent; the host is storing it\n")
	stop()
	time.Sleep(50 * time.Millisecond)
	n := len(out.String())
	time.Sleep(50 * time.Millisecond)
	if len(out.String()) != n {
		t.Errorf("the meter still writes once stopped:\n%s", out.String())
	}
}

// forcedLink is a host whose forced command (command= in authorized_keys)
// prints and exits at once, before it takes any input: the script cannot
// even be sent.
type forcedLink struct{}

func (forcedLink) start(context.Context, string) (*process, error) {
	return &process{
		stdin:  closedInput{},
		stdout: strings.NewReader("hi\n"),
		stderr: strings.NewReader("forced\n"),
		wait:   func() error { return nil },
		kill:   func() {},
	}, nil
}

func (forcedLink) close() {}

// closedInput is the input of a session that has ended.
type closedInput struct{}

func (closedInput) Write([]byte) (int, error) { return 0, io.EOF }
func (closedInput) Close() error              { return nil }

// TestUnitNoScriptSaysWhatTheHostPrinted: when the host ends the session
// before the script could be sent, the error still says what it printed
// on both streams (once read, the rest of the output is dropped).
func TestUnitNoScriptSaysWhatTheHostPrinted(t *testing.T) {
	t.Parallel()
	con := console.New(io.Discard, console.Options{}, "h1")
	_, _, err := openSession(context.Background(), forcedLink{}, hostscript.Vars{Action: hostscript.Deploy, Path: "app"}, con.Host("h1"), nil)
	if !errors.Is(err, ErrNoShell) || !strings.Contains(err.Error(), "It printed: hi\nforced.") {
		t.Fatalf("openSession on a forced command = %v, want ErrNoShell saying it printed hi and forced", err)
	}
}

// slowInput is a stream whose writes wait for release, and that records
// its closes and any write after one.
type slowInput struct {
	started, release chan struct{}
	once             sync.Once
	mu               sync.Mutex
	closes, lateOnes int
}

func (w *slowInput) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.started) })
	<-w.release
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closes > 0 {
		w.lateOnes++
	}
	return len(p), nil
}

func (w *slowInput) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closes++
	return nil
}

// TestUnitInputCloseDuringWrite: a close from another goroutine while a
// write is in progress (an interrupt during a push) returns at once, and
// closes the stream as the write returns, once; later writes fail. Run
// with -race: the SSH channel's CloseWrite races with a Write.
func TestUnitInputCloseDuringWrite(t *testing.T) {
	t.Parallel()
	w := &slowInput{started: make(chan struct{}), release: make(chan struct{})}
	in := &input{w: w}
	wrote := make(chan error)
	go func() {
		_, err := in.Write([]byte("pack data"))
		wrote <- err
	}()
	<-w.started
	closed := make(chan struct{})
	go func() {
		_ = in.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for the write in progress")
	}
	close(w.release)
	if err := <-wrote; err != nil {
		t.Fatalf("the write in progress: %v", err)
	}
	if _, err := in.Write([]byte("more")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("a write after the close: %v, want io.ErrClosedPipe", err)
	}
	_ = in.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closes != 1 || w.lateOnes != 0 {
		t.Errorf("closed %d times, %d writes after the close; want 1 and 0", w.closes, w.lateOnes)
	}
}
