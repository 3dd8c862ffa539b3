//go:build mage

// The example's magefile: what a project that deploys with gitric writes.
package main

import (
	"context"
	"os"

	//mage:import gitric
	"github.com/gitric/gitric/gitrictasks"
	"github.com/gitric/gitric/gitrictasks/deploy"

	"github.com/gitric/gitric/example/internal/demo"
)

// The service is example/cmd/hello, a web server (see its package comment).
const (
	// defaultPort is where the example listens, unless HELLO_PORT says
	// otherwise.
	defaultPort = "18080"
	// build builds the service, locally (see Artifacts); GITRIC_COMMIT is
	// the source commit.
	// -trimpath: the same source gives the same bytes, so an unchanged
	// binary is the same git object, not sent again.
	build = `go build -trimpath -ldflags "-X main.version=$GITRIC_COMMIT" -o bin/hello ./example/cmd/hello`
	// start runs the service in the background, in the release, and
	// returns at once; it writes hello.pid there.
	start = `nohup bin/hello >>hello.log 2>&1 </dev/null & echo "hello started (pid $!)"`
	// stop stops the service of this release only (Overlap runs it in the
	// old release once the new one serves) and waits until it has
	// drained its requests and removed its pid file.
	stop = `[ -f hello.pid ] || { echo "hello was not running"; exit 0; }
pid=$(cat hello.pid)
kill "$pid" 2>/dev/null || { rm -f hello.pid; echo "hello was not running"; exit 0; }
while [ -f hello.pid ] && kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
echo "hello stopped (pid $pid)"`
)

// service is the stage for the example service on port.
func service(path, port string) gitrictasks.StageConfig {
	return gitrictasks.StageConfig{
		Path: path,
		// Each deploy checks out a new release next to the one serving;
		// data/ (the counter) lives in the shared directory, linked into
		// every release.
		Mode:   deploy.ModeRelease,
		Shared: []string{"data/"},
		// The binary is built here, in a clean checkout of the commit, and
		// shipped with it as a git object: the hosts need no Go, an
		// unchanged binary is not sent again, and a rollback runs the
		// very binary it ran before.
		Artifacts: &deploy.Artifacts{Command: build, Paths: []string{"bin/hello"}},
		Env:       map[string]string{"HELLO_PORT": port},
		Start:     start,
		Stop:      stop,
		// Start the new version, check that it answers with the new
		// commit, switch, then stop the old one: no moment without a
		// listener.
		Overlap:          true,
		HTTPCheck:        "http://127.0.0.1:" + port + "/health",
		HTTPCheckVersion: true,
	}
}

func init() {
	port := os.Getenv("HELLO_PORT")
	if port == "" {
		port = defaultPort
	}
	// prod: real servers. Replace the host, or override it without editing
	// this file: GITRIC_HOSTS=deploy@web1,deploy@web2:2222 mage gitric:prod gitric:deploy
	prod := service("apps/hello", port) // relative to the deploy user's home
	prod.Hosts = []string{"deploy@hello.example.com"}
	gitrictasks.SetStage("prod", prod)
	// local: the embedded SSH host (mage gitric:local gitric:deploy); only its path and
	// commands come from here.
	gitrictasks.SetStage("local", service("hello", port))
}

// Demo deploys three commits to the local stage while a client requests the service.
//
// It clones this repository's committed HEAD into a temporary directory,
// deploys it with go tool mage gitric:local gitric:deploy (on a free port:
// HELLO_PORT), starts a client that requests the service in a loop, one
// new connection per request (at most 20000 requests or 3 minutes, on
// 127.0.0.1 only), deploys two more commits, and prints what the client
// saw: requests, failures, the versions that answered, the counter. It
// fails if a request failed, if the version did not change, or if the
// counter did not go up by one on every request. It then stops the
// service and removes the clone.
//
//	go tool mage demo
func Demo(ctx context.Context) error {
	_, err := demo.Run(ctx, demo.Options{Dir: ".", Out: os.Stdout})
	return err
}
