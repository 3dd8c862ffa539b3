// Package console writes what a deploy prints: whole lines, each prefixed
// with the host it is about and aligned, safe to use from one goroutine per
// host.
package console

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
)

// Console serialises lines from many writers onto one output.
type Console struct {
	mu    sync.Mutex
	out   io.Writer
	width int
}

// New writes to out. Prefixes are padded to the longest of names.
func New(out io.Writer, names ...string) *Console {
	c := &Console{out: out}
	for _, n := range names {
		c.width = max(c.width, len(n))
	}
	return c
}

// Printf prints one unprefixed line.
func (c *Console) Printf(format string, args ...any) {
	c.write([]byte(strings.TrimRight(fmt.Sprintf(format, args...), "\n") + "\n"))
}

func (c *Console) write(b []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = c.out.Write(b)
}

// Host returns a writer whose every line is printed as "[name] line".
// Partial lines are held until their newline, or until Flush.
func (c *Console) Host(name string) *Writer {
	return &Writer{c: c, prefix: "[" + name + "]" + strings.Repeat(" ", c.width-len(name)) + " "}
}

// Writer is one host's line writer.
type Writer struct {
	c       *Console
	prefix  string
	mu      sync.Mutex
	pending []byte
}

// Write prints every complete line of p (a carriage return also ends a
// line, so progress meters from the host come out one per line).
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = append(w.pending, p...)
	for {
		i := bytes.IndexAny(w.pending, "\r\n")
		if i < 0 {
			break
		}
		line := w.pending[:i]
		w.pending = w.pending[i+1:]
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		w.c.write([]byte(w.prefix + string(line) + "\n"))
	}
	return len(p), nil
}

// Printf prints one line with the host's prefix.
func (w *Writer) Printf(format string, args ...any) {
	_, _ = w.Write([]byte(strings.TrimRight(fmt.Sprintf(format, args...), "\n") + "\n"))
}

// Flush prints what is left of an unfinished line.
func (w *Writer) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(bytes.TrimSpace(w.pending)) > 0 {
		w.c.write([]byte(w.prefix + string(w.pending) + "\n"))
	}
	w.pending = nil
}
