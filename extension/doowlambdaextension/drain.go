package doowlambdaextension

import (
	"context"
	"sync"
	"time"
)

// drain counts what the doow exporter accepted and has not finished with (delivered, or
// refused for good), and whether its last attempt failed (the usage then waits in the
// persistent queue on disk).
type drain struct {
	mu      sync.Mutex
	changed chan struct{} // closed on every change, then replaced
	pending int
	failing bool
}

func newDrain() *drain { return &drain{changed: make(chan struct{})} }

// Accepted is called by the doow exporter when it takes items into its sending queue.
func (d *drain) Accepted(items int) { d.update(func() { d.pending += items }) }

// Finished is called by the doow exporter when items were delivered or refused for good.
func (d *drain) Finished(items int) {
	d.update(func() {
		// items replayed from a previous process's queue were never counted as accepted
		d.pending = max(0, d.pending-items)
		d.failing = false
	})
}

// Failed is called by the doow exporter when an attempt failed and will be retried.
func (d *drain) Failed() { d.update(func() { d.failing = true }) }

func (d *drain) update(change func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	change()
	close(d.changed)
	d.changed = make(chan struct{})
}

// wait returns once nothing is pending, or (when stopOnFailure) the exporter is failing,
// or at the deadline: what is still pending and whether the exporter is failing.
func (d *drain) wait(ctx context.Context, deadline time.Time, stopOnFailure bool) (int, bool) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		d.mu.Lock()
		pending, failing, changed := d.pending, d.failing, d.changed
		d.mu.Unlock()
		if pending == 0 || (stopOnFailure && failing) {
			return pending, failing
		}
		select {
		case <-changed:
		case <-timer.C:
			return pending, failing
		case <-ctx.Done():
			return pending, failing
		}
	}
}
