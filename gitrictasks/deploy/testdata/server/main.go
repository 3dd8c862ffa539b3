// Command server is the HTTP service of gitric's deploy tests: it listens
// on 127.0.0.1:$PORT with SO_REUSEPORT (so that two versions can listen at
// once) and steers the port's new connections to the newest listener (a
// listener that closes resets the connections still in its accept queue:
// the old version must get none once the new one listens; see listen),
// answers every request with "version <short commit>" (from
// GITRIC_COMMIT; "version stale" when a file named broken is in its
// directory), writes its pid to server.pid in its working directory, and on
// SIGTERM stops accepting, drains the requests under way, removes the pid
// file and exits.
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
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// listen binds addr with SO_REUSEPORT. The first listener of a port (steer)
// attaches a program to the port's group of listeners that picks the
// second listener in the group, the one that joined last: with two (the
// old version and the new one), new connections all go to the new one;
// with one, the answer is out of range and the kernel picks as usual. The
// kernel lets only a socket that is alone in its group bring a program.
func listen(addr string, steer bool) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		return control(c, func(fd int) error {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil || !steer {
				return err
			}
			prog := []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 1}}
			return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &unix.SockFprog{Len: 1, Filter: &prog[0]})
		})
	}}
	return lc.Listen(context.Background(), "tcp", addr)
}

func control(c syscall.RawConn, fn func(fd int) error) error {
	var ferr error
	if err := c.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

func main() {
	version := os.Getenv("GITRIC_COMMIT")
	if len(version) > 7 {
		version = version[:7]
	}
	if _, err := os.Stat("broken"); err == nil {
		version = "stale"
	}
	ln, err := listen("127.0.0.1:"+os.Getenv("PORT"), true)
	if errors.Is(err, unix.EADDRINUSE) {
		// Others listen: join them (and their group's program).
		ln, err = listen("127.0.0.1:"+os.Getenv("PORT"), false)
	}
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "version %s\n", version)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	if err := os.WriteFile("server.pid.new", []byte(fmt.Sprintln(os.Getpid())), 0o644); err != nil {
		log.Fatal(err)
	}
	if err := os.Rename("server.pid.new", "server.pid"); err != nil {
		log.Fatal(err)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		<-term
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			log.Print(err)
		}
		close(done)
	}()
	log.Printf("version %s listening on %s", version, ln.Addr())
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		log.Fatal(err)
	}
	<-done
	os.Remove("server.pid")
	log.Print("drained; exiting")
}
