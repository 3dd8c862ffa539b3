package console

import (
	"bytes"
	"strings"
	"testing"
)

func TestProgress(t *testing.T) {
	tests := []struct {
		name string
		tty  bool
		json bool
		want string
	}{
		// On a terminal: one line, redrawn in place, always under the others.
		{"terminal", true, false, "[a] seeding: 1 MiB" +
			"\r\x1b[K[a] seeding: 2 MiB" +
			"\r\x1b[K[b] done\n[a] seeding: 2 MiB" +
			"\r\x1b[K[a] seeding: 2 MiB  [b] seeding: 5 KiB" +
			"\r\x1b[K[b] seeding: 5 KiB" +
			"\r\x1b[K"},
		// Elsewhere: a plain line each time; the end prints nothing.
		{"plain", false, false, "[a] seeding: 1 MiB\n[a] seeding: 2 MiB\n[b] done\n[b] seeding: 5 KiB\n"},
		{"json", false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			c := New(&out, Options{JSON: tt.json}, "a", "b")
			c.tty = tt.tty
			a, b := c.Host("a"), c.Host("b")
			a.Progress("seeding: 1 MiB")
			a.Progress("seeding: 2 MiB")
			b.Printf("done")
			b.Progress("seeding: 5 KiB")
			a.Progress("")
			b.Progress("")
			got := out.String()
			if tt.json {
				got = strings.TrimSpace(strings.ReplaceAll(got, `"msg":"done"`, ""))
				if strings.Contains(got, "seeding") {
					t.Fatalf("JSON output has progress: %q", out.String())
				}
				return
			}
			if got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}
