// Package receivepack is the client half of git's push protocol: it talks to
// a running `git receive-pack` over any pair of streams (an SSH session's
// stdin and stdout, or a local process's pipes), reads the refs the target
// advertises, sends ref updates with a pack, and reads the target's report.
package receivepack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
)

// ErrRejected means the target refused an update or could not store the
// pack. The wrapping error carries the target's own words.
var ErrRejected = errors.New("push rejected by the target")

// Refs are the refs a target advertised, by full name.
type Refs map[string]plumbing.Hash

// Hashes lists the distinct commits the refs point at.
func (r Refs) Hashes() []plumbing.Hash {
	seen := make(map[plumbing.Hash]bool, len(r))
	var out []plumbing.Hash
	for _, h := range r {
		if !seen[h] && !h.IsZero() {
			seen[h] = true
			out = append(out, h)
		}
	}
	return out
}

// Update is one ref change: set Ref from Old (zero: create) to New.
type Update struct {
	Ref string
	Old plumbing.Hash
	New plumbing.Hash
}

// Conn is a started `git receive-pack`: what we write reaches its standard
// input, and its standard output is what we read. Push reads exactly the
// protocol's bytes from Out and never closes In, so the same streams can
// carry more after the push (gitric's host script goes on to the cutover).
type Conn struct {
	In  io.Writer
	Out io.Reader
	// Abort, when set, ends the stream to receive-pack (closes In): Send
	// calls it when the pack cannot be completed.
	Abort func()
}

// Push is one push over a Conn, in the protocol's order: Start reads the
// advertised refs, then Send is called exactly once.
type Push struct {
	conn Conn
	caps *capability.List
	refs Refs
}

// Start reads the target's ref advertisement.
func Start(conn Conn) (*Push, error) {
	adv := packp.NewAdvRefs()
	if err := adv.Decode(conn.Out); err != nil {
		if errors.Is(err, packp.ErrEmptyAdvRefs) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("git receive-pack ended before it advertised any refs: %w", err)
		}
		return nil, fmt.Errorf("read ref advertisement: %w", err)
	}
	refs := make(Refs, len(adv.References))
	for name, h := range adv.References {
		refs[name] = h
	}
	return &Push{conn: conn, caps: adv.Capabilities, refs: refs}, nil
}

// Refs are the refs the target advertised.
func (p *Push) Refs() Refs { return p.refs }

// PackFunc writes the pack that goes with the updates.
type PackFunc func(w io.Writer) error

// Send sends the updates and the pack that pack writes, then waits for the
// target's report. Progress messages the target sends while it stores the
// pack are copied to progress (which may be nil). The pack is streamed to
// the target while its answer is read, so neither side can stall the other.
func (p *Push) Send(ctx context.Context, updates []Update, pack PackFunc, progress io.Writer) error {
	if len(updates) == 0 {
		// A flush packet: nothing to update; receive-pack ends.
		_, err := io.WriteString(p.conn.In, "0000")
		return err
	}
	req := packp.NewReferenceUpdateRequestFromCapabilities(p.caps)
	if !p.caps.Supports(capability.ReportStatus) {
		return fmt.Errorf("the target's git receive-pack does not offer report-status; it is too old to push to")
	}
	band := sideband.Type(0)
	if p.caps.Supports(capability.Sideband64k) {
		band = sideband.Sideband64k
		_ = req.Capabilities.Set(capability.Sideband64k)
	}
	if progress == nil {
		if p.caps.Supports(capability.Quiet) {
			_ = req.Capabilities.Set(capability.Quiet)
		}
		progress = io.Discard
	}
	for _, u := range updates {
		req.Commands = append(req.Commands, &packp.Command{Name: plumbing.ReferenceName(u.Ref), Old: u.Old, New: u.New})
	}

	// Read the report concurrently: the target talks (progress) while it
	// reads the pack, and a full SSH window on one side would block both.
	report := make(chan error, 1)
	go func() { report <- readReport(p.conn.Out, band, progress) }()

	out := &trackedWriter{w: p.conn.In}
	sendErr := func() error {
		if err := req.Encode(out); err != nil {
			return fmt.Errorf("send ref updates: %w", err)
		}
		if err := pack(out); err != nil {
			return fmt.Errorf("send pack: %w", err)
		}
		return nil
	}()
	if sendErr != nil && out.err == nil {
		// The pack itself could not be made (a missing object): end the
		// stream, so that receive-pack sees a truncated pack and exits
		// instead of waiting for the rest, and say why.
		if p.conn.Abort != nil {
			p.conn.Abort()
		}
		select {
		case <-report:
		case <-ctx.Done():
		}
		return sendErr
	}
	select {
	case err := <-report:
		if err != nil {
			// The target's word explains a broken pipe better than the pipe.
			return err
		}
		return sendErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// trackedWriter remembers the first write error, to tell a stream the
// target closed from a pack that could not be made.
type trackedWriter struct {
	w   io.Writer
	err error
}

func (t *trackedWriter) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	if err != nil && t.err == nil {
		t.err = err
	}
	return n, err
}

func readReport(r io.Reader, band sideband.Type, progress io.Writer) error {
	if band != 0 {
		d := sideband.NewDemuxer(band, r)
		d.Progress = progress
		r = d
	}
	rs := packp.NewReportStatus()
	if err := rs.Decode(r); err != nil {
		return fmt.Errorf("read the target's report: %w", err)
	}
	if rs.UnpackStatus != "ok" {
		return fmt.Errorf("%w: the target could not store the pack: %s", ErrRejected, rs.UnpackStatus)
	}
	var bad []string
	for _, cs := range rs.CommandStatuses {
		if cs.Status != "ok" {
			bad = append(bad, fmt.Sprintf("%s: %s", cs.ReferenceName, cs.Status))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrRejected, strings.Join(bad, "; "))
	}
	if band != 0 {
		// The report travels inside band 1; the band stream ends with a
		// flush packet of its own, which the demuxer reads as EOF.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return fmt.Errorf("read the target's report: %w", err)
		}
	}
	return nil
}
