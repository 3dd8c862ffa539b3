package gitrictasks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/console"
)

// How a deploy hears that it should stop.
//
// A mage call is three processes: go tool mage (when mage is a Go tool),
// mage, and the magefile that mage compiled, which runs the targets. Ctrl-C
// signals all three (the terminal's process group); the compiled magefile
// cancels the targets' context on SIGINT and gives them 5 seconds. But a
// signal sent to the top process alone, as CI runners and timeout(1) send
// SIGTERM, goes no further than mage: go tool forwards every signal to
// mage, mage forwards none and dies of SIGTERM (it catches only SIGINT, and
// then waits for its child), and the compiled magefile would go on
// deploying without anyone to report to. So an action also stops on
// SIGTERM and SIGHUP sent to this process, and when its parent process is
// gone (its parent process ID changes: it was re-parented).
//
// The parent is polled rather than watched with Linux's PR_SET_PDEATHSIG,
// which fires when the thread that started this process exits, not the
// process, and which works on Linux only.

// parent is this process's parent when the package was initialised.
var parent = os.Getppid()

// parentPoll is how often an action looks at its parent process.
var parentPoll = 100 * time.Millisecond

// ErrStopped is the cause of an action's cancellation by SIGTERM, SIGHUP
// or the death of mage.
var ErrStopped = errors.New("stopped")

// stopOnSignals returns ctx, cancelled as well on SIGTERM or SIGHUP (unless
// SIGHUP was ignored, as under nohup), or when the parent process is gone;
// and whichever cancels it, a line on con says so. A second signal ends
// the process at once. stop releases the signals.
func stopOnSignals(ctx context.Context, con *console.Console) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	sigs := []os.Signal{syscall.SIGTERM}
	if !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, sigs...)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(parentPoll)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				con.Printf("%s: finishing the host steps under way; hosts not cut over yet stay as they are", why(context.Cause(ctx)))
				select {
				case <-done:
				case sig := <-ch:
					con.Printf("%v again: exiting now", sig)
					os.Exit(128 + signum(sig))
				}
				return
			case sig := <-ch:
				cancel(fmt.Errorf("%w by %v", ErrStopped, sig))
			case <-tick.C:
				if os.Getppid() != parent {
					cancel(fmt.Errorf("%w: mage (process %d) is gone", ErrStopped, parent))
				}
			}
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		<-finished
		cancel(nil)
	}
}

// why words the cause of a cancellation for the console.
func why(cause error) string {
	switch {
	case errors.Is(cause, ErrStopped):
		return cause.Error()
	case errors.Is(cause, context.DeadlineExceeded):
		return "mage's -t timeout is up"
	default:
		return "interrupted"
	}
}

func signum(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return int(s)
	}
	return 1
}
