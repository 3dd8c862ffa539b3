package localhost

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

const (
	// maxEnv limits how many "env" requests a session accepts.
	maxEnv = 256
	// defaultPath is used when this process has no PATH.
	defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

var errNotRunning = errors.New("no command running")

// session is one "session" channel. Its request loop runs in handleSession;
// once a command started, further goroutines copy stdin/stdout/stderr and
// wait for the command.
type session struct {
	srv  *Server
	conn ssh.ConnMetadata
	ch   ssh.Channel
	env  []string // accepted "env" requests as NAME=value

	started bool          // an exec request succeeded
	exited  chan struct{} // nil until started; closed after the exit status was sent

	mu      sync.Mutex
	pid     int  // process (group) id of the command
	running bool // main process not reaped yet; its group id is still ours
}

func (s *Server) handleSession(conn ssh.ConnMetadata, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer s.sessions.Done()
	ss := &session{srv: s, conn: conn, ch: ch}
	defer func() {
		_ = ch.Close()
		// Keep answering requests until the client's close arrives, so that
		// the connection never stalls on this channel's request queue.
		go ssh.DiscardRequests(reqs)
	}()
	for {
		select {
		case req, ok := <-reqs:
			if !ok {
				// The client closed the channel or the connection is gone
				// before the command ended.
				ss.stop()
				return
			}
			ss.handleRequest(req)
		case <-ss.exited: // blocks while nil
			return
		case <-s.done:
			ss.stop()
			return
		}
	}
}

func (ss *session) handleRequest(req *ssh.Request) {
	ok := false
	switch req.Type {
	case "env":
		ok = ss.setenv(req.Payload)
	case "exec":
		var p struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			ss.srv.debugf("%s: bad exec request: %v", ss.conn.RemoteAddr(), err)
			break
		}
		if ss.started {
			break
		}
		pr, err := ss.start(p.Command)
		if err != nil {
			ss.srv.debugf("%s: exec %q: %v", ss.conn.RemoteAddr(), p.Command, err)
			break
		}
		ss.srv.debugf("%s: exec %q: pid %d", ss.conn.RemoteAddr(), p.Command, pr.cmd.Process.Pid)
		// Reply before any output or the exit status can reach the client:
		// nothing may follow the channel close.
		_ = req.Reply(true, nil)
		ss.run(pr)
		return
	case "signal":
		var p struct{ Signal string }
		if err := ssh.Unmarshal(req.Payload, &p); err != nil {
			break
		}
		if sig, known := signalByName(p.Signal); known {
			ok = ss.signal(sig) == nil
		}
	default:
		// "shell", "pty-req", "subsystem", "x11-req", "auth-agent-req@openssh.com",
		// "window-change", ...: not supported.
	}
	_ = req.Reply(ok, nil)
}

func (ss *session) setenv(payload []byte) bool {
	var p struct{ Name, Value string }
	if err := ssh.Unmarshal(payload, &p); err != nil {
		return false
	}
	if ss.started || len(ss.env) >= maxEnv || !validEnvName(p.Name) || strings.IndexByte(p.Value, 0) >= 0 {
		ss.srv.debugf("%s: refusing env %q", ss.conn.RemoteAddr(), p.Name)
		return false
	}
	ss.env = append(ss.env, p.Name+"="+p.Value)
	return true
}

// validEnvName reports whether name matches [A-Za-z_][A-Za-z0-9_]*.
func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// environ returns the command's environment: a fixed base like sshd's, then
// the client's accepted env requests, later entries overriding earlier ones.
func (ss *session) environ() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = defaultPath
	}
	root, user := ss.srv.root, ss.srv.user
	env := []string{
		"PATH=" + path,
		"HOME=" + root,
		"PWD=" + root,
		"USER=" + user,
		"LOGNAME=" + user,
		"SHELL=/bin/sh",
		"LANG=C",
	}
	rh, rp, err1 := net.SplitHostPort(ss.conn.RemoteAddr().String())
	lh, lp, err2 := net.SplitHostPort(ss.conn.LocalAddr().String())
	if err1 == nil && err2 == nil {
		env = append(env,
			"SSH_CLIENT="+rh+" "+rp+" "+lp,
			"SSH_CONNECTION="+rh+" "+rp+" "+lh+" "+lp,
		)
	}
	env = append(env, ss.env...)

	// Deduplicate, keeping the last value but the first position.
	idx := make(map[string]int, len(env))
	out := env[:0:0]
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[name]; ok {
			out[i] = kv
			continue
		}
		idx[name] = len(out)
		out = append(out, kv)
	}
	return out
}

// proc is a started command with the server's ends of its stdio pipes.
type proc struct {
	cmd    *exec.Cmd
	stdin  *os.File
	stdout *os.File
	stderr *os.File
}

// start starts "/bin/sh -c command" in its own process group. The command
// gets the child ends of three pipes, so that Wait returns as soon as the
// main process exits, whoever else still holds them.
func (ss *session) start(command string) (*proc, error) {
	var parent, child []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			_ = f.Close()
		}
	}
	pipe := func(childReads bool) error {
		r, w, err := os.Pipe()
		if err != nil {
			return fmt.Errorf("pipe: %w", err)
		}
		if childReads {
			child, parent = append(child, r), append(parent, w)
		} else {
			child, parent = append(child, w), append(parent, r)
		}
		return nil
	}
	for _, childReads := range []bool{true, false, false} {
		if err := pipe(childReads); err != nil {
			closeAll(parent)
			closeAll(child)
			return nil, err
		}
	}

	cmd := exec.Command("/bin/sh", "-c", command)
	cmd.Dir = ss.srv.root
	cmd.Env = ss.environ()
	cmd.Stdin, cmd.Stdout, cmd.Stderr = child[0], child[1], child[2]
	cmd.SysProcAttr = procAttr()
	err := cmd.Start()
	closeAll(child)
	if err != nil {
		closeAll(parent)
		return nil, fmt.Errorf("starting command: %w", err)
	}

	ss.mu.Lock()
	ss.pid = cmd.Process.Pid
	ss.running = true
	ss.mu.Unlock()
	ss.started = true
	ss.exited = make(chan struct{})
	return &proc{cmd: cmd, stdin: parent[0], stdout: parent[1], stderr: parent[2]}, nil
}

// run streams the command's stdio over the channel and, once the command has
// exited and its output is forwarded, sends its exit status and closes the
// channel.
func (ss *session) run(p *proc) {
	go func() {
		// Client EOF (CloseWrite) closes the command's stdin.
		_, _ = io.Copy(p.stdin, ss.ch)
		_ = p.stdin.Close()
	}()

	stdout := &outputPipe{r: p.stdout}
	stderr := &outputPipe{r: p.stderr}
	var copies sync.WaitGroup
	copies.Add(2)
	go func() {
		defer copies.Done()
		ss.forward(ss.ch, stdout)
	}()
	go func() {
		defer copies.Done()
		ss.forward(ss.ch.Stderr(), stderr)
	}()

	go func() {
		defer close(ss.exited)
		err := p.cmd.Wait()
		ss.mu.Lock()
		ss.running = false
		ss.mu.Unlock()
		// Stop feeding stdin; this also unblocks a copy stuck on a full pipe.
		_ = p.stdin.Close()
		if err != nil && p.cmd.ProcessState == nil {
			ss.srv.debugf("%s: wait: %v", ss.conn.RemoteAddr(), err)
		}

		now := time.Now()
		stdout.processExited(now)
		stderr.processExited(now)
		copies.Wait()

		if ps := p.cmd.ProcessState; ps != nil {
			ss.sendExit(ps)
		}
		_ = ss.ch.CloseWrite()
		_ = ss.ch.Close()
	}()
}

func (ss *session) sendExit(ps *os.ProcessState) {
	status, sig, core, signaled := exitInfo(ps)
	if signaled {
		ss.srv.debugf("%s: pid %d killed by signal %s", ss.conn.RemoteAddr(), ps.Pid(), sig)
		_, _ = ss.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Error      string
			Lang       string
		}{Signal: sig, CoreDumped: core}))
		return
	}
	ss.srv.debugf("%s: pid %d exited with status %d", ss.conn.RemoteAddr(), ps.Pid(), status)
	_, _ = ss.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status)}))
}

// outputPipe is the server's read end of a command's stdout or stderr.
//
// While the main process runs, reads wait as long as needed. Once it exited,
// background processes may still hold the pipe open; from then on, the time
// spent waiting for more data is limited to outputGrace in total. Time spent
// writing to the client does not count, so everything the command wrote is
// delivered even to a slow client.
type outputPipe struct {
	r *os.File

	mu       sync.Mutex
	deadline time.Time // zero while the main process runs
	timer    *time.Timer
}

func (o *outputPipe) processExited(now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.deadline = now.Add(outputGrace)
	o.setDeadline()
}

// spentWriting extends the read deadline by d, the time just spent writing.
func (o *outputPipe) spentWriting(d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.deadline.IsZero() {
		return
	}
	o.deadline = o.deadline.Add(d)
	o.setDeadline()
}

// setDeadline applies o.deadline; o.mu must be held.
func (o *outputPipe) setDeadline() {
	if err := o.r.SetReadDeadline(o.deadline); err == nil {
		return
	}
	// Not a pollable file: closing it is the only way to stop a read.
	if o.timer != nil {
		o.timer.Stop()
	}
	o.timer = time.AfterFunc(time.Until(o.deadline), func() { _ = o.r.Close() })
}

// forward copies o to w until EOF, the grace period after the main process
// ended runs out, or w fails; then it closes o, so that later writers get
// EPIPE instead of blocking.
func (ss *session) forward(w io.Writer, o *outputPipe) {
	defer o.r.Close()
	buf := make([]byte, 32*1024)
	for {
		n, rerr := o.r.Read(buf)
		if n > 0 {
			start := time.Now()
			_, werr := w.Write(buf[:n])
			o.spentWriting(time.Since(start))
			if werr != nil {
				return
			}
		}
		if rerr != nil {
			if rerr != io.EOF {
				ss.srv.debugf("%s: output: %v", ss.conn.RemoteAddr(), rerr)
			}
			return
		}
	}
}

// signal sends sig to the command's process group while its main process
// has not been reaped.
func (ss *session) signal(sig os.Signal) error {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if !ss.running {
		return errNotRunning
	}
	return killGroup(ss.pid, sig)
}

// stop kills a running command's process group, SIGTERM first and SIGKILL
// after killGrace, and waits until the command's session is finished.
func (ss *session) stop() {
	if ss.exited == nil {
		return
	}
	select {
	case <-ss.exited:
		return
	default:
	}
	if err := ss.signal(sigTerm); err == nil {
		t := time.NewTimer(killGrace)
		select {
		case <-ss.exited:
			t.Stop()
			return
		case <-t.C:
		}
		_ = ss.signal(sigKill)
	}
	<-ss.exited
}
