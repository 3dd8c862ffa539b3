package deploy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/hostscript"
)

// Deployment is one deploy (or rollback) a host recorded.
type Deployment struct {
	Commit  Commit // the source commit
	Time    time.Time
	Who     string
	Message string
	Action  Action
	Result  Outcome
	Live    bool   // what the host runs now
	Release string // release mode: its directory, while it is kept
}

// HostReleases is one host's deploy history, newest first.
type HostReleases struct {
	Host        string
	Deployments []Deployment
	Err         error
}

// Releases reads every host's deploy history (its audit log and, in
// release mode, its release directories), read-only.
func Releases(ctx context.Context, opts Options) ([]HostReleases, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	d, err := newFleet(ctx, settings{Options: opts})
	if err != nil {
		return nil, err
	}
	d.openRepo()
	out := make([]HostReleases, len(d.hosts))
	var wg sync.WaitGroup
	for i, h := range d.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i] = d.releases(ctx, h)
		}()
	}
	wg.Wait()
	d.close(false)
	for i, h := range d.hosts {
		r := out[i]
		if r.Err != nil {
			h.log.Printf("unreachable: %v", r.Err)
			continue
		}
		if len(r.Deployments) == 0 {
			h.log.Printf("nothing deployed")
		}
		for _, e := range r.Deployments {
			mark := " "
			if e.Live {
				mark = "*"
			}
			line := fmt.Sprintf("%s %s  %s  %s by %s: %s", mark, e.Time.Local().Format("2006-01-02 15:04:05"), e.Commit, e.Action, e.Who, e.Result)
			if e.Message != "" {
				line += fmt.Sprintf(" (%s)", e.Message)
			}
			if e.Release != "" {
				line += "  " + e.Release
			}
			h.log.Printf("%s", line)
		}
	}
	var errs []error
	for _, r := range out {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("releases: %d host(s) could not be read: %w", len(errs), errs[0])
	}
	return out, nil
}

func (d *fleet) releases(ctx context.Context, h *hostDeploy) HostReleases {
	r := HostReleases{Host: h.addr.Name()}
	vars := d.vars(hostscript.Status)
	vars.AuditLog = true
	st, err := d.look(ctx, h, vars)
	if err != nil {
		r.Err = &HostError{Host: r.Host, Step: "releases", Err: err}
		return r
	}
	dirs := map[string]string{}
	for _, rel := range st.releases {
		dirs[rel.head.String()] = strings.TrimPrefix(rel.name, "releases/")
	}
	live := -1
	for i := len(st.audit) - 1; i >= 0; i-- {
		e := st.audit[i]
		if e.Action != ActionDeploy && e.Action != ActionRollback {
			continue
		}
		dep := Deployment{Time: e.Time, Who: e.Who, Message: e.Message, Action: e.Action, Result: e.Result, Release: dirs[e.checkout()]}
		dep.Commit = Commit{Hash: e.To}
		if d.repo != nil {
			if c, ok := d.repo.Lookup(hashOf(e.To)); ok {
				dep.Commit.Subject = c.Subject
			}
		}
		if live < 0 && e.Result == OutcomeOK && e.checkout() == st.head.String() {
			dep.Live = true
			live = len(r.Deployments)
		}
		r.Deployments = append(r.Deployments, dep)
	}
	return r
}
