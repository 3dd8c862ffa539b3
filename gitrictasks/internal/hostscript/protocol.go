package hostscript

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The words of the protocol, host to gitric.
const (
	WordHello     = "hello"     // version: the script runs
	WordError     = "error"     // code message: the run ends
	WordForeign   = "foreign"   // path: a repository gitric did not create (status, plan)
	WordNotEmpty  = "notempty"  // path: a non-empty directory, not gitric's (plan)
	WordLocked    = "locked"    // owner: another deploy holds the lock
	WordTookOver  = "tookover"  // owner: a dead deploy's lock was taken over
	WordUnlocked  = "unlocked"  // owner or -: the lock was removed (unlock)
	WordAudit     = "audit"     // json: a line of the audit log
	WordHead      = "head"      // sha or none: the working copy's commit
	WordCommit    = "commit"    // time subject: HEAD's (status)
	WordSource    = "source"    // sha tree: HEAD is gitric's deploy commit of sha
	WordRelease   = "release"   // name head: a release directory (release mode)
	WordChanged   = "changed"   // porcelain line: a tracked file edited on the host
	WordCutShort  = "cutshort"  // sha: a cutover to sha was cut short here (killed): files and service may be between commits
	WordReady     = "ready"     // the state report is complete
	WordSeeded    = "seeded"    // status sha: receive-pack's exit, refs/gitric/seed
	WordUntracked = "untracked" // path: a host file the new commit would overwrite
	WordVerified  = "verified"  // the untracked list is complete
	WordStopping  = "stopping"
	WordStopped   = "stopped"   // 0, -, p, t or the stop command's status
	WordReset     = "reset"     // 0, f (back on the old commit), x (mixed), -
	WordBuilt     = "built"     // -, t or the build's status
	WordPrepared  = "prepared"  // 0 dir, or 1: the release (release mode) or next's new copy (blue/green with a build) of a commit
	WordMissing   = "missing"   // path: a shared file the host lacks
	WordOnced     = "onced"     // t or the run-once command's status
	WordDiscarded = "discarded" // the prepared release (or copy) was removed
	WordCheckHTTP = "checkhttp" // gitric's HTTP check is due: answer with CmdHTTP
	WordStarted   = "started"   // -, t or the start command's status
	WordChecked   = "checked"   // 0, 1, t or -
	WordSwapped   = "swapped"
	WordLogged    = "logged"
)

// The words of the protocol, gitric to host.
const (
	CmdVerify  = "verify"  // sha: list what a rollback to sha would overwrite
	CmdCutover = "cutover" // sha okword source audit-json-prefix
	CmdSwap    = "swap"    // audit-json-prefix
	CmdLog     = "log"     // json: append to the audit log
	CmdPrepare = "prepare" // sha new|reuse source: make (or find) the release of sha, or next's new copy
	CmdDiscard = "discard" // remove the release (or copy) prepare made
	CmdOnce    = "once"    // sha source: run the run-once command
	CmdHTTP    = "http"    // 0 or 1: the HTTP check's verdict
	CmdBye     = "bye"
)

// Line is one protocol line: its word and the rest.
type Line struct {
	Word, Arg string
}

// maxLine bounds a protocol line (a changed path, an audit entry).
const maxLine = 64 << 10

// ErrProtocol means the host sent something the protocol does not allow.
var ErrProtocol = errors.New("protocol violation")

// ProtocolError is output from the host that is not what gitric expected.
type ProtocolError struct {
	Want string // what gitric waited for
	Got  []byte // what came instead, at most 80 bytes of it
	EOF  bool   // the stream ended instead
}

func (e *ProtocolError) Error() string {
	if e.EOF {
		return fmt.Sprintf("%v: the host script ended while gitric waited for %s", ErrProtocol, e.Want)
	}
	return fmt.Sprintf("%v: gitric waited for %s, and the host sent %q", ErrProtocol, e.Want, e.Got)
}

func (e *ProtocolError) Unwrap() error { return ErrProtocol }

// ErrScript lets errors.Is find any ScriptError.
var ErrScript = errors.New("host script refused")

// ScriptError is the script's own report of why it stopped.
type ScriptError struct {
	Code    string // nogit, path, notempty, foreign, init, proto
	Message string // what, where, how to fix, in the script's words
}

func (e *ScriptError) Error() string {
	if e.Message == "" {
		return "the host script failed: " + e.Code
	}
	return e.Message
}

// Is matches ErrScript.
func (e *ScriptError) Is(target error) bool { return target == ErrScript }

// Decoder reads the protocol from the script's standard output. It is
// also the reader receive-pack's stream goes through, so it never reads
// ahead of what it returns.
type Decoder struct {
	r      *bufio.Reader
	token  string
	hello  bool
	before bytes.Buffer // what the login shell printed, at most 4 KiB
}

// NewDecoder reads r for the run with token.
func NewDecoder(r io.Reader, token string) *Decoder {
	return &Decoder{r: bufio.NewReaderSize(r, 64<<10), token: token}
}

// Reader is the stream after the last line returned (receive-pack's).
func (d *Decoder) Reader() *bufio.Reader { return d.r }

// Before is what the host printed ahead of the script's hello.
func (d *Decoder) Before() string { return d.before.String() }

// Hello skips what the login shell printed and reads the script's hello.
// It fails with what the host printed when the stream ends first.
func (d *Decoder) Hello() error {
	for {
		line, err := d.line()
		if err != nil {
			return err
		}
		if w, a, ok := d.cut(line); ok && w == WordHello {
			if a != Version {
				return &ProtocolError{Want: fmt.Sprintf("the hello of protocol version %s (the host script speaks another version)", Version), Got: []byte(WordHello + " " + a)[:min(80, len(WordHello)+1+len(a))]}
			}
			d.hello = true
			return nil
		}
		if d.before.Len() < 4096 {
			d.before.Write(line[:min(len(line), 4096-d.before.Len())])
			d.before.WriteByte('\n')
		}
	}
}

// Next reads the next protocol line. An error line becomes a
// *ScriptError; anything that is not a protocol line a *ProtocolError.
func (d *Decoder) Next(want string) (Line, error) {
	line, err := d.line()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return Line{}, &ProtocolError{Want: want, EOF: true}
		}
		return Line{}, err
	}
	w, a, ok := d.cut(line)
	if !ok {
		return Line{}, &ProtocolError{Want: want, Got: line[:min(len(line), 80)]}
	}
	if w == WordError {
		code, msg, _ := strings.Cut(a, " ")
		return Line{}, &ScriptError{Code: code, Message: msg}
	}
	return Line{Word: w, Arg: a}, nil
}

// Expect reads the next line and checks its word.
func (d *Decoder) Expect(word string) (string, error) {
	l, err := d.Next(strconvQuote(word))
	if err != nil {
		return "", err
	}
	if l.Word != word {
		return "", &ProtocolError{Want: strconvQuote(word), Got: []byte(d.token + " " + l.Word + " " + l.Arg)[:min(80, len(d.token)+2+len(l.Word)+len(l.Arg))]}
	}
	return l.Arg, nil
}

func strconvQuote(s string) string { return `"` + s + `"` }

func (d *Decoder) cut(line []byte) (word, arg string, ok bool) {
	rest, ok := bytes.CutPrefix(line, []byte(d.token+" "))
	if !ok {
		return "", "", false
	}
	w, a, _ := strings.Cut(string(rest), " ")
	return w, a, true
}

// line reads one line without its newline, at most maxLine bytes.
func (d *Decoder) line() ([]byte, error) {
	var buf []byte
	for {
		frag, err := d.r.ReadSlice('\n')
		buf = append(buf, frag...)
		if len(buf) > maxLine+1 { // its newline is not part of the line
			return nil, &ProtocolError{Want: "a line", Got: buf[:80]}
		}
		if err == nil {
			return bytes.TrimSuffix(buf[:len(buf)-1], []byte("\r")), nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if errors.Is(err, io.EOF) && len(buf) > 0 && d.hello {
			return nil, &ProtocolError{Want: "a whole line", Got: buf[:min(len(buf), 80)]}
		}
		if errors.Is(err, io.EOF) && len(buf) > 0 {
			d.before.Write(buf[:min(len(buf), 4096)])
		}
		return nil, err
	}
}

// Send writes one command line to the script.
func Send(w io.Writer, token string, words ...string) error {
	_, err := io.WriteString(w, token+" "+strings.Join(words, " ")+"\n")
	return err
}
