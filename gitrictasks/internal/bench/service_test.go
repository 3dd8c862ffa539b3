package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/deploy"
	"github.com/gitric/gitric/gitrictasks/internal/repotest"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

const (
	// serviceRuns is the number of timed deploys per variant when
	// GITRIC_BENCH_RUNS is not set.
	serviceRuns = 5
	// serviceClientPause is the pause between two requests of the
	// client loop.
	serviceClientPause = 2 * time.Millisecond
	// serviceMaxRequests bounds the client loop of one deploy.
	serviceMaxRequests = 50000
)

// The example service's commands, as example/magefile.go has them (the
// host build builds ./cmd/hello of a module of its own here).
const (
	serviceBuild = `go build -ldflags "-X main.version=$GITRIC_COMMIT" -o bin/hello ./cmd/hello`
	serviceStart = `nohup bin/hello >>hello.log 2>&1 </dev/null & echo "hello started (pid $!)"`
	serviceStop  = `[ -f hello.pid ] || { echo "hello was not running"; exit 0; }
pid=$(cat hello.pid)
kill "$pid" 2>/dev/null || { rm -f hello.pid; echo "hello was not running"; exit 0; }
while [ -f hello.pid ] && kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
echo "hello stopped (pid $pid)"`
)

// serviceVariant is one way to deploy the example service.
type serviceVariant struct {
	name    string
	overlap bool
	steer   bool // HELLO_STEER
	// artifact: the binary is built locally and committed with the
	// source, as the engine's Artifacts will do; otherwise the stage's
	// Build builds it on the host.
	artifact bool
}

// serviceSample is one deploy of a variant under a client loop.
type serviceSample struct {
	requests, failures int
	// gap is the longest time the client went without an answer.
	gap time.Duration
	// downtime is gitric's (0 with overlap), hostBuild the build on the
	// host (phase 1), localBuild the local one, wall the deploy.Run call.
	downtime, hostBuild, localBuild, wall time.Duration
}

// TestCompareService deploys the example service (example/cmd/hello) in
// release mode under a client loop: the window without an answer and the
// failed requests for stop-then-start vs overlap (with and without the
// service's BPF steering), and the time a host build adds to a deploy vs a
// local build of the binary shipped in the commit.
func TestCompareService(t *testing.T) {
	if os.Getenv("GITRIC_BENCH") != "1" {
		t.Skip("benchmark: set GITRIC_BENCH=1 to run it")
	}
	if runtime.GOOS != "linux" {
		t.Skip("the example service overlaps with Linux's SO_REUSEPORT")
	}
	runs := benchRuns(t, serviceRuns)
	sshdtest.Require(t)
	load := loadAverage()
	srv, home := startHost(t)
	source := serviceSource(t)
	goEnv := serviceGoEnv(t)

	variants := []serviceVariant{
		{name: "stop-then-start", steer: true},
		{name: "overlap", overlap: true, steer: true},
		{name: "overlap, HELLO_STEER=0", overlap: true},
		{name: "overlap, local build (binary in the commit)", overlap: true, steer: true, artifact: true},
	}
	samples := make([][]serviceSample, len(variants))
	for k, v := range variants {
		samples[k] = serviceDeploys(t, srv, home, source, goEnv, v, k, runs)
	}

	rows := [][]string{{"variant", "deploys", "requests", "failed", "client gap median", "max", "gitric downtime", "host build", "local build", "deploy wall", "target"}}
	stopStart := medianOf2(samples[0], func(s serviceSample) time.Duration { return s.gap })
	for k, v := range variants {
		s := samples[k]
		var req, fail int
		var maxGap time.Duration
		for _, x := range s {
			req += x.requests
			fail += x.failures
			maxGap = max(maxGap, x.gap)
		}
		gap := medianOf2(s, func(s serviceSample) time.Duration { return s.gap })
		target := "-"
		switch {
		case v.overlap && v.steer:
			target = "0 failed " + verdict(fail == 0) + "; gap " + goal(float64(gap)/float64(stopStart), 0.5)
		case v.overlap:
			target = "- (for comparison: the race is possible, not certain)"
		}
		build := "-"
		if !v.artifact {
			build = msFine(medianOf2(s, func(s serviceSample) time.Duration { return s.hostBuild }))
		}
		local := "-"
		if v.artifact {
			local = msFine(medianOf2(s, func(s serviceSample) time.Duration { return s.localBuild }))
		}
		down := "none"
		if !v.overlap {
			down = msFine(medianOf2(s, func(s serviceSample) time.Duration { return s.downtime }))
		}
		rows = append(rows, []string{
			v.name, fmt.Sprint(len(s)), fmt.Sprint(req), fmt.Sprint(fail),
			msFine(gap), msFine(maxGap), down, build, local,
			ms(medianOf2(s, func(s serviceSample) time.Duration { return s.wall })),
			target,
		})
	}
	notes := []string{
		fmt.Sprintf("runs: %d timed deploys per variant, after a first deploy and 1 untimed warm-up; every deploy is a new commit that changes the service's source (so its binary), of example/cmd/hello as a module of its own; medians", runs),
		fmt.Sprintf("machine: nproc %s, %s/%s, %s, %s, %s; load average (1, 5, 15 min) %s before, %s after", nproc(), runtime.GOOS, runtime.GOARCH, commandOutput("ssh", "-V"), commandOutput("git", "--version"), commandOutput("go", "version"), load, loadAverage()),
		fmt.Sprintf("client: from the start of each deploy to its end, GET / one request after another, a new connection each (like a curl loop), %s apart, 127.0.0.1 only; failed: any error or non-200; client gap: the longest time between two answers (the window in which nothing answered, stop to listening again as the client sees it, plus one request)", serviceClientPause),
		"stage: release mode, shared data/, HTTPCheck of /health with HTTPCheckVersion, Stop = kill the release's hello.pid and wait until it is gone, Start = nohup bin/hello &; stop-then-start: Overlap false; overlap: start new, check, switch, stop old",
		"HELLO_STEER=0: the service listens with SO_REUSEPORT but attaches no BPF program, so the kernel's hash spreads new connections over old and new sockets, and a connection queued on the old one at the moment it closes is reset (net.ipv4.tcp_migrate_req is " + sysctl("net/ipv4/tcp_migrate_req") + " here); with one sequential client the window is microseconds wide, so few or no failures here do not mean it is safe: the steering makes it impossible, not unlikely",
		"client gap with overlap: nothing stops listening, so the gap is the client waiting its turn for a CPU (2 cores shared with sshd, git, the service and a host build), not a downtime; it is longest with a host build running",
		"host build: the stage's Build on the host, in the new release, in phase 1 while the old version serves (gitric's \"built releases/... in X\"); the host shares this machine's GOCACHE and GOMODCACHE, so it is a warm build; it adds to the deploy's wall time, not to the downtime",
		"local build: this variant builds the binary locally (go build, warm cache, timed apart) and commits it with the source, the objects an Artifacts deploy pushes; its deploy wall is deploy.Run alone, so an artifact deploy takes local build + deploy wall",
		"gitric is driven in-process (deploy.Run) against one OpenSSH sshd on 127.0.0.1 with SetEnv HOME=<a temp dir>: the stage's fields (Overlap, Build, Shared, HTTPCheck) are not in the bench magefile",
	}
	publish(t, textTable(rows, notes), markdownTable("gitric: the example service, stop-then-start vs overlap, host vs local build", rows, notes))
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func sysctl(name string) string {
	b, err := os.ReadFile("/proc/sys/" + name)
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(b))
}

func medianOf2(s []serviceSample, of func(serviceSample) time.Duration) time.Duration {
	xs := make([]time.Duration, len(s))
	for i, x := range s {
		xs[i] = of(x)
	}
	return median(xs)
}

// serviceSource is example/cmd/hello's code, as a module of its own.
func serviceSource(t *testing.T) map[string]string {
	t.Helper()
	dir := filepath.Join(moduleRoot(t), "example", "cmd", "hello")
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(names) == 0 {
		t.Fatalf("the example service's source in %s: %v", dir, err)
	}
	files := map[string]string{"go.mod": "module hello\n\ngo 1.26\n", ".gitignore": "/hello.pid\n/hello.log\n"}
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		files["cmd/hello/"+filepath.Base(n)] = string(b)
	}
	return files
}

// serviceGoEnv is what the host's commands need to build with this
// machine's Go: its directory in PATH, its caches.
func serviceGoEnv(t *testing.T) map[string]string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"PATH": filepath.Dir(goBin) + ":/usr/local/bin:/usr/bin:/bin"}
	for _, k := range []string{"GOCACHE", "GOMODCACHE"} {
		out, err := exec.Command("go", "env", k).Output()
		if err != nil {
			t.Fatal(err)
		}
		env[k] = strings.TrimSpace(string(out))
	}
	return env
}

// builtLine is gitric's line about a release build on a host.
var builtLine = regexp.MustCompile(`built releases/\S+ in (\S+)`)

// serviceDeploys deploys the service runs+2 times with variant v (a first
// deploy, a warm-up, then the timed ones) and returns the timed samples.
func serviceDeploys(t *testing.T, srv *sshdtest.Server, home string, source, goEnv map[string]string, v serviceVariant, k, runs int) []serviceSample {
	t.Helper()
	repo := repotest.New(t)
	port := serviceFreePort(t)
	path := fmt.Sprintf("service%d", k)
	env := map[string]string{"HELLO_PORT": port}
	for key, val := range goEnv {
		env[key] = val
	}
	if !v.steer {
		env["HELLO_STEER"] = "0"
	}
	stage := deploy.Stage{
		Name:             "bench",
		Hosts:            []string{srv.User + "@" + srv.Addr},
		Path:             path,
		Mode:             deploy.ModeRelease,
		Shared:           []string{"data/"},
		Env:              env,
		Start:            serviceStart,
		Stop:             serviceStop,
		Overlap:          v.overlap,
		HTTPCheck:        "http://127.0.0.1:" + port + "/health",
		HTTPCheckVersion: true,
	}
	if !v.artifact {
		stage.Build = serviceBuild
	}
	t.Cleanup(func() { stopBenchService(filepath.Join(home, path, "current")) })

	var samples []serviceSample
	for n := 0; n < runs+2; n++ {
		files := map[string]string{"cmd/hello/release.go": fmt.Sprintf("package main\n\n// release is this commit's number: every deploy changes the binary.\nvar release = %d\n\nfunc init() { _ = release }\n", n)}
		if n == 0 {
			for name, body := range source {
				files[name] = body
			}
		}
		repo.Write(t, files)
		var s serviceSample
		if v.artifact {
			// Without ldflags: the version is GITRIC_COMMIT, the commit
			// that holds the binary.
			begin := time.Now()
			cmd := exec.CommandContext(t.Context(), "go", "build", "-buildvcs=false", "-o", "bin/hello", "./cmd/hello")
			cmd.Dir = repo.Dir
			run(t, cmd)
			s.localBuild = time.Since(begin)
			repo.Git(t, "add", "-f", "bin/hello")
		}
		repo.Git(t, "add", "-A")
		repo.Git(t, "commit", "-q", "-m", fmt.Sprintf("release %d", n))

		var client *serviceClient
		if n > 0 {
			client = startServiceClient("http://127.0.0.1:" + port + "/")
		}
		var out bytes.Buffer
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
		begin := time.Now()
		res, err := deploy.Run(ctx, deploy.DeployOptions{
			Options: deploy.Options{
				Stage: stage,
				Dir:   repo.Dir,
				SSH:   deploy.SSH{IdentityFiles: []string{srv.ClientKeyFile}, KnownHostsFiles: []string{srv.KnownHostsFile}, ConfigFile: "none", IdentityAgent: "none"},
				Out:   &out,
			},
		})
		s.wall = time.Since(begin)
		cancel()
		if client != nil {
			s.requests, s.failures, s.gap = client.stop()
		}
		if err != nil {
			t.Fatalf("%s, deploy %d: %v\n%s", v.name, n, err, out.String())
		}
		if verbose() {
			t.Logf("%s, deploy %d: %d requests, %d failed, gap %s, wall %s\n%s", v.name, n, s.requests, s.failures, s.gap, s.wall, out.String())
		}
		s.downtime = res.Hosts[0].Downtime
		if m := builtLine.FindStringSubmatch(out.String()); m != nil {
			s.hostBuild, _ = time.ParseDuration(m[1])
		} else if !v.artifact {
			t.Fatalf("%s, deploy %d: gitric did not say how long the host build took:\n%s", v.name, n, out.String())
		}
		if n >= 2 {
			samples = append(samples, s)
		}
	}
	return samples
}

func serviceFreePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// stopBenchService stops the service of the live release dir, as the
// stage's Stop does, within 15 seconds.
func stopBenchService(dir string) {
	cmd := exec.Command("sh", "-c", serviceStop)
	cmd.Dir = dir
	cmd.WaitDelay = time.Second
	done := make(chan struct{})
	if cmd.Start() != nil {
		return
	}
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
	}
}

// serviceClient requests a URL in a loop, a new connection each time.
type serviceClient struct {
	done               chan struct{}
	wg                 sync.WaitGroup
	requests, failures int
	gap                time.Duration
}

func startServiceClient(target string) *serviceClient {
	c := &serviceClient{done: make(chan struct{})}
	httpc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		last := time.Now()
		for c.requests < serviceMaxRequests {
			select {
			case <-c.done:
				return
			default:
			}
			c.requests++
			resp, err := httpc.Get(target)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s", resp.Status)
				}
			}
			now := time.Now()
			if err != nil {
				c.failures++
			} else {
				c.gap = max(c.gap, now.Sub(last))
				last = now
			}
			time.Sleep(serviceClientPause)
		}
	}()
	return c
}

// stop ends the loop and returns what it saw.
func (c *serviceClient) stop() (requests, failures int, gap time.Duration) {
	close(c.done)
	c.wg.Wait()
	return c.requests, c.failures, c.gap
}
