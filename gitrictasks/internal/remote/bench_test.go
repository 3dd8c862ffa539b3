package remote_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/remote"
	"github.com/gitric/gitric/gitrictasks/internal/sshdtest"
)

// TestCompareConnectionSetup measures what one host costs to set up:
// dial, handshake, host key check, authentication and a first command
// (true), for gitric (remote.Dial) and for OpenSSH (ssh -F config host
// true, BatchMode) against the same loopback sshd, with the same
// ssh_config, alternating runs. It prints the medians and their ratio
// (target: gitric/ssh <= 1.0); it never fails on timing.
//
// It runs only with GITRIC_BENCH=1; GITRIC_BENCH_RUNS sets the number of
// runs (default 9). Two servers are measured: one whose sessions start
// bash without the login user's ~/.bashrc (the connection's own cost),
// and one with the login shell as configured.
func TestCompareConnectionSetup(t *testing.T) {
	if os.Getenv("GITRIC_BENCH") != "1" {
		t.Skip("set GITRIC_BENCH=1 to measure connection setup")
	}
	sshdtest.Require(t)
	sshBin := requireTool(t, "ssh")
	runs := 9
	if v := os.Getenv("GITRIC_BENCH_RUNS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("GITRIC_BENCH_RUNS=%q", v)
		}
		runs = n
	}
	for _, tt := range []struct {
		name string
		opts sshdtest.Options
	}{
		{"shell without ~/.bashrc", sshdtest.Options{FastShell: true}},
		{"login shell as configured", sshdtest.Options{}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := sshdtest.Start(t, tt.opts)
			cfgFile := writeFile(t, t.TempDir(), "config", block("bench", srv, "ControlMaster no", "ControlPath none"))
			gitric := func() error {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				h, err := remote.Dial(ctx, remote.Address{Host: "bench"}, remote.Config{SSHConfigFile: cfgFile})
				if err != nil {
					return err
				}
				defer h.Close()
				_, err = h.Output(ctx, "true", "true")
				return err
			}
			openssh := func() error {
				cmd := exec.Command(sshBin, "-F", cfgFile, "-o", "BatchMode=yes", "bench", "true")
				cmd.Env = append(os.Environ(), "SSH_AUTH_SOCK=")
				if out, err := cmd.CombinedOutput(); err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				return nil
			}
			// One untimed run of each warms caches (sshd's binary, keys).
			for _, f := range []func() error{gitric, openssh} {
				if err := f(); err != nil {
					t.Fatal(err)
				}
			}
			var g, o []time.Duration
			for range runs {
				for _, m := range []struct {
					f   func() error
					out *[]time.Duration
				}{{gitric, &g}, {openssh, &o}} {
					start := time.Now()
					if err := m.f(); err != nil {
						t.Fatal(err)
					}
					*m.out = append(*m.out, time.Since(start))
				}
			}
			gm, om := median(g), median(o)
			ratio := float64(gm) / float64(om)
			verdict := "PASS"
			if ratio > 1.0 {
				verdict = "MISS"
			}
			fmt.Printf("connection setup per host (%s), median of %d: gitric %v, ssh %v, ratio %.2f (target <= 1.0): %s\n",
				tt.name, runs, gm.Round(10*time.Microsecond), om.Round(10*time.Microsecond), ratio, verdict)
			t.Logf("gitric runs %v", g)
			t.Logf("ssh runs    %v", o)
		})
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
