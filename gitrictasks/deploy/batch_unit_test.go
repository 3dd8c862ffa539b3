package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestUnitBatchSize(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		spec    string
		n, want int
		bad     bool
	}{
		{spec: "", n: 5, want: 1},
		{spec: "1", n: 5, want: 1},
		{spec: " 2 ", n: 5, want: 2},
		{spec: "7", n: 5, want: 7}, // more than the hosts: one batch
		{spec: "all", n: 5, want: 5},
		{spec: "all", n: 0, want: 1},
		{spec: "40%", n: 5, want: 2},
		{spec: "50%", n: 5, want: 2}, // rounded down
		{spec: "100%", n: 5, want: 5},
		{spec: "1%", n: 5, want: 1}, // never less than one host
		{spec: "25%", n: 8, want: 2},
		{spec: "0", bad: true},
		{spec: "-1", bad: true},
		{spec: "0%", bad: true},
		{spec: "101%", bad: true},
		{spec: "x%", bad: true},
		{spec: "half", bad: true},
		{spec: "2.5", bad: true},
	} {
		got, err := batchSize(c.spec, c.n)
		switch {
		case c.bad && err == nil:
			t.Errorf("batchSize(%q, %d) = %d, want an error", c.spec, c.n, got)
		case !c.bad && err != nil:
			t.Errorf("batchSize(%q, %d): %v", c.spec, c.n, err)
		case !c.bad && got != c.want:
			t.Errorf("batchSize(%q, %d) = %d, want %d", c.spec, c.n, got, c.want)
		}
		if c.bad {
			o := DeployOptions{Options: Options{Stage: Stage{Name: "s", Hosts: []string{"h"}, Path: "app"}}, RolloutOptions: RolloutOptions{Batch: c.spec}}
			if err := o.Validate(); err == nil {
				t.Errorf("Validate accepts Batch %q", c.spec)
			}
		}
	}
}

// TestUnitBatchOrder cuts five local hosts over in batches and reads the
// order from a file every host's start command appends to: each batch's
// starts all come after every start of the batch before.
func TestUnitBatchOrder(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		batch string
		want  [][]string
	}{
		{"2", [][]string{{"h1", "h2"}, {"h3", "h4"}, {"h5"}}},
	} {
		t.Run(c.batch, func(t *testing.T) {
			t.Parallel()
			f := newUnitFleet(t, 5)
			seq := filepath.Join(t.TempDir(), "seq")
			opts := f.options()
			opts.Batch = c.batch
			opts.Stage.Start = `echo "begin $HOST" >>` + seq + `; sleep 0.05; echo "end $HOST" >>` + seq
			opts.Stage.HostEnv = map[string]map[string]string{}
			for _, n := range f.names {
				opts.Stage.HostEnv[n] = map[string]string{"HOST": n}
			}
			if _, err := Run(context.Background(), opts); err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(seq)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			// batchOf: the batch each host's lines must fall in.
			batchOf := map[string]int{}
			for i, batch := range c.want {
				for _, h := range batch {
					batchOf[h] = i
				}
			}
			last := 0
			seen := map[string]int{}
			for _, l := range lines {
				_, h, _ := strings.Cut(l, " ")
				k, ok := batchOf[h]
				if !ok || k < last {
					t.Fatalf("start order:\n%s\nwant batches %v", b, c.want)
				}
				last = k
				seen[h]++
			}
			if len(seen) != len(batchOf) {
				t.Errorf("hosts started: %v, want %v", seen, c.want)
			}
			for h, n := range seen {
				if n != 2 {
					t.Errorf("%s wrote %d lines, want 2", h, n)
				}
			}
			for i, batch := range c.want {
				line := fmt.Sprintf("phase 2/2: batch %d/%d: [%s]", i+1, len(c.want), strings.Join(batch, " "))
				if !slices.Contains(strings.Split(f.out.String(), "\n"), line) {
					t.Errorf("output lacks %q", line)
				}
			}
		})
	}
}
