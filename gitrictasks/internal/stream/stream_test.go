package stream

import (
	"bytes"
	"strings"
	"sync"
	"testing"
)

func TestTail(t *testing.T) {
	for _, c := range []struct {
		max    int
		writes []string
		want   string
	}{
		{max: 4, writes: []string{"ab"}, want: "ab"},
		{max: 4, writes: []string{"ab", "cd", "ef"}, want: "cdef"},
		{max: 4, writes: []string{"abcdefgh"}, want: "efgh"},
		{max: 0, writes: []string{"abc"}, want: ""},
	} {
		tl := &Tail{Max: c.max}
		for _, w := range c.writes {
			if n, err := tl.Write([]byte(w)); n != len(w) || err != nil {
				t.Fatalf("Write(%q) = %d, %v", w, n, err)
			}
		}
		if got := tl.String(); got != c.want {
			t.Errorf("Tail{%d} after %q = %q, want %q", c.max, c.writes, got, c.want)
		}
	}
}

func TestCounter(t *testing.T) {
	var out bytes.Buffer
	c := &Counter{W: &out}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, _ = (&Counter{}).Write([]byte("x")) // nil W: counted, dropped
				_ = c.Count()
			}
		}()
	}
	wg.Wait()
	_, _ = c.Write([]byte(strings.Repeat("y", 10)))
	if c.Count() != 10 || out.Len() != 10 {
		t.Errorf("Count = %d, written %d, want 10", c.Count(), out.Len())
	}
}
