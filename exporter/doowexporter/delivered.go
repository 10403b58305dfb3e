package doowexporter

import (
	"sync"
	"time"
)

// deliveredBatches remembers the batches Doow acknowledged lately. A push is retried
// whole when one of its batches failed or waited for the budget; its other batches,
// already delivered, are not sent again (Doow would count them once, but each resend
// costs the organisation's event budget). Batch ids are derived from the event ids, so
// the same events make the same batch on every attempt.
type deliveredBatches struct {
	mu  sync.Mutex
	ids map[string]time.Time
}

const (
	deliveredHorizon = 15 * time.Minute
	maxDelivered     = 100_000
)

func (d *deliveredBatches) has(id string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.ids[id]
	return ok && now.Sub(at) < deliveredHorizon
}

func (d *deliveredBatches) add(id string, now time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ids == nil {
		d.ids = map[string]time.Time{}
	}
	if len(d.ids) >= maxDelivered {
		for old, at := range d.ids {
			if now.Sub(at) >= deliveredHorizon {
				delete(d.ids, old)
			}
		}
		if len(d.ids) >= maxDelivered {
			clear(d.ids) // forgetting only costs a resend, which Doow counts once
		}
	}
	d.ids[id] = now
}
