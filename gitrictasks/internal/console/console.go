// Package console writes what a deploy prints: whole lines, each prefixed
// with the host it is about and aligned (coloured on a terminal), safe to
// use from one goroutine per host; or, for CI logs, JSON lines.
package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Options choose the output's form.
type Options struct {
	// JSON prints every line as a JSON object: {"time","host","msg"}, and
	// the error that ends a run as {"time","level":"error","msg"}.
	JSON bool
	// Color forces colour on or off; nil: colour when out is a terminal
	// and NO_COLOR is not set.
	Color *bool
}

// Console serialises lines from many writers onto one output.
type Console struct {
	mu     sync.Mutex
	out    io.Writer
	width  int
	json   bool
	color  bool
	colors map[string]string
	// tty: progress lines are redrawn in place; progress is the line of
	// each host with a transfer under way, drawn whether anything is.
	tty      bool
	progress map[string]string
	order    []string
	drawn    bool
}

var palette = []string{"\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[34m", "\x1b[32m", "\x1b[96m", "\x1b[95m", "\x1b[93m"}

// New writes to out. Prefixes are padded to the longest of names.
func New(out io.Writer, opts Options, names ...string) *Console {
	c := &Console{out: out, json: opts.JSON, colors: map[string]string{}, tty: isTerminal(out) && !opts.JSON, progress: map[string]string{}}
	if opts.Color != nil {
		c.color = *opts.Color
	} else {
		c.color = isTerminal(out) && os.Getenv("NO_COLOR") == ""
	}
	for i, n := range names {
		c.width = max(c.width, len(n))
		c.colors[n] = palette[i%len(palette)]
	}
	return c
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Printf prints one line about the whole run.
func (c *Console) Printf(format string, args ...any) {
	c.line("", "", strings.TrimRight(fmt.Sprintf(format, args...), "\n"))
}

// Errorf prints the error that ends the run. In JSON mode it is one object
// {"time","level":"error","msg"} whatever newlines the message holds; as
// text, "Error: " and the message, as mage prints a target's error.
func (c *Console) Errorf(format string, args ...any) {
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	if !c.json {
		msg = "Error: " + msg
	}
	c.line("", "error", msg)
}

func (c *Console) line(host, level, msg string) {
	var b []byte
	switch {
	case c.json:
		v := struct {
			Time  string `json:"time"`
			Level string `json:"level,omitempty"`
			Host  string `json:"host,omitempty"`
			Msg   string `json:"msg"`
		}{time.Now().UTC().Format(time.RFC3339Nano), level, host, msg}
		b, _ = json.Marshal(v)
		b = append(b, '\n')
	case host == "":
		b = []byte(msg + "\n")
	default:
		prefix := "[" + host + "]" + strings.Repeat(" ", max(0, c.width-len(host))) + " "
		if c.color {
			prefix = c.colors[host] + prefix + "\x1b[0m"
		}
		b = []byte(prefix + msg + "\n")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.drawn {
		_, _ = io.WriteString(c.out, "\r\x1b[K")
	}
	_, _ = c.out.Write(b)
	c.drawn = false
	c.redraw()
}

// Progress shows how a host's long step goes ("seeding: 12 MiB of 40 MiB,
// 3.1 MiB/s"); "" ends it. On a terminal it is one line for the whole
// run, redrawn in place under the others; elsewhere a plain host line
// each time (the caller calls it now and then); in JSON mode nothing.
func (c *Console) Progress(host, msg string) {
	switch {
	case c.json:
		return
	case !c.tty:
		if msg != "" {
			c.line(host, "", msg)
		}
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.progress[host]; !ok && msg != "" {
		c.order = append(c.order, host)
	}
	if msg == "" {
		delete(c.progress, host)
		for i, h := range c.order {
			if h == host {
				c.order = append(c.order[:i], c.order[i+1:]...)
				break
			}
		}
	} else {
		c.progress[host] = msg
	}
	if c.drawn {
		_, _ = io.WriteString(c.out, "\r\x1b[K")
		c.drawn = false
	}
	c.redraw()
}

// redraw draws the progress line, if any; c.mu is held.
func (c *Console) redraw() {
	if !c.tty || len(c.order) == 0 {
		return
	}
	parts := make([]string, 0, len(c.order))
	for _, h := range c.order {
		parts = append(parts, "["+h+"] "+c.progress[h])
	}
	_, _ = io.WriteString(c.out, strings.Join(parts, "  "))
	c.drawn = true
}

// Host returns a writer whose every line is printed as "[name] line".
// Partial lines are held until their newline, or until Flush.
func (c *Console) Host(name string) *Writer {
	return &Writer{c: c, host: name}
}

// Writer is one host's line writer.
type Writer struct {
	c       *Console
	host    string
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
		line := string(w.pending[:i])
		w.pending = w.pending[i+1:]
		if strings.TrimSpace(line) != "" {
			w.c.line(w.host, "", line)
		}
	}
	return len(p), nil
}

// Printf prints one line with the host's prefix.
func (w *Writer) Printf(format string, args ...any) {
	_, _ = w.Write([]byte(strings.TrimRight(fmt.Sprintf(format, args...), "\n") + "\n"))
}

// Progress shows how the host's long step goes; see Console.Progress.
func (w *Writer) Progress(msg string) { w.c.Progress(w.host, msg) }

// Live says whether progress is redrawn in place (a terminal).
func (w *Writer) Live() bool { return w.c.tty }

// Flush prints what is left of an unfinished line.
func (w *Writer) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if strings.TrimSpace(string(w.pending)) != "" {
		w.c.line(w.host, "", string(w.pending))
	}
	w.pending = nil
}

// Row is one host's line in a summary table.
type Row struct {
	Host, From, To string
	Seed, Downtime time.Duration
	Result         string
}

// Summary prints a table of rows (or, in JSON mode, one object per row
// and one for the whole run).
func (c *Console) Summary(rows []Row, took time.Duration) {
	if c.json {
		for _, r := range rows {
			b, _ := json.Marshal(map[string]any{
				"summary": true, "host": r.Host, "from": r.From, "to": r.To,
				"seed_ms": r.Seed.Milliseconds(), "downtime_ms": r.Downtime.Milliseconds(), "result": r.Result,
			})
			c.mu.Lock()
			_, _ = c.out.Write(append(b, '\n'))
			c.mu.Unlock()
		}
		return
	}
	var b strings.Builder
	w := max(c.width, len("host"))
	fmt.Fprintf(&b, "%-*s  %-7s  %-7s  %8s  %8s  %s\n", w, "host", "from", "to", "seed", "downtime", "result")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-*s  %-7s  %-7s  %8s  %8s  %s\n", w, r.Host, r.From, r.To, ms(r.Seed), ms(r.Downtime), r.Result)
	}
	fmt.Fprintf(&b, "%d host(s) in %s\n", len(rows), took.Round(time.Millisecond))
	c.mu.Lock()
	defer c.mu.Unlock()
	_, _ = io.WriteString(c.out, b.String())
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}
