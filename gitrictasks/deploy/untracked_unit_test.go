package deploy

import (
	"slices"
	"testing"
)

func TestUnitUntrackedConflicts(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name             string
		added, untracked []string
		want             []string
	}{
		{name: "nothing untracked", added: []string{"a.txt"}},
		{name: "nothing added", untracked: []string{"a.txt"}},
		{name: "a file added over an untracked file", added: []string{"a.txt", "b.txt"}, untracked: []string{"a.txt", "c.txt"}, want: []string{"a.txt"}},
		{name: "an untracked directory replaced by a file", added: []string{"data"}, untracked: []string{"data/y.csv", "data/sub/x.csv", "database"}, want: []string{"data/sub/x.csv", "data/y.csv"}},
		{name: "an untracked file where a directory is added", added: []string{"logs/app/today.log"}, untracked: []string{"logs"}, want: []string{"logs"}},
		{name: "an untracked file where a deeper directory is added", added: []string{"logs/app/today.log"}, untracked: []string{"logs/app"}, want: []string{"logs/app"}},
		{name: "no conflict: siblings and look-alike names", added: []string{"src/new.go", "a"}, untracked: []string{"src/old.tmp", "srcx/y", "ab", "a.bak"}},
		{name: "each conflict once, sorted", added: []string{"z", "z/1", "m"}, untracked: []string{"z", "m", "z/1/deep"}, want: []string{"m", "z", "z/1/deep"}},
	} {
		got := untrackedConflicts(c.added, c.untracked)
		if !slices.Equal(got, c.want) && !(len(got) == 0 && len(c.want) == 0) {
			t.Errorf("%s: untrackedConflicts(%q, %q) = %q, want %q", c.name, c.added, c.untracked, got, c.want)
		}
	}
}
