package repotest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"sort"
	"strings"
	"testing"
)

// Code describes a generated history that looks like a software project's:
// source files of realistic size, most commits editing a few lines of one to
// three of them, files renamed, added and removed now and then.
type Code struct {
	Commits int // commits to make
	Files   int // source files at the start
	// MinSize and MaxSize bound a new file's size in bytes (2 KB and
	// 20 KB when zero).
	MinSize, MaxSize int
	Seed             uint64
}

// CodeHistory appends c.Commits commits to branch main, made in one git
// fast-import run, then packs the repository as a developer's clone is
// (git repack -adf, then git gc) and checks the working copy out. The
// history is the same for the same Code.
func (r *Repo) CodeHistory(t testing.TB, c Code) {
	t.Helper()
	if c.MinSize == 0 {
		c.MinSize = 2 << 10
	}
	if c.MaxSize == 0 {
		c.MaxSize = 20 << 10
	}
	g := &codeGen{rng: rand.New(rand.NewPCG(c.Seed, 0x9e3779b97f4a7c15)), files: map[string][]string{}}
	var in bytes.Buffer
	parent := ""
	if out, err := Git(r.Dir, "rev-parse", "-q", "--verify", "refs/heads/main"); err == nil {
		parent = out
	}
	when := int64(1700000000)
	for n := 0; n < c.Commits; n++ {
		when += int64(60 + g.rng.IntN(7200))
		fmt.Fprintf(&in, "commit refs/heads/main\nmark :%d\n", n+1)
		fmt.Fprintf(&in, "author Dev%d <dev%d@example.com> %d +0000\n", n%7, n%7, when)
		fmt.Fprintf(&in, "committer Dev%d <dev%d@example.com> %d +0000\n", n%7, n%7, when)
		var ops bytes.Buffer
		var msg string
		if n == 0 {
			for i := 0; i < c.Files; i++ {
				p := g.newPath()
				g.files[p] = g.newFile(c.MinSize, c.MaxSize)
				g.write(&ops, p)
			}
			msg = "Initial import"
		} else {
			msg = g.change(&ops, c, n == c.Commits-1)
		}
		fmt.Fprintf(&in, "data %d\n%s\n", len(msg), msg)
		switch {
		case n > 0:
			fmt.Fprintf(&in, "from :%d\n", n)
		case parent != "":
			fmt.Fprintf(&in, "from %s\n", parent)
		}
		in.Write(ops.Bytes())
		in.WriteString("\n")
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = r.Dir
	cmd.Env = Env()
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git fast-import: %v: %s", err, out)
	}
	r.Git(t, "repack", "-adf", "-q")
	r.Git(t, "gc", "-q")
	r.Git(t, "reset", "-q", "--hard", "main")
}

type codeGen struct {
	rng   *rand.Rand
	files map[string][]string // path: lines
	seq   int
}

var (
	codeDirs  = []string{"cmd/server", "internal/api", "internal/store", "internal/auth", "internal/queue", "pkg/client", "pkg/model", "web/static", "web/templates", "internal/metrics", "internal/config", "docs"}
	codeWords = strings.Fields("ctx err return if for range func var const type struct interface map string int64 bool nil true false make append len cap " +
		"request response handler user account order item value key cache store query result config server client conn buffer reader writer " +
		"status timeout retry count total index offset limit name path token session event message payload header body")
)

func (g *codeGen) newPath() string {
	for {
		g.seq++
		p := fmt.Sprintf("%s/%s_%d.go", codeDirs[g.rng.IntN(len(codeDirs))], codeWords[g.rng.IntN(len(codeWords))], g.seq)
		if _, ok := g.files[p]; !ok {
			return p
		}
	}
}

func (g *codeGen) line() string {
	var b strings.Builder
	b.WriteString(strings.Repeat("\t", 1+g.rng.IntN(3)))
	for k := 2 + g.rng.IntN(9); k > 0; k-- {
		b.WriteString(codeWords[g.rng.IntN(len(codeWords))])
		if k > 1 {
			b.WriteString([]string{" ", " := ", ".", "(", ", ", " = "}[g.rng.IntN(6)])
		}
	}
	if g.rng.IntN(4) == 0 {
		fmt.Fprintf(&b, " // %d", g.rng.IntN(100000))
	}
	return b.String()
}

func (g *codeGen) newFile(minSize, maxSize int) []string {
	size := minSize + g.rng.IntN(maxSize-minSize+1)
	lines := []string{"package " + codeWords[g.rng.IntN(len(codeWords))], ""}
	n := 0
	for n < size {
		var l string
		if g.rng.IntN(12) == 0 {
			l = fmt.Sprintf("func %s%d(%s %s) error {", codeWords[g.rng.IntN(len(codeWords))], g.rng.IntN(1000), codeWords[g.rng.IntN(len(codeWords))], codeWords[g.rng.IntN(len(codeWords))])
		} else if g.rng.IntN(12) == 0 {
			l = "}"
		} else {
			l = g.line()
		}
		lines = append(lines, l)
		n += len(l) + 1
	}
	return lines
}

func (g *codeGen) write(ops *bytes.Buffer, p string) {
	body := strings.Join(g.files[p], "\n") + "\n"
	fmt.Fprintf(ops, "M 100644 inline %s\ndata %d\n%s\n", p, len(body), body)
}

// paths is the files' paths in order, for choices that do not depend on
// map order.
func (g *codeGen) paths() []string {
	ps := make([]string, 0, len(g.files))
	for p := range g.files {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// change makes one commit's changes and returns its message; with edit,
// only edits (the history's last commit changes files that exist).
func (g *codeGen) change(ops *bytes.Buffer, c Code, edit bool) string {
	ps := g.paths()
	k := g.rng.IntN(100)
	if edit {
		k = 100
	}
	switch {
	case k < 2 && len(ps) > 1: // rename, with a small edit as git mv + fix-up does
		old := ps[g.rng.IntN(len(ps))]
		p := g.newPath()
		g.files[p] = g.files[old]
		delete(g.files, old)
		fmt.Fprintf(ops, "D %s\n", old)
		g.edit(p, 1)
		g.write(ops, p)
		return "Rename " + old + " to " + p
	case k < 3: // a new file
		p := g.newPath()
		g.files[p] = g.newFile(c.MinSize, c.MaxSize)
		g.write(ops, p)
		return "Add " + p
	case k < 4 && len(ps) > c.Files/2: // a file goes
		p := ps[g.rng.IntN(len(ps))]
		delete(g.files, p)
		fmt.Fprintf(ops, "D %s\n", p)
		return "Remove " + p
	}
	n := 1 + g.rng.IntN(3)
	var touched []string
	for i := 0; i < n; i++ {
		p := ps[g.rng.IntN(len(ps))]
		g.edit(p, 1+g.rng.IntN(6))
		g.write(ops, p)
		touched = append(touched, p)
	}
	return "Update " + strings.Join(touched, ", ")
}

// edit changes about n lines of p: replaced, inserted or deleted.
func (g *codeGen) edit(p string, n int) {
	lines := g.files[p]
	for ; n > 0; n-- {
		i := 2 + g.rng.IntN(max(1, len(lines)-2))
		if i > len(lines) {
			i = len(lines)
		}
		switch g.rng.IntN(3) {
		case 0:
			if i < len(lines) {
				lines[i] = g.line()
				continue
			}
			fallthrough
		case 1:
			lines = append(lines[:i], append([]string{g.line()}, lines[i:]...)...)
		default:
			if i < len(lines) && len(lines) > 10 {
				lines = append(lines[:i], lines[i+1:]...)
			}
		}
	}
	g.files[p] = lines
}
