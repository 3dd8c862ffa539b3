// Package stream has the writers gitric puts in the way of a byte
// stream to observe it: Tail keeps its last bytes (a remote command's
// standard error, for the message when it fails), Counter counts them (a
// pack on its way to a host, for the progress line).
package stream

import (
	"io"
	"sync"
	"sync/atomic"
)

// Tail keeps the last Max bytes written to it. It is safe for concurrent
// use; the zero value keeps nothing.
type Tail struct {
	Max int
	mu  sync.Mutex
	buf []byte
}

func (t *Tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.Max; over > 0 {
		// Copied down, so the buffer does not keep what it dropped.
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String is what it keeps.
func (t *Tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// Counter passes writes on to W (nil: nowhere) and counts the bytes W
// took. Count may be read while writes go on.
type Counter struct {
	W io.Writer
	n atomic.Int64
}

func (c *Counter) Write(p []byte) (int, error) {
	if c.W == nil {
		c.n.Add(int64(len(p)))
		return len(p), nil
	}
	n, err := c.W.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// Count is how many bytes went through.
func (c *Counter) Count() int64 { return c.n.Load() }
