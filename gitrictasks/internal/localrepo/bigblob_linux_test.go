package localrepo

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/repotest"
)

const (
	// bigBlob is the size of the blob TestWritePackBigBlob streams.
	bigBlob = 100 << 20
	// bigBlobRSS is the most the writing process may hold resident.
	bigBlobRSS = bigBlob / 2
	// helperEnv names the repository the helper process packs.
	helperEnv = "GITRIC_TEST_PACK_REPO"
)

// TestWritePackBigBlob packs a 100 MiB blob, loose then packed, in a child
// process whose peak RSS must stay well under the blob's size: the blob is
// streamed (compressed from the loose file, or copied from the packfile),
// not held. The pack goes to git index-pack --strict.
func TestWritePackBigBlob(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 100 MiB blob")
	}
	t.Parallel()
	requireGit(t)
	src := repotest.New(t)
	// The blob, made by git from generated text that compresses about 2:1.
	cmd := exec.Command("git", "hash-object", "-w", "--stdin")
	cmd.Dir = src.Dir
	cmd.Env = repotest.Env()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(in, 1<<20)
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n < bigBlob; {
		k, _ := fmt.Fprintf(bw, "line %09d %016x %08x\n", n, rng.Uint64(), rng.Uint32()&0xffff)
		n += k
	}
	bw.Flush()
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	blob := strings.TrimSpace(out.String())
	src.Git(t, "update-index", "--add", "--cacheinfo", "100644,"+blob+",big.bin")
	src.Git(t, "commit", "-q", "-m", "big")
	head := src.Head(t)

	for _, layout := range []string{"loose", "packed"} {
		if layout == "packed" {
			src.Git(t, "-c", "pack.compression=1", "repack", "-adq")
		}
		rss, size := packInChild(t, src.Dir, head)
		t.Logf("%s: pack of %d bytes, writer's peak RSS %.1f MiB", layout, size, float64(rss)/(1<<20))
		if rss > bigBlobRSS {
			t.Errorf("%s: the writer's peak RSS was %.1f MiB for a %d MiB blob, want under %d MiB", layout, float64(rss)/(1<<20), bigBlob>>20, bigBlobRSS>>20)
		}
	}
}

// packInChild runs TestWritePackHelper in a child process to pack commit
// of the repository in dir, feeds the pack to git index-pack --strict and
// returns the child's peak RSS and the pack's size in bytes. The child
// reports its own peak (VmHWM): ru_maxrss would count the memory of this
// process, which the child shares until it execs.
func packInChild(t *testing.T, dir, commit string) (rss, size int64) {
	t.Helper()
	child := exec.Command(os.Args[0], "-test.run=^TestWritePackHelper$", "-test.count=1")
	child.Env = append(os.Environ(), helperEnv+"="+dir+"\n"+commit)
	child.Stderr = os.Stderr
	var childOut strings.Builder
	child.Stdout = &childOut
	// The pack comes on file descriptor 3: the test binary prints on its
	// standard output.
	pack, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pack.Close()
	child.ExtraFiles = []*os.File{pw}
	tg := repotest.NewBare(t)
	ix := exec.Command("git", "index-pack", "--stdin", "--strict")
	ix.Dir = tg.Dir
	ix.Env = repotest.Env()
	cr := &countReader{r: pack}
	ix.Stdin = cr
	var ixOut strings.Builder
	ix.Stdout, ix.Stderr = &ixOut, &ixOut
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	ixErr := ix.Run()
	if err := child.Wait(); err != nil {
		t.Fatalf("helper process: %v", err)
	}
	if ixErr != nil {
		t.Fatalf("git index-pack: %v: %s", ixErr, ixOut.String())
	}
	m := regexp.MustCompile(`peak-rss-kib=(\d+)`).FindStringSubmatch(childOut.String())
	if m == nil {
		t.Fatalf("the helper process did not report its peak RSS:\n%s", childOut.String())
	}
	kib, _ := strconv.ParseInt(m[1], 10, 64)
	return kib << 10, cr.n
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestWritePackHelper is the child process of packInChild: it writes the
// pack of the commit named in its environment to file descriptor 3.
func TestWritePackHelper(t *testing.T) {
	v := os.Getenv(helperEnv)
	if v == "" {
		t.Skip("helper process of TestWritePackBigBlob")
	}
	dir, commit, _ := strings.Cut(v, "\n")
	r, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(3, "pack")
	defer f.Close()
	w := bufio.NewWriterSize(f, 64<<10)
	if _, err := r.WritePack(context.Background(), w, plumbing.NewHash(commit), nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`VmHWM:\s*(\d+) kB`).FindSubmatch(status)
	if m == nil {
		t.Fatal("no VmHWM in /proc/self/status")
	}
	fmt.Printf("peak-rss-kib=%s\n", m[1])
}
