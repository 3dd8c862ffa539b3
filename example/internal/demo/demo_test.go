package demo

import (
	"strconv"
	"strings"
	"testing"
)

func TestParseAnswer(t *testing.T) {
	for _, tt := range []struct {
		in      string
		version string
		n       int64
		ok      bool
	}{
		{"hello from 0123abc (request 42)\n", "0123abc", 42, true},
		{"hello from unknown (request 1)", "unknown", 1, true},
		{"ok 0123abc\n", "", 0, false},
		{"hello from 0123abc", "", 0, false},
	} {
		v, n, err := parseAnswer(tt.in)
		if (err == nil) != tt.ok || v != tt.version || n != tt.n {
			t.Errorf("parseAnswer(%q) = %q, %d, %v; want %q, %d, ok %v", tt.in, v, n, err, tt.version, tt.n, tt.ok)
		}
	}
}

// answer is one answer the client got.
type answer struct {
	version string
	n       int64
}

func TestReport(t *testing.T) {
	for _, tt := range []struct {
		name      string
		answers   []answer
		failures  int
		versions  string // version:requests:first..last, space-separated
		monotonic bool
		claim     string // what check says; "" for nothing
	}{
		{
			name:      "two deploys",
			answers:   []answer{{"a", 1}, {"a", 2}, {"b", 3}, {"b", 4}, {"c", 5}},
			versions:  "a:2:1..2 b:2:3..4 c:1:5..5",
			monotonic: true,
		},
		{
			name:     "counter reset",
			answers:  []answer{{"a", 7}, {"b", 1}},
			versions: "a:1:7..7 b:1:1..1",
			claim:    "counter did not go up",
		},
		{
			name:      "one version",
			answers:   []answer{{"a", 1}, {"a", 2}},
			versions:  "a:2:1..2",
			monotonic: true,
			claim:     "saw 1 version(s)",
		},
		{
			name:      "a failure",
			answers:   []answer{{"a", 1}, {"b", 2}},
			failures:  1,
			versions:  "a:1:1..1 b:1:2..2",
			monotonic: true,
			claim:     "1 of 3 requests failed",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &Report{Monotonic: true}
			var last int64
			for _, a := range tt.answers {
				r.Requests++
				r.record(a.version, a.n, last)
				last = a.n
			}
			for range tt.failures {
				r.Requests++
				r.Failures++
				r.Errors = append(r.Errors, "connection reset by peer")
			}
			var got []string
			for _, v := range r.Versions {
				got = append(got, v.Version+":"+itoa(v.Requests)+":"+itoa(int(v.First))+".."+itoa(int(v.Last)))
			}
			if strings.Join(got, " ") != tt.versions || r.Monotonic != tt.monotonic {
				t.Errorf("versions %q, monotonic %v; want %q, %v", strings.Join(got, " "), r.Monotonic, tt.versions, tt.monotonic)
			}
			err := r.check()
			if tt.claim == "" && err != nil || tt.claim != "" && (err == nil || !strings.Contains(err.Error(), tt.claim)) {
				t.Errorf("check() = %v, want %q", err, tt.claim)
			}
		})
	}
}

func TestLoopback(t *testing.T) {
	for target, want := range map[string]bool{
		"http://127.0.0.1:18080/": true,
		"http://[::1]:18080/":     true,
		"http://192.0.2.1/":       false,
		"http://example.com/":     false,
	} {
		if got := loopback(target); got != want {
			t.Errorf("loopback(%q) = %v, want %v", target, got, want)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
