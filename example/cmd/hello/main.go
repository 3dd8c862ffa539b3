// Command hello is the example service that gitric deploys: a small web
// server, standard library only.
//
//	GET /        "hello from <version> (request <n>)": n counts the requests
//	             to / in data/counter, which outlives restarts and releases
//	GET /health  200 "ok <version>", for gitric's HTTPCheck
//
// Its version is the source commit: -ldflags "-X main.version=<commit>"
// at build time, else GITRIC_COMMIT (gitric exports it to every command on
// the host), else the commit go build stamped into the binary.
//
// It listens on 127.0.0.1:$HELLO_PORT (18080 by default) with SO_REUSEPORT,
// so that a new version can listen on the same port while the old one
// still serves (gitric's Overlap), writes its pid to hello.pid in its
// working directory (its release), and on SIGTERM or SIGINT drains the
// requests under way and exits.
//
// # Losing no request when two versions overlap
//
// With SO_REUSEPORT the kernel spreads new connections over every socket
// listening on the port. Closing one of them resets the connections still
// in its accept queue (handshake done, not accepted yet) unless the sysctl
// net.ipv4.tcp_migrate_req=1 (Linux 5.14+) moves them to another socket of
// the group. A service that stops while a new version listens must
// therefore make sure that nothing is queued on its socket when it closes
// it. Stopping to accept, or draining for a while, is not enough: the
// kernel keeps queueing new connections on the old socket until the very
// moment it is closed.
//
// hello does it without the sysctl (see listen_linux.go): every process
// attaches to the port's group a one-instruction classic BPF program that
// sends each new connection to the newest socket of the group (index 1
// when two versions listen; with one, the index is out of range and the
// kernel falls back to its hash). Once the new version listens, the old
// socket receives nothing new; the old process keeps accepting what was
// already queued, and when gitric stops it (after the new one passed the
// health check) its queue is empty: http.Server.Shutdown closes the
// listener, lets the requests under way finish (at most drainTimeout) and
// closes idle keep-alive connections. This assumes at most two versions
// at a time, as gitric's Overlap runs them (start new, check, stop old).
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// version is set at build time: go build -ldflags "-X main.version=$GITRIC_COMMIT".
var version string

const (
	defaultPort = "18080"
	// drainTimeout bounds how long a stopping process waits for the
	// requests under way.
	drainTimeout = 10 * time.Second
	pidFile      = "hello.pid"
	counterFile  = "data/counter"
)

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	// A SIGHUP (the session that started us ending) must not stop us.
	signal.Ignore(syscall.SIGHUP)
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	v := resolveVersion(version, os.Getenv("GITRIC_COMMIT"), buildRevision())
	port := os.Getenv("HELLO_PORT")
	if port == "" {
		port = defaultPort
	}
	addr := net.JoinHostPort("127.0.0.1", port)
	counter, err := newCounter(counterFile)
	if err != nil {
		return err
	}
	ln, err := listen(context.Background(), addr, os.Getenv("HELLO_STEER") != "0")
	if err != nil {
		return err
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		ln.Close()
		return err
	}
	defer removeOwnPidFile()
	srv := &http.Server{Handler: handler(v, counter), ReadHeaderTimeout: 10 * time.Second}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Printf("hello %s listening on %s (pid %d)", v, addr, os.Getpid())

	select {
	case err := <-served:
		return err
	case sig := <-stop:
		log.Printf("hello %s: %v: draining", v, sig)
	}
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	log.Printf("hello %s: stopped", v)
	return nil
}

// handler serves / and /health.
func handler(version string, c *counter) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ok %s\n", version)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		n, err := c.increment()
		if err != nil {
			log.Printf("counter: %v", err)
			http.Error(w, "counter: "+err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "hello from %s (request %d)\n", version, n)
	})
	return mux
}

// resolveVersion is the first of the build-time version, GITRIC_COMMIT and
// the stamped VCS revision that is set.
func resolveVersion(ldflags, env, stamped string) string {
	for _, v := range []string{ldflags, env, stamped} {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return "unknown"
}

// buildRevision is the commit go build stamped into the binary, if any.
func buildRevision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev != "" && modified == "true" {
		rev += "-dirty"
	}
	return rev
}

// removeOwnPidFile removes hello.pid if it still names this process (a
// newer process in the same directory may have replaced it).
func removeOwnPidFile() {
	b, err := os.ReadFile(pidFile)
	if err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(os.Getpid()) {
		os.Remove(pidFile)
	}
}

// counter is a number in a file, shared by every process that runs in
// (or links to) the same data directory.
type counter struct {
	path string
}

func newCounter(path string) (*counter, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return &counter{path: path}, nil
}

// increment adds one to the counter and returns the new value. A lock file
// orders the processes; the new value replaces the file by a rename, so a
// crash never leaves half a number.
func (c *counter) increment() (int64, error) {
	unlock, err := lockFile(c.path + ".lock")
	if err != nil {
		return 0, err
	}
	defer unlock()
	var n int64
	b, err := os.ReadFile(c.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return 0, err
	default:
		if n, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return 0, fmt.Errorf("%s: %w", c.path, err)
		}
	}
	n++
	tmp := fmt.Sprintf("%s.%d.tmp", c.path, os.Getpid())
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(n, 10)+"\n"), 0o644); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, c.path); err != nil {
		os.Remove(tmp)
		return 0, err
	}
	return n, nil
}
