package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/hostscript"
	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
)

// HostStatus is one host's deploy state.
type HostStatus struct {
	Host     string
	Head     string // full hash; empty: nothing deployed
	Subject  string
	When     time.Time // HEAD's commit time
	Deployed *AuditEntry
	Current  bool     // HEAD is the local revision
	Modified []string // git status lines of tracked files changed on the host
	Locked   string   // lock owner, if locked
	Foreign  bool     // Path holds a repository that gitric did not create
	// CutShort is the commit of a cutover that was killed halfway here
	// ("unknown" if it did not say): the working copy and the service may
	// be between two commits until a deploy finishes it.
	CutShort string
	// Checkout is gitric's deploy commit of Head that the host runs
	// (artifacts, a subdirectory); empty when the host runs Head itself.
	Checkout string
	Err      error
}

// StatusReport is every host's state and a verdict on drift.
type StatusReport struct {
	Local   Commit
	Hosts   []HostStatus
	Verdict string
}

// Status reads every host's state in parallel, read-only, and prints it.
// The report has every host; the error joins the hosts it could not reach
// (ErrUnreachable and the other connection errors) and those whose last
// cutover was cut short (ErrCutShort: a host between two commits, maybe
// with its service stopped), so that a check in CI fails on them. Drift,
// edits and locks are reported, not errors.
func Status(ctx context.Context, opts StatusOptions) (*StatusReport, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	d, err := newFleet(ctx, settings{Options: opts.Options, Rev: opts.Rev})
	if err != nil {
		return nil, err
	}
	rep := &StatusReport{}
	var local plumbing.Hash
	if repo, err := localrepo.Open(d.opts.Dir); err == nil {
		d.repo = repo
		c, _ := repo.Resolve(d.opts.Rev)
		local, rep.Local = c.Hash, publicCommit(c)
	}
	rep.Hosts = make([]HostStatus, len(d.hosts))
	var wg sync.WaitGroup
	for i, h := range d.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep.Hosts[i] = d.status(ctx, h, local)
		}()
	}
	wg.Wait()
	defer d.close(false)
	rep.Verdict = verdict(rep)
	for i, h := range d.hosts {
		s := rep.Hosts[i]
		switch {
		case s.Err != nil:
			h.log.Printf("unreachable: %v", s.Err)
			continue
		case s.Foreign:
			h.log.Printf("%s holds a git repository that gitric did not create", d.opts.Stage.Path)
		case s.Head == "":
			h.log.Printf("nothing deployed")
		default:
			line := fmt.Sprintf("%s %s (committed %s)", shortHex(s.Head), s.Subject, s.When.Format("2006-01-02 15:04"))
			if s.Deployed != nil {
				line += fmt.Sprintf(", deployed %s by %s", s.Deployed.Time.Local().Format("2006-01-02 15:04"), s.Deployed.Who)
				if s.Deployed.Message != "" {
					line += fmt.Sprintf(" (%s)", s.Deployed.Message)
				}
			}
			if s.Current {
				line += "; matches local " + rep.Local.Short()
			} else if rep.Local.Hash != "" {
				line += "; local is " + rep.Local.Short()
			}
			h.log.Printf("%s", line)
		}
		if len(s.Modified) > 0 {
			h.log.Printf("working copy edited on the host: %s", strings.Join(s.Modified, ", "))
		}
		if s.Locked != "" {
			h.log.Printf("locked by %s", s.Locked)
		}
		if s.CutShort != "" {
			h.log.Printf("the last cutover, to %s, was cut short (killed): files and service may be between two commits; deploy again to finish it", shortHex(s.CutShort))
		}
	}
	d.con.Printf("%s", rep.Verdict)
	var errs []error
	for _, s := range rep.Hosts {
		switch {
		case s.Err != nil:
			errs = append(errs, &HostError{Host: s.Host, Step: "status", Err: s.Err})
		case s.CutShort != "":
			errs = append(errs, &HostError{Host: s.Host, Step: "status", Err: fmt.Errorf("%w (to %s, killed halfway): files and service may be between two commits; deploy again to finish it", ErrCutShort, shortHex(s.CutShort))})
		}
	}
	return rep, errors.Join(errs...)
}

func (d *fleet) status(ctx context.Context, h *hostDeploy, local plumbing.Hash) HostStatus {
	s := HostStatus{Host: h.addr.Name()}
	vars := d.vars(hostscript.Status)
	vars.AuditLog = true
	st, err := d.look(ctx, h, vars)
	if err != nil {
		s.Err = err
		return s
	}
	s.Head, s.Subject, s.When, s.Modified, s.Locked = hashString(st.sourceOf()), st.subject, st.when, st.changed, lockHolder(st.locked)
	if st.sourceOf() != st.head {
		s.Checkout = hashString(st.head)
		if c, ok := d.lookup(st.sourceOf()); ok {
			s.Subject, s.When = c.Subject, c.When
		}
	}
	s.Foreign = st.foreign
	s.CutShort = st.cutShort
	s.Current = !local.IsZero() && st.sourceOf() == local
	if e, ok := lastDeploy(st.audit); ok && e.checkout() == st.head.String() {
		s.Deployed = &e
	}
	return s
}

// look connects to h and runs a read-only action of the host script
// (status, plan, unlock), which reports the host's state.

// verdict sums the hosts up in one line.
func verdict(rep *StatusReport) string {
	commits := map[string]int{}
	var down, modified, locked, cut int
	for _, s := range rep.Hosts {
		switch {
		case s.Err != nil:
			down++
			continue
		case len(s.Modified) > 0:
			modified++
		}
		if s.Locked != "" {
			locked++
		}
		if s.CutShort != "" {
			cut++
		}
		commits[s.Head]++
	}
	var parts []string
	switch len(commits) {
	case 0:
	case 1:
		for h := range commits {
			if h == "" {
				parts = append(parts, "no host has a deploy")
			} else if h == rep.Local.Hash {
				parts = append(parts, fmt.Sprintf("no drift: every host is on %s, as local", shortHex(h)))
			} else {
				parts = append(parts, fmt.Sprintf("no drift: every host is on %s (local is %s)", shortHex(h), rep.Local.Short()))
			}
		}
	default:
		var hs []string
		for h, n := range commits {
			hs = append(hs, fmt.Sprintf("%s on %d", shortHex(h), n))
		}
		parts = append(parts, fmt.Sprintf("DRIFT: hosts are on %d different commits (%s)", len(commits), strings.Join(hs, ", ")))
	}
	if modified > 0 {
		parts = append(parts, fmt.Sprintf("%d host(s) with local modifications", modified))
	}
	if locked > 0 {
		parts = append(parts, fmt.Sprintf("%d host(s) locked", locked))
	}
	if cut > 0 {
		parts = append(parts, fmt.Sprintf("%d host(s) with a cutover cut short", cut))
	}
	if down > 0 {
		parts = append(parts, fmt.Sprintf("%d host(s) unreachable", down))
	}
	return strings.Join(parts, "; ")
}

// Unlock removes the stage's deploy lock on every host: for a lock left
// behind by a deploy that can no longer release it. (A lock whose holder
// died is taken over by the next deploy by itself.)
func Unlock(ctx context.Context, opts Options) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	d, err := newFleet(ctx, settings{Options: opts})
	if err != nil {
		return err
	}
	var errs []error
	var mu sync.Mutex
	d.each(func(h *hostDeploy) {
		st, err := d.look(ctx, h, d.vars(hostscript.Unlock))
		switch {
		case err != nil:
		case st.unlocked == "-":
			h.log.Printf("not locked")
		default:
			h.log.Printf("removed the lock of %s", lockHolder(st.unlocked))
		}
		if err != nil {
			mu.Lock()
			errs = append(errs, &HostError{Host: h.addr.Name(), Step: "unlock", Err: err})
			mu.Unlock()
		}
	})
	d.close(false)
	if len(errs) > 0 {
		return fmt.Errorf("unlock: %w", errors.Join(errs...))
	}
	return nil
}
