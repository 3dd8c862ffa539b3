package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/gitric/gitric/gitrictasks/internal/hostscript"
	"github.com/gitric/gitric/gitrictasks/internal/localrepo"
	"github.com/gitric/gitric/gitrictasks/internal/stream"
)

// Plan is what a deploy would do on each host, and every refusal it would
// meet, found without taking a lock or writing anything anywhere.
type Plan struct {
	Commit Commit
	// Refusals are the local ones (a dirty working copy, a shallow clone).
	Refusals []error
	Hosts    []HostPlan
}

// HostPlan is what a deploy would do on one host.
type HostPlan struct {
	Host     string
	From, To string // source commits (full hashes; From empty: nothing deployed)
	// Already is set when the host is on To: the deploy changes nothing.
	Already bool
	// CutShort is the commit of a cutover that was killed halfway on the
	// host (see HostStatus.CutShort): the deploy cuts over again.
	CutShort string
	// Commits is how many commits go out, Subjects the first of them.
	Commits  int
	Subjects []string
	// Files, Insertions and Deletions sum up the diff; Paths are its
	// first changed paths.
	Files, Insertions, Deletions int
	Paths                        []string
	// Bytes is the size of the pack the host would get.
	Bytes int64
	// Steps are the commands the deploy would run there, in order.
	Steps []Step
	// Refusals are what would refuse this host.
	Refusals []error
}

// Step is a command a deploy runs on a host.
type Step struct {
	Name     string // build, once, stop, switch, start, check
	Command  string
	Downtime bool // inside the window where the service is down
}

// Refused reports whether the deploy would be refused anywhere.
func (p *Plan) Refused() bool {
	if len(p.Refusals) > 0 {
		return true
	}
	for _, h := range p.Hosts {
		if len(h.Refusals) > 0 {
			return true
		}
	}
	return false
}

// Err joins every refusal, or is nil.
func (p *Plan) Err() error {
	errs := append([]error(nil), p.Refusals...)
	for _, h := range p.Hosts {
		errs = append(errs, h.Refusals...)
	}
	return errors.Join(errs...)
}

// MakePlan finds out what Run with opts would do, read-only: one session
// per host, no lock taken, nothing written on any host. The error is the
// plan's refusals (see Plan.Err), or what kept it from being made.
func MakePlan(ctx context.Context, opts DeployOptions) (*Plan, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	f, err := newFleet(ctx, settings(opts))
	if err != nil {
		return nil, err
	}
	d, err := newDeploy(f)
	if err != nil {
		return nil, err
	}
	repo := d.repo
	p := &Plan{Commit: publicCommit(d.commit)}
	if paths, err := repo.Changes(localrepo.StatusOptions{IgnoreUntracked: d.opts.IgnoreUntracked}); err != nil {
		return nil, err
	} else if len(paths) > 0 && !d.opts.AllowDirty {
		p.Refusals = append(p.Refusals, &DirtyError{Root: repo.Root(), Paths: paths, Hint: d.opts.Hints.AllowDirty})
	}
	if _, err := readSecrets(d.opts.Stage.Secrets); err != nil {
		p.Refusals = append(p.Refusals, err)
	}
	if err := d.checkShared(); err != nil {
		p.Refusals = append(p.Refusals, err)
	}
	d.con.Printf("plan: %s to %s, %d host(s), %s (read-only)", d.commit, d.opts.Stage.Name, len(d.hosts), d.opts.Stage.Path)
	p.Hosts = make([]HostPlan, len(d.hosts))
	var wg sync.WaitGroup
	var mu sync.Mutex // serialises the reads of the local repository
	for i, h := range d.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Hosts[i] = d.planHost(ctx, h, &mu)
		}()
	}
	wg.Wait()
	d.close(false)
	d.printPlan(p)
	return p, p.Err()
}

func (d *deployOp) planHost(ctx context.Context, h *hostDeploy, mu *sync.Mutex) HostPlan {
	hp := HostPlan{Host: h.addr.Name(), To: d.commit.Hash.String()}
	refuse := func(err error) { hp.Refusals = append(hp.Refusals, &HostError{Host: hp.Host, Step: "plan", Err: err}) }
	st, err := d.look(ctx, h, d.vars(hostscript.Plan))
	if err != nil {
		refuse(err)
		return hp
	}
	switch {
	case st.foreign:
		refuse(&ScriptError{Code: "foreign", Message: fmt.Sprintf("%s holds a git repository that gitric did not create. To deploy into it anyway: %s", d.opts.Stage.Path, d.opts.Hints.TakeOver)})
	case st.notEmpty:
		refuse(&ScriptError{Code: "notempty", Message: fmt.Sprintf("the repository path %s is not empty and is not a gitric %s root", d.opts.Stage.Path, d.opts.Stage.mode())})
	}
	if st.locked != "" {
		refuse(&LockedError{Host: hp.Host, Owner: lockHolder(st.locked), Hint: d.opts.Hints.Unlock})
	}
	from := st.sourceOf()
	hp.From, hp.CutShort = hashString(from), st.cutShort
	if from == d.commit.Hash && st.cutShort == "" {
		hp.Already = true
		return hp
	}
	if len(st.changed) > 0 && !d.opts.DiscardEdits {
		refuse(&ServerEditsError{Host: hp.Host, Paths: st.changed, Hint: d.opts.Hints.DiscardEdits, CutShort: st.cutShort})
	}
	if len(st.missing) > 0 {
		refuse(fmt.Errorf("%w: %s", ErrSharedMissing, strings.Join(st.missing, ", ")))
	}
	mu.Lock()
	defer mu.Unlock()
	if !from.IsZero() && !d.opts.ForcePush {
		ok, err := d.repo.IsAncestor(from, d.commit.Hash)
		switch {
		case err != nil || (!ok && len(d.shallow) > 0):
			refuse(d.shallowError(from, err))
		case !ok:
			refuse(&NonFastForwardError{Host: hp.Host, Commit: d.commit.Hash.String(), Current: d.describe(from), Hint: d.opts.Hints.ForcePush})
		}
	} else if from.IsZero() && len(d.shallow) > 0 {
		refuse(d.shallowError(from, nil))
	}
	if c, err := d.repo.Outgoing(d.commit.Hash, from, 5); err == nil {
		hp.Commits, hp.Subjects = c.Commits, c.Subjects
		hp.Files, hp.Insertions, hp.Deletions, hp.Paths = c.Files, c.Insertions, c.Deletions, c.Paths
		lost := untrackedConflicts(c.Added, st.untracked)
		if d.opts.Stage.mode() == ModeBlueGreen && d.opts.Stage.Build != "" && !st.head.IsZero() {
			lost = st.untracked // next's directory is replaced: all of them
		}
		if len(lost) > 0 && !d.opts.DiscardEdits {
			refuse(&UntrackedError{Host: hp.Host, Paths: lost, Hint: d.opts.Hints.DiscardEdits})
		}
	}
	var haves []plumbing.Hash
	if !st.head.IsZero() {
		haves = append(haves, st.head)
	}
	cw := &stream.Counter{}
	if _, err := localrepo.WritePacks(ctx, cw, []localrepo.PackPart{{Repo: d.repo, Want: d.commit.Hash, Haves: haves}}); err == nil {
		hp.Bytes = cw.Count()
	}
	hp.Steps = steps(d.opts, from.IsZero())
	return hp
}

// untrackedConflicts applies the host script's rule to the host's
// untracked files: those a checkout adding paths would overwrite or delete.
func untrackedConflicts(added, untracked []string) []string {
	un := map[string]bool{}
	for _, u := range untracked {
		un[u] = true
	}
	seen := map[string]bool{}
	for _, a := range added {
		if un[a] {
			seen[a] = true
			continue
		}
		for _, u := range untracked {
			if strings.HasPrefix(u, a+"/") || strings.HasPrefix(a, u+"/") {
				seen[u] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// steps are the commands a deploy runs on a host, in the mode's order.
func steps(opts settings, first bool) []Step {
	st := opts.Stage
	var out []Step
	add := func(name, cmd string, down bool) {
		if cmd != "" {
			out = append(out, Step{Name: name, Command: cmd, Downtime: down})
		}
	}
	check := st.Check
	if st.HTTPCheck != "" {
		check = strings.TrimSpace(check + " " + "GET " + st.HTTPCheck)
	}
	switch {
	case st.mode() == ModeRelease && st.Overlap && !first:
		add("build", st.Build, false)
		add("once", st.Once, false)
		add("start", st.Start, false)
		add("check", check, false)
		add("switch", "rename current", false)
		add("stop", st.Stop+" (in the old release)", false)
	case st.mode() == ModeRelease || (st.mode() == ModeBlueGreen && st.Build != ""):
		add("build", st.Build, false)
		add("once", st.Once, false)
		if !first {
			add("stop", st.Stop, true)
		}
		if st.mode() == ModeRelease {
			add("switch", "rename current", true)
			add("start", st.Start, true)
		} else {
			add("switch", "rename the built copy to next's", true)
			add("start", st.Start, false)
		}
		add("check", check, false)
	default:
		add("once", st.Once, false)
		if !first {
			add("stop", st.Stop, true)
		}
		add("switch", "git reset --hard", true)
		add("build", st.Build, st.mode() == ModeInPlace)
		add("start", st.Start, st.mode() == ModeInPlace)
		add("check", check, false)
	}
	return out
}

func (d *deployOp) printPlan(p *Plan) {
	for _, e := range p.Refusals {
		d.con.Printf("refused: %v", e)
	}
	for i, h := range d.hosts {
		hp := p.Hosts[i]
		switch {
		case hp.Already:
			h.log.Printf("already on %s; nothing to do", d.commit)
		default:
			extra := ""
			if d.opts.Stage.Artifacts != nil {
				extra = ", plus the artifacts, built when the deploy runs"
			}
			if hp.CutShort != "" {
				h.log.Printf("the last cutover here, to %s, was cut short (killed): the deploy would do it again", shortHex(hp.CutShort))
			}
			h.log.Printf("%s -> %s: %d commit(s) (%s), %d file(s) changed, +%d -%d, about %s to send%s",
				shortHex(hp.From), d.commit.Short(), hp.Commits, strings.Join(hp.Subjects, "; "), hp.Files, hp.Insertions, hp.Deletions, byteSize(hp.Bytes), extra)
			if len(hp.Paths) > 0 {
				h.log.Printf("changes %s", strings.Join(hp.Paths, ", "))
			}
			for _, s := range hp.Steps {
				mark := ""
				if s.Downtime {
					mark = " (downtime)"
				}
				h.log.Printf("would run %s: %s%s", s.Name, oneLine(s.Command), mark)
			}
		}
		for _, e := range hp.Refusals {
			h.log.Printf("refused: %v", e)
		}
	}
	verdict := "the deploy would go ahead"
	if p.Refused() {
		verdict = "the deploy would be refused (see above); nothing was changed anywhere"
	}
	d.con.Printf("plan: %s (%s)", verdict, round(time.Since(d.started)))
}

// oneLine shows a multi-line command on one line.
func oneLine(cmd string) string {
	lines := strings.Split(strings.TrimSpace(cmd), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "; ")
}
