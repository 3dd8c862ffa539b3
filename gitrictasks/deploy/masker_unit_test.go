package deploy

import (
	"strings"
	"testing"
)

func TestUnitMasker(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		secrets map[string]string
		writes  []string
		flush   bool
		want    string
	}{
		{name: "no secrets: passed through as written", writes: []string{"a pass", "word\n"}, want: "a password\n"},
		{name: "one secret", secrets: map[string]string{"TOKEN": "s3cr3t"}, writes: []string{"token=s3cr3t ok\n"}, want: "token=*** ok\n"},
		{name: "split across writes", secrets: map[string]string{"TOKEN": "s3cr3t"}, writes: []string{"token=s3", "c", "r3t ok\n"}, want: "token=*** ok\n"},
		{name: "several secrets on several lines", secrets: map[string]string{"A": "alpha-key", "B": "bravo-key"},
			writes: []string{"a alpha-key\nb bravo", "-key and alpha-key again\n"}, want: "a ***\nb *** and *** again\n"},
		{name: "one secret inside another", secrets: map[string]string{"SHORT": "hunter", "LONG": "hunter2-extra"},
			writes: []string{"long hunter2-extra, short hunter\n"}, want: "long ***, short ***\n"},
		{name: "short values are not masked", secrets: map[string]string{"N": "1", "AB": "ab"}, writes: []string{"1 abc 21\n"}, want: "1 abc 21\n"},
		{name: "a short and a long one", secrets: map[string]string{"N": "ab", "KEY": "abcdef"}, writes: []string{"abcdef ab\n"}, want: "*** ab\n"},
		{name: "a partial line waits for its newline", secrets: map[string]string{"K": "s3cr3t"}, writes: []string{"no newline s3cr3t"}, want: ""},
		{name: "Flush writes the last partial line, masked", secrets: map[string]string{"K": "s3cr3t"}, writes: []string{"line\nlast s3c", "r3t"}, flush: true, want: "line\nlast ***"},
		{name: "a multi-line secret", secrets: map[string]string{"PEM": "-----BEGIN KEY-----\nMIIEvQIBADANBg\n-----END KEY-----"},
			writes: []string{"-----BEGIN KEY-----\n", "MIIEvQIBADANBg\n", "-----END KEY-----\n"}, want: "***\n***\n***\n"},
	} {
		var out strings.Builder
		w := newMasker(&out, c.secrets)
		for _, p := range c.writes {
			if n, err := w.Write([]byte(p)); n != len(p) || err != nil {
				t.Errorf("%s: Write(%q) = %d, %v", c.name, p, n, err)
			}
		}
		if m, ok := w.(*masker); c.flush && ok {
			m.Flush()
		}
		if out.String() != c.want {
			t.Errorf("%s: wrote %q, want %q", c.name, out.String(), c.want)
		}
	}
}

// TestUnitMaskerLongLine: a line longer than the masker holds is passed on
// in pieces, masked.
func TestUnitMaskerLongLine(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	w := newMasker(&out, map[string]string{"K": "s3cr3t"})
	long := strings.Repeat("x", 70<<10) + " s3cr3t"
	_, _ = w.Write([]byte(long))
	w.(*masker).Flush()
	if strings.Contains(out.String(), "s3cr3t") || !strings.HasSuffix(out.String(), " ***") {
		t.Errorf("a long line came out as ...%q", out.String()[max(0, out.Len()-40):])
	}
}

// TestUnitMaskerLongLineSplitSecret: a secret that straddles the point
// where a long line is passed on is still masked.
func TestUnitMaskerLongLineSplitSecret(t *testing.T) {
	t.Parallel()
	var out strings.Builder
	w := newMasker(&out, map[string]string{"K": "s3cr3t-value"})
	_, _ = w.Write([]byte(strings.Repeat("x", 64<<10-5) + "s3cr3t"))
	_, _ = w.Write([]byte("-value end\n"))
	if strings.Contains(out.String(), "s3cr") || !strings.HasSuffix(out.String(), "x*** end\n") {
		t.Errorf("the long line came out as ...%q", out.String()[max(0, out.Len()-40):])
	}
}
