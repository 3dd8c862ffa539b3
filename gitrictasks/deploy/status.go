package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
	"github.com/gitric/gitric/gitrictasks/internal/remote"
	"github.com/gitric/gitric/gitrictasks/internal/shell"
)

// HostStatus is one host's deploy state.
type HostStatus struct {
	Host     string
	Head     plumbing.Hash // zero: nothing deployed
	Subject  string
	When     time.Time // HEAD's commit time
	Deployed *AuditEntry
	Current  bool     // HEAD is the local revision
	Modified []string // git status lines of tracked files changed on the host
	Locked   string   // lock owner, if locked
	Err      error
}

// StatusReport is every host's state and a verdict on drift.
type StatusReport struct {
	Local   localrepo.Commit
	Hosts   []HostStatus
	Verdict string
}

// Status reads every host's state in parallel, read-only, and prints it.
func Status(ctx context.Context, opts Options) (*StatusReport, error) {
	d, err := prepare(opts, "status")
	if err != nil {
		return nil, err
	}
	rep := &StatusReport{}
	if repo, err := localrepo.Open(d.opts.Dir); err == nil {
		d.repo = repo
		rep.Local, _ = repo.Resolve(d.opts.Rev)
	}
	rep.Hosts = make([]HostStatus, len(d.hosts))
	var wg sync.WaitGroup
	for i, h := range d.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep.Hosts[i] = d.status(ctx, h, rep.Local.Hash)
		}()
	}
	wg.Wait()
	defer d.close()
	rep.Verdict = verdict(rep)
	for i, h := range d.hosts {
		s := rep.Hosts[i]
		switch {
		case s.Err != nil:
			h.log.Printf("unreachable: %v", s.Err)
			continue
		case s.Head.IsZero():
			h.log.Printf("nothing deployed")
		default:
			line := fmt.Sprintf("%s %s (committed %s)", short(s.Head), s.Subject, s.When.Format("2006-01-02 15:04"))
			if s.Deployed != nil {
				line += fmt.Sprintf(", deployed %s by %s", s.Deployed.Time.Local().Format("2006-01-02 15:04"), s.Deployed.Who)
			}
			if s.Current {
				line += "; matches local " + rep.Local.Short()
			} else if !rep.Local.Hash.IsZero() {
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
	}
	d.con.Printf("%s", rep.Verdict)
	return rep, nil
}

func (d *deployment) status(ctx context.Context, h *hostDeploy, local plumbing.Hash) HostStatus {
	s := HostStatus{Host: h.addr.Name()}
	conn, err := remote.Dial(ctx, h.addr, d.opts.SSH)
	if err != nil {
		s.Err = err
		return s
	}
	h.conn = conn
	sess, st, err := openSession(ctx, conn, scriptVars{Path: d.opts.Stage.Path, Mode: d.opts.Stage.mode(), Sudo: d.opts.Stage.Sudo}, statusScript, h.log)
	h.sess = sess
	if err != nil {
		s.Err = err
		return s
	}
	s.Head, s.Subject, s.When, s.Modified, s.Locked = st.head, st.subject, st.when, st.changed, st.locked
	s.Current = !local.IsZero() && st.head == local
	if e, ok := lastDeploy(st.audit); ok && e.To == st.head.String() {
		s.Deployed = &e
	}
	return s
}

// verdict sums the hosts up in one line.
func verdict(rep *StatusReport) string {
	commits := map[plumbing.Hash]int{}
	var down, modified, locked int
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
		commits[s.Head]++
	}
	var parts []string
	switch len(commits) {
	case 0:
	case 1:
		for h := range commits {
			if h.IsZero() {
				parts = append(parts, "no host has a deploy")
			} else if h == rep.Local.Hash {
				parts = append(parts, fmt.Sprintf("no drift: every host is on %s, as local", short(h)))
			} else {
				parts = append(parts, fmt.Sprintf("no drift: every host is on %s (local is %s)", short(h), short(rep.Local.Hash)))
			}
		}
	default:
		var hs []string
		for h, n := range commits {
			hs = append(hs, fmt.Sprintf("%s on %d", short(h), n))
		}
		parts = append(parts, fmt.Sprintf("DRIFT: hosts are on %d different commits (%s)", len(commits), strings.Join(hs, ", ")))
	}
	if modified > 0 {
		parts = append(parts, fmt.Sprintf("%d host(s) with local modifications", modified))
	}
	if locked > 0 {
		parts = append(parts, fmt.Sprintf("%d host(s) locked", locked))
	}
	if down > 0 {
		parts = append(parts, fmt.Sprintf("%d host(s) unreachable", down))
	}
	return strings.Join(parts, "; ")
}

// Unlock removes the stage's deploy lock on every host: for a lock left
// behind by a deploy that can no longer release it (a machine that died).
func Unlock(ctx context.Context, opts Options) error {
	d, err := prepare(opts, "unlock")
	if err != nil {
		return err
	}
	path := strings.TrimPrefix(d.opts.Stage.Path, "~/")
	lock := path + "/.git/gitric/lock"
	if d.opts.Stage.mode() != ModeInPlace {
		lock = path + "/repo/gitric/lock"
	}
	cmd := "case " + shell.Quote(path) + " in /*) ;; *) cd \"${HOME:-.}\" ;; esac; if [ -d " + shell.Quote(lock) + " ]; then printf 'removed the lock of %s\\n' \"$(cat " + shell.Quote(lock+"/owner") + " 2>/dev/null)\"; rm -rf " + shell.Quote(lock) + "; else echo 'not locked'; fi"
	if d.opts.Stage.Sudo != "" {
		cmd = "sudo -n -H -u " + shell.Quote(d.opts.Stage.Sudo) + " -- sh -c " + shell.Quote(cmd)
	}
	var errs []error
	var mu sync.Mutex
	d.each(func(h *hostDeploy) {
		conn, err := remote.Dial(ctx, h.addr, d.opts.SSH)
		if err == nil {
			h.conn = conn
			err = conn.Run(ctx, "unlock", cmd, nil, h.log, h.log)
		}
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	})
	d.close()
	if len(errs) > 0 {
		return fmt.Errorf("unlock: %w", errors.Join(errs...))
	}
	return nil
}
