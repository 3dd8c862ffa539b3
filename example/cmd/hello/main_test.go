package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func TestResolveVersion(t *testing.T) {
	for _, tt := range []struct {
		name, ldflags, env, stamped, want string
	}{
		{"ldflags first", "aaaaaaa", "bbbbbbb", "ccccccc", "aaaaaaa"},
		{"then GITRIC_COMMIT", "", "bbbbbbb", "ccccccc", "bbbbbbb"},
		{"then the stamp", "", " ", "ccccccc", "ccccccc"},
		{"none", "", "", "", "unknown"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := resolveVersion(tt.ldflags, tt.env, tt.stamped); got != tt.want {
				t.Errorf("resolveVersion(%q, %q, %q) = %q, want %q", tt.ldflags, tt.env, tt.stamped, got, tt.want)
			}
		})
	}
}

// TestCounterShared has two counters on one file, as two processes of two
// releases have through the shared data directory: no increment is lost
// and the file holds the total.
func TestCounterShared(t *testing.T) {
	path := filepath.Join(t.TempDir(), "data", "counter")
	const workers, each = 4, 50
	var wg sync.WaitGroup
	seen := make(chan int64, workers*each)
	for w := range workers {
		c, err := newCounter(path)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				n, err := c.increment()
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				seen <- n
			}
		}()
	}
	wg.Wait()
	close(seen)
	got := map[int64]bool{}
	for n := range seen {
		if got[n] {
			t.Errorf("value %d handed out twice", n)
		}
		got[n] = true
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(string(b))); n != workers*each || len(got) != workers*each {
		t.Errorf("counter file says %q after %d increments (%d distinct values)", b, workers*each, len(got))
	}
	// A restart (a new counter) goes on from there.
	c, _ := newCounter(path)
	if n, err := c.increment(); err != nil || n != workers*each+1 {
		t.Errorf("after a restart: %d, %v; want %d", n, err, workers*each+1)
	}
}

func TestHandler(t *testing.T) {
	c, err := newCounter(filepath.Join(t.TempDir(), "counter"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(handler("0123456789abcdef", c))
	defer srv.Close()
	for _, tt := range []struct {
		path   string
		status int
		body   string
	}{
		{"/health", 200, "ok 0123456789abcdef\n"},
		{"/", 200, "hello from 0123456789abcdef (request 1)\n"},
		{"/", 200, "hello from 0123456789abcdef (request 2)\n"},
		{"/health", 200, "ok 0123456789abcdef\n"},
		{"/nothing", 404, "404 page not found\n"},
	} {
		resp, err := http.Get(srv.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || string(b) != tt.body {
			t.Errorf("GET %s: %d %q, want %d %q", tt.path, resp.StatusCode, b, tt.status, tt.body)
		}
	}
}
