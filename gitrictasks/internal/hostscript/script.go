// Package hostscript is gitric's host side: one POSIX sh script with a
// subcommand per operation (deploy, rollback, swap, status, unlock) over a
// shared prelude that resolves the layout on the host once, and the
// protocol gitric speaks with it.
//
// The script never passes through the login shell's parser: the command
// line of the session is a fixed bootstrap (Command) that starts /bin/sh,
// which reads the script, values included, from the session's standard
// input. So the login shell may be bash, dash, zsh, fish or tcsh, and no
// value (a path, a command, a secret) ever appears on a command line.
//
// The protocol is line-based and both ways prefixed by a random token:
// "TOKEN word args". Before the script's hello line, anything on standard
// output is the login shell's (a .bashrc that prints) and is skipped; after
// it, anything but a protocol line is a violation that ends the run.
package hostscript

import (
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/shell"
)

//go:embed host.sh
var source string

// body is the script as sent: without its comments and indentation, which
// are for people (the script travels with every run). It is made when
// first sent, not when the program starts: most mage calls send none.
var body = sync.OnceValue(func() string { return strip(source) })

func strip(src string) string {
	var b strings.Builder
	b.Grow(len(src))
	for line := range strings.Lines(src) {
		line = strings.TrimLeft(strings.TrimSuffix(line, "\n"), "\t ")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// Version is the protocol version the script's hello line names.
const Version = "2"

// Action is the operation a run of the script performs.
type Action string

// The script's subcommands.
const (
	Deploy   Action = "deploy"
	Rollback Action = "rollback"
	Swap     Action = "swap"
	Status   Action = "status"
	Plan     Action = "plan"
	Unlock   Action = "unlock"
)

// Vars are the values a run of the script starts with.
type Vars struct {
	Action Action
	// Path is the deploy root; relative to the home directory of the user
	// the script runs as.
	Path string
	Mode string // inplace, release, bluegreen
	// New is the commit a deploy pushes.
	New                 string
	Keep                int
	Stop, Start, Check  string
	StopWait, StartWait time.Duration
	CheckWait           time.Duration
	Lock                string // lock owner description; empty: no lock
	LockWait            time.Duration
	Adopt               bool // take over a repository gitric did not create
	AuditLog            bool // report the audit log
	Audit               string
	Colors              map[string]map[string]string
	Submodules          bool
	Sudo                string // run as this user (validated by the caller)
	Build, Once         string
	BuildWait, OnceWait time.Duration
	Shared              []string
	Overlap             bool
	HTTPCheck           bool
	// Env is exported to every command (the stage's environment, the
	// host's overrides, the secrets): it travels inside the script.
	Env map[string]string
}

// NewToken returns a fresh protocol token.
func NewToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "gitric-" + hex.EncodeToString(b[:])
}

// Marker lines around the script on standard input. The first line,
// "#gitric-begin VERSION COUNT TOKEN", says how many bytes follow it
// (COUNT) and the run's token; what follows starts with "#gitric-body
// TOKEN" and ends with "#gitric-end TOKEN". The token makes the markers
// the run's own: no value inside the script (a command with a line that
// reads "#gitric-end") can end it early.
const (
	beginMarker = "#gitric-begin " + Version
	bodyMarker  = "#gitric-body"
	endMarker   = "#gitric-end"
)

// frame puts body between the markers of token's run.
func frame(token, body string) string {
	body = bodyMarker + " " + token + "\n" + body + endMarker + " " + token + "\n"
	return beginMarker + " " + strconv.Itoa(len(body)) + " " + token + "\n" + body
}

// Command is the session's command line. It is the same for every run and
// every host (but for the sudo user, a validated name): it is valid in
// every common login shell, holds no value of the deploy, and starts
// /bin/sh on the script that follows on standard input.
//
// The script is read whole and not a byte further: what follows it on
// standard input (git receive-pack's data, gitric's commands) is for
// programs the script starts. The first line is read with the shell's
// read, which reads a pipe byte by byte; it names the count of bytes that
// follow, which head -c reads in a few system calls. That is exact even
// for a head that reads ahead (busybox's reads through stdio), since
// gitric writes nothing after the script until the script says hello.
// Where head has no -c (it prints nothing), the rest is read with read,
// byte by byte, up to the end line; no tool that reads lines is trusted
// to stop there (GNU sed reads ahead in blocks; busybox sed waits for the
// line after the one it quits on, which comes only once the script has
// spoken). A head that printed part of it is not followed by read: had it
// read more than it printed, the gap would not show.
//
// It runs only if its first line arrived intact and the rest arrived
// whole, between the run's body and end lines: a login script that ate
// part of standard input is caught here. The script itself checks that
// this command, not a shell a login script exec'd, runs it.
func Command(sudo string) string {
	run := shell.Quote(bootstrap())
	if sudo != "" {
		// -n: fail rather than ask for a password; -H: the user's home.
		return "exec sudo -n -H -u " + sudo + " -- /bin/sh -c " + run
	}
	return "exec /bin/sh -c " + run
}

// bootstrap is the sh code of Command: it reads the script and runs it.
func bootstrap() string {
	consumed := `echo "gitric: the login shell consumed part of the script sent on standard input, or it arrived incomplete (does a login script read it?)" >&2; exit ` + strconv.Itoa(ExitConsumed)
	// l: the first line; c: the byte count; k: the token; s: the rest
	// (without its last newline, which $(...) drops).
	return `IFS= read -r l; case $l in "` + beginMarker + ` "[0-9]*" "?*) ;; *) ` + consumed + ` ;; esac; ` +
		`c=${l#"` + beginMarker + ` "}; k=${c#* }; c=${c%% *}; ` +
		`s=$(head -c "$c" 2>/dev/null); ` +
		`if [ -z "$s" ]; then n=$(printf "\nx"); n=${n%x}; while IFS= read -r l; do s=$s$l$n; [ "$l" = "` + endMarker + ` $k" ] && break; done; s=${s%"$n"}; fi; ` +
		`case $s in "` + bodyMarker + ` $k"?*"` + endMarker + ` $k") ` + bootVar + `=1; eval "$s" ;; *) ` + consumed + ` ;; esac`
}

// ExitConsumed is the bootstrap's exit status when the script arrived
// without its first line, or not whole.
const ExitConsumed = 97

// ExitNotBootstrapped is the script's exit status when a shell ran it
// without the bootstrap: a login script exec'd a shell, which read the
// script from standard input as its own commands.
const ExitNotBootstrapped = 98

// bootVar is set by the bootstrap (not exported) for the script it runs.
const bootVar = "GITRIC_BOOTSTRAP"

// Script is what the session's standard input starts with: the values,
// then the script, between the markers.
func (v Vars) Script(token string) string {
	path := strings.TrimPrefix(v.Path, "~/")
	if path == "~" {
		path = "."
	}
	mode := v.Mode
	if mode == "" {
		mode = "inplace"
	}
	secs := func(d time.Duration) string { return strconv.Itoa(int((d + time.Second - 1) / time.Second)) }
	flag := func(b bool) string {
		if b {
			return "1"
		}
		return "0"
	}
	audit := v.Audit
	if audit == "" {
		audit = "{"
	}
	var b strings.Builder
	for _, kv := range [][2]string{
		{"T", shell.Quote(token)},
		{"ACTION", shell.Quote(string(v.Action))},
		{"P", shell.Quote(path)},
		{"MODE", shell.Quote(mode)},
		{"NEW", shell.Quote(v.New)},
		{"KEEP", strconv.Itoa(max(v.Keep, 2))},
		{"STOP", shell.Quote(v.Stop)},
		{"START", shell.Quote(v.Start)},
		{"CHECK", shell.Quote(v.Check)},
		{"STOPWAIT", secs(max(v.StopWait, time.Second))},
		{"STARTWAIT", secs(max(v.StartWait, time.Second))},
		{"CHECKWAIT", secs(max(v.CheckWait, time.Second))},
		{"LOCK", shell.Quote(v.Lock)},
		{"LOCKWAIT", secs(v.LockWait)},
		{"ADOPT", flag(v.Adopt)},
		{"AUDITLOG", flag(v.AuditLog)},
		{"AUD", shell.Quote(audit)},
		{"SUBMODULES", flag(v.Submodules)},
		{"BUILD", shell.Quote(v.Build)},
		{"ONCE", shell.Quote(v.Once)},
		{"BUILDWAIT", secs(max(v.BuildWait, time.Second))},
		{"ONCEWAIT", secs(max(v.OnceWait, time.Second))},
		{"SHARED", shell.Quote(strings.Join(v.Shared, "\n"))},
		{"OVERLAP", flag(v.Overlap)},
		{"HTTPCHECK", flag(v.HTTPCheck)},
	} {
		b.WriteString(kv[0] + "=" + kv[1] + "\n")
	}
	// colorenv exports a colour's settings for its service commands.
	b.WriteString("colorenv() { export GITRIC_COLOR=\"$1\"; case $1 in")
	for _, c := range []string{"blue", "green"} {
		keys := make([]string, 0, len(v.Colors[c]))
		for k := range v.Colors[c] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var exports []string
		for _, k := range keys {
			exports = append(exports, "export "+k+"="+shell.Quote(v.Colors[c][k]))
		}
		if len(exports) > 0 {
			b.WriteString(" " + c + ") " + strings.Join(exports, "; ") + " ;;")
		}
	}
	b.WriteString(" esac; }\n")
	// Before anything else: is this the bootstrap's /bin/sh?
	b.WriteString(`[ "${` + bootVar + `:-}" = 1 ] || { echo "gitric: a shell other than gitric's command read the script from standard input (does a login script exec a shell?)" >&2; exit ` + strconv.Itoa(ExitNotBootstrapped) + "; }\n")
	// svcenv exports the environment of every command gitric runs.
	b.WriteString("svcenv() { :")
	keys := make([]string, 0, len(v.Env))
	for k := range v.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString("; export " + k + "=" + shell.Quote(v.Env[k]))
	}
	b.WriteString("; }\n")
	b.WriteString(body())
	return frame(token, b.String())
}
