package deploy

import (
	"context"
	"time"

	"github.com/gitric/gitric/gitrictasks/internal/hostscript"
)

// Swap exchanges the live and next working copies of a blue/green stage
// on every host (two renames of symlinks each), in the batches of
// opts.Batch, under the stage's lock.
func Swap(ctx context.Context, opts SwapOptions) (*Result, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	f, err := newFleet(ctx, settings{Options: opts.Options, RolloutOptions: opts.RolloutOptions})
	if err != nil {
		return nil, err
	}
	f.openRepo()
	d := &swapOp{rollout: &rollout{fleet: f, verb: "preparing"}}
	d.op = d
	d.con.Printf("swapping live and next on %s: %d host(s), %s", d.opts.Stage.Name, len(d.hosts), d.opts.Stage.Path)
	return d.run(ctx)
}

// swapOp is a swap: nothing to get ready (both working copies are on
// the host), and a cutover that exchanges the live and next symlinks. It
// changes no working copy, so edits on the host do not refuse it.
type swapOp struct{ *rollout }

func (d *swapOp) action() Action                           { return ActionSwap }
func (d *swapOp) script(*hostDeploy, *hostscript.Vars)     {}
func (d *swapOp) ready(context.Context, *hostDeploy) error { return nil }
func (d *swapOp) allReady(context.Context) error           { return nil }

func (d *swapOp) cutover(h *hostDeploy) error {
	begin := time.Now()
	if err := h.session().swap(d.auditHead(h, h.from, h.fromSrc)); err != nil {
		h.res.Outcome, h.res.Err = OutcomeFailed, &HostError{Host: h.addr.Name(), Step: "swap", Err: err}
		return h.res.Err
	}
	h.res.Outcome, h.res.Downtime = OutcomeOK, time.Since(begin)
	return nil
}
