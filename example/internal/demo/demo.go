// Package demo is the example's demonstration (go tool mage demo): it
// deploys the example service to the local stage a few times while a
// client requests it in a loop, and reports what the client saw.
package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Options are one demonstration.
type Options struct {
	// Dir is the example's directory in the repository to clone; its
	// committed HEAD is what is deployed.
	Dir string
	// Out receives the transcript.
	Out io.Writer
	// Deploys is how many commits are deployed (default 3): the first
	// before the client starts, the others while it runs.
	Deploys int
	// MaxRequests and MaxTime bound the client loop (default 20000, 3m).
	MaxRequests int
	MaxTime     time.Duration
	// DeployTimeout bounds each deploy (default 4m; the first one
	// compiles the magefile and builds the service).
	DeployTimeout time.Duration
}

// Report is what the client saw.
type Report struct {
	Requests, Failures int
	// Errors are the first failures, as the client saw them.
	Errors []string
	// Versions are the versions that answered, in the order they did.
	Versions []Version
	// Monotonic says that every answer's counter was one more than the
	// answer before it.
	Monotonic bool
	Elapsed   time.Duration
}

// Version is one version's answers.
type Version struct {
	Version     string
	Requests    int
	First, Last int64 // counter values
}

func (o *Options) defaults() {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Deploys == 0 {
		o.Deploys = 3
	}
	if o.MaxRequests == 0 {
		o.MaxRequests = 20000
	}
	if o.MaxTime == 0 {
		o.MaxTime = 3 * time.Minute
	}
	if o.DeployTimeout == 0 {
		o.DeployTimeout = 4 * time.Minute
	}
}

// Run clones the repository of opts.Dir into a temporary directory,
// deploys opts.Deploys commits from the clone to its local stage (the
// first is the clone's HEAD, the others empty commits on top) while a
// client requests the service, stops the service and removes the clone.
// It fails if a request failed, if fewer than two versions answered, or
// if the counter did not go up by one on every request.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts.defaults()
	out := opts.Out
	top, err := gitOut(opts.Dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, err
	}
	rel, err := filepath.Rel(top, abs)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "gitric-demo-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	clone := filepath.Join(tmp, "gitric")
	if _, err := gitOut(tmp, "clone", "-q", top, clone); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	env := append(os.Environ(), "HELLO_PORT="+port,
		"GIT_AUTHOR_NAME=gitric demo", "GIT_AUTHOR_EMAIL=demo@example.com",
		"GIT_COMMITTER_NAME=gitric demo", "GIT_COMMITTER_EMAIL=demo@example.com")
	example := filepath.Join(clone, rel)
	live := filepath.Join(clone, ".gitric", "local", "hello", "current")
	head, _ := gitOut(clone, "log", "-1", "--format=%h %s")
	fmt.Fprintf(out, "demo: a throwaway clone of this repository at %s; the service will listen on 127.0.0.1:%s\n", head, port)
	defer stopService(out, live)

	deploy := func(n int) error {
		if n > 1 {
			msg := fmt.Sprintf("Demo release %d", n)
			if err := gitEnv(clone, env, "commit", "-q", "--allow-empty", "-m", msg); err != nil {
				return err
			}
		}
		subject, _ := gitOut(clone, "log", "-1", "--format=%h %s")
		fmt.Fprintf(out, "deploy %d/%d: %s\n", n, opts.Deploys, subject)
		return mageDeploy(ctx, out, example, env, opts.DeployTimeout)
	}
	if err := deploy(1); err != nil {
		return nil, err
	}
	target := "http://127.0.0.1:" + port + "/"
	if !loopback(target) {
		return nil, fmt.Errorf("the client requests loopback addresses only, not %s", target)
	}
	fmt.Fprintf(out, "client: GET %s in a loop, a new connection each time, like while curl -fsS %s; do :; done (at most %d requests or %s)\n", target, target, opts.MaxRequests, opts.MaxTime)
	stop := make(chan struct{})
	done := make(chan *Report, 1)
	go func() { done <- clientLoop(target, opts.MaxRequests, opts.MaxTime, stop) }()
	var deployErr error
	pause(ctx, 500*time.Millisecond)
	for n := 2; n <= opts.Deploys && deployErr == nil; n++ {
		deployErr = deploy(n)
	}
	pause(ctx, 500*time.Millisecond)
	close(stop)
	rep := <-done
	printReport(out, rep)
	if deployErr != nil {
		return rep, deployErr
	}
	return rep, rep.check()
}

// check is the demonstration's claim: no request failed, the version
// changed, the counter went on.
func (r *Report) check() error {
	var errs []error
	if r.Failures > 0 {
		errs = append(errs, fmt.Errorf("%d of %d requests failed (first: %s)", r.Failures, r.Requests, r.Errors[0]))
	}
	if len(r.Versions) < 2 {
		errs = append(errs, fmt.Errorf("the client saw %d version(s), want 2 or more", len(r.Versions)))
	}
	if !r.Monotonic {
		errs = append(errs, errors.New("the counter did not go up by one on every request"))
	}
	return errors.Join(errs...)
}

// clientLoop requests target one request after another, each on a new
// connection, until stop is closed or the bounds are reached.
func clientLoop(target string, maxRequests int, maxTime time.Duration, stop <-chan struct{}) *Report {
	client := &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   5 * time.Second,
	}
	rep := &Report{Monotonic: true}
	begin := time.Now()
	deadline := begin.Add(maxTime)
	var last int64
	for rep.Requests < maxRequests && time.Now().Before(deadline) {
		select {
		case <-stop:
			rep.Elapsed = time.Since(begin)
			return rep
		default:
		}
		rep.Requests++
		version, n, err := get(client, target)
		if err != nil {
			rep.Failures++
			if len(rep.Errors) < 5 {
				rep.Errors = append(rep.Errors, err.Error())
			}
			continue
		}
		rep.record(version, n, last)
		last = n
		time.Sleep(2 * time.Millisecond)
	}
	rep.Elapsed = time.Since(begin)
	return rep
}

// record adds one answer: version, counter n, after an answer with
// counter last (0: none yet).
func (r *Report) record(version string, n, last int64) {
	if last != 0 && n != last+1 {
		r.Monotonic = false
	}
	k := len(r.Versions) - 1
	if k < 0 || r.Versions[k].Version != version {
		r.Versions = append(r.Versions, Version{Version: version, First: n})
		k++
	}
	r.Versions[k].Requests++
	r.Versions[k].Last = n
}

// get requests target and parses "hello from <version> (request <n>)".
func get(client *http.Client, target string) (string, int64, error) {
	resp, err := client.Get(target)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return "", 0, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return parseAnswer(string(b))
}

func parseAnswer(s string) (string, int64, error) {
	var version string
	var n int64
	if _, err := fmt.Sscanf(s, "hello from %s (request %d)", &version, &n); err != nil {
		return "", 0, fmt.Errorf("unexpected answer %q: %v", s, err)
	}
	return version, n, nil
}

func printReport(out io.Writer, r *Report) {
	fmt.Fprintf(out, "client: %d requests in %s, %d failed\n", r.Requests, r.Elapsed.Round(100*time.Millisecond), r.Failures)
	for _, e := range r.Errors {
		fmt.Fprintf(out, "  failed: %s\n", e)
	}
	fmt.Fprintf(out, "  %-9s %8s  %s\n", "version", "requests", "counter")
	for _, v := range r.Versions {
		fmt.Fprintf(out, "  %-9s %8d  %d..%d\n", short(v.Version), v.Requests, v.First, v.Last)
	}
	if r.Monotonic {
		fmt.Fprintf(out, "counter: one more on every request, across every deploy (it lives in the shared data/)\n")
	} else {
		fmt.Fprintf(out, "counter: NOT one more on every request\n")
	}
}

func short(v string) string {
	if len(v) > 7 {
		return v[:7]
	}
	return v
}

// mageDeploy runs go tool mage gitric:local gitric:deploy in dir and
// prints what gitric says about the host, indented.
func mageDeploy(ctx context.Context, out io.Writer, dir string, env []string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "tool", "mage", "gitric:local", "gitric:deploy")
	cmd.Dir = dir
	cmd.Env = env
	cmd.WaitDelay = 10 * time.Second
	b, err := cmd.CombinedOutput()
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if line := sc.Text(); strings.HasPrefix(line, "[local]") || err != nil {
			fmt.Fprintf(out, "  %s\n", line)
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("the deploy did not finish within %s", timeout)
	}
	if err != nil {
		return fmt.Errorf("go tool mage gitric:local gitric:deploy: %w", err)
	}
	return nil
}

// stopService stops the service that live/hello.pid names and waits
// (bounded) until it has removed its pid file.
func stopService(out io.Writer, live string) {
	pidFile := filepath.Join(live, "hello.pid")
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return
	}
	if p, err := os.FindProcess(pid); err == nil {
		_ = p.Signal(syscall.SIGTERM)
	}
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(pidFile); err != nil {
			fmt.Fprintf(out, "demo: stopped the service (pid %d) and removed the clone\n", pid)
			return
		}
	}
	fmt.Fprintf(out, "demo: the service (pid %d) did not stop within 15s\n", pid)
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	_, port, err := net.SplitHostPort(ln.Addr().String())
	return port, err
}

// loopback reports whether target's host is a loopback address: the
// client requests nothing else.
func loopback(target string) bool {
	u, err := url.Parse(target)
	if err != nil {
		return false
	}
	ip := net.ParseIP(u.Hostname())
	return ip != nil && ip.IsLoopback()
}

func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

func gitOut(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	b, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return "", fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
	}
	return strings.TrimSpace(string(b)), err
}

func gitEnv(dir string, env []string, args ...string) error {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = env
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, b)
	}
	return nil
}
