package shell

import (
	"os/exec"
	"testing"
)

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "''"},
		{"plain/path-1.2_x", "plain/path-1.2_x"},
		{"a b", "'a b'"},
		{"it's", `'it'\''s'`},
		{"$HOME;rm -rf /", "'$HOME;rm -rf /'"},
		{"~/x", "'~/x'"},
		{"a\nb", "'a\nb'"},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// TestQuoteRoundTrip hands quoted words to a real sh and checks it reads
// back exactly what went in.
func TestQuoteRoundTrip(t *testing.T) {
	words := []string{"", "x", "a b", "it's", `"dq"`, "$(id)", "`id`", "a;b&&c|d", "*", "~", "\\", "\t\n", "'", "''", "ünï", "-n"}
	for _, w := range words {
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(w)).Output()
		if err != nil {
			t.Fatalf("sh with %q: %v", w, err)
		}
		if string(out) != w {
			t.Errorf("sh read %q back as %q", w, out)
		}
	}
}

func FuzzQuote(f *testing.F) {
	f.Add("it's $HOME")
	f.Fuzz(func(t *testing.T, w string) {
		for _, r := range w {
			if r == 0 {
				return // sh arguments cannot hold NUL
			}
		}
		out, err := exec.Command("sh", "-c", "printf %s "+Quote(w)).Output()
		if err != nil {
			t.Fatalf("sh with %q: %v", w, err)
		}
		if string(out) != w {
			t.Errorf("sh read %q back as %q", w, out)
		}
	})
}
