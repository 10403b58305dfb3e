package doowexporter

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
)

// Doow takes a bounded number of events per organisation a minute (1,000 by its SDKs'
// documentation; the contract's "event budget"). The pacer keeps the exporter's sends
// within it: the budget is configured (events_per_minute) or learnt from Doow's
// X-Doow-Rate-Limits (its event_rate category's limit), and a 429 or any category at its
// limit blocks sending until every category has expired. A batch that does not fit
// waits in the sending queue (exporterhelper's throttle retry with the delay), oldest
// first, rather than meeting 429 after 429.
//
// A learnt budget is the organisation's, shared with senders this exporter cannot see
// (every Lambda environment's extension, other services): as the Python client does
// (delivery/pacing.py), an overload halves this exporter's share of it, once per
// overload (the 429s of batches in flight together are one signal, as TCP reduces once
// per round trip), and quiet time gives a quarter of the budget back a minute, so
// senders converge on the budget instead of each pacing to all of it. A configured
// budget is this exporter's own and is kept.

const budgetWindow = time.Minute

const (
	minShare           = 1.0 / 64         // the smallest share after 429s (it still probes)
	recoveryPerMin     = 0.25             // share given back per quiet minute
	quietAfterThrottle = 30 * time.Second // from a 429's wait's end until the share grows
)

type pacer struct {
	mu           sync.Mutex
	configured   int       // events_per_minute; 0: learn it
	learned      int       // the event_rate limit Doow announced
	share        float64   // of a learnt budget, this exporter's (0..1]
	shareAt      time.Time // when the share was last brought up to date
	lastThrottle time.Time // the last 429
	blockedUntil time.Time // the latest expiry of a 429's wait or a category at its limit
	sent         []sending // the sends of the last minute, oldest first
	held         map[string]int
	heldSince    time.Time
}

type sending struct {
	at     time.Time
	events int
}

// The metrics, traces and logs exporters of one doow configuration share one pacer:
// they spend one organisation's budget.
var (
	pacersMu sync.Mutex
	pacers   = map[component.ID]*pacer{}
)

func sharedPacer(id component.ID, eventsPerMinute int) *pacer {
	pacersMu.Lock()
	defer pacersMu.Unlock()
	p := pacers[id]
	if p == nil || p.configured != eventsPerMinute {
		p = newPacer(eventsPerMinute)
		pacers[id] = p
	}
	return p
}

func newPacer(eventsPerMinute int) *pacer {
	return &pacer{configured: eventsPerMinute, held: map[string]int{}, share: 1}
}

// budget is the events a minute the exporter may send; 0 when unknown.
func (p *pacer) budget() int {
	if p.configured > 0 {
		return p.configured
	}
	if p.learned == 0 {
		return 0
	}
	return max(1, int(float64(p.learned)*p.share))
}

// recover gives the share back in quiet time: from quietAfterThrottle after a 429's wait.
func (p *pacer) recover(now time.Time) {
	quietFrom := p.lastThrottle
	if p.blockedUntil.After(quietFrom) {
		quietFrom = p.blockedUntil
	}
	quietFrom = quietFrom.Add(quietAfterThrottle)
	if p.share < 1 && now.After(quietFrom) {
		from := quietFrom
		if p.shareAt.After(from) {
			from = p.shareAt
		}
		p.share = min(1, p.share+recoveryPerMin*now.Sub(from).Minutes())
	}
	if now.After(p.shareAt) {
		p.shareAt = now
	}
}

// currentBudget is budget() for a reader outside the pacer (the budget gauge).
func (p *pacer) currentBudget() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.recover(time.Now())
	return p.budget()
}

// admit says whether the batch may go now (then it is counted as sent), or how long to
// wait. A batch larger than the budget goes once nothing else was sent for a minute.
func (p *pacer) admit(batchID string, events int, now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forget(now)
	p.recover(now)
	wait := p.blockedUntil.Sub(now)
	if budget := p.budget(); wait <= 0 && budget > 0 {
		inWindow := 0
		for _, s := range p.sent {
			inWindow += s.events
		}
		// the sends that must age out of the window before this batch fits
		for i := 0; inWindow+events > budget && i < len(p.sent); i++ {
			inWindow -= p.sent[i].events
			wait = p.sent[i].at.Add(budgetWindow).Sub(now)
		}
	}
	if wait > 0 {
		if len(p.held) == 0 {
			p.heldSince = now
		}
		p.held[batchID] = events
		return wait
	}
	p.sent = append(p.sent, sending{now, events})
	return 0
}

// note counts events sent outside admit (the halves of a 413, a repacked event).
func (p *pacer) note(events int, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sent = append(p.sent, sending{now, events})
}

func (p *pacer) forget(now time.Time) {
	drop := 0
	for drop < len(p.sent) && now.Sub(p.sent[drop].at) >= budgetWindow {
		drop++
	}
	p.sent = p.sent[drop:]
}

// learn reads an answer: X-Doow-Rate-Limits' categories (an event_rate limit is the
// budget; a category at its limit blocks for its retry_after) and a 429's wait.
func (p *pacer) learn(status int, header http.Header, wait time.Duration, hasWait bool, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if status == http.StatusTooManyRequests {
		if !hasWait {
			wait = 2 * time.Second // a 429 that says nothing: at least a short pause
		}
		p.recover(now)
		if !now.Before(p.blockedUntil) { // a new overload, not a 429 of the one waited out
			p.share = max(minShare, p.share/2)
		}
		p.lastThrottle = now
		p.block(now.Add(wait))
	}
	for name, c := range rateLimits(header) {
		if name == "event_rate" && c.limit > 0 {
			p.learned = int(c.limit)
		}
		if c.hasCurrent && c.limit > 0 && c.current >= c.limit && c.retryAfter > 0 {
			p.block(now.Add(time.Duration(min(c.retryAfter, maxRetryAfter.Seconds()) * float64(time.Second))))
		}
	}
}

func (p *pacer) block(until time.Time) {
	if until.After(p.blockedUntil) {
		p.blockedUntil = until
	}
}

// overBudget is what to log when batches were held back for a minute or more (then the
// count starts again): the events offered, the budget and what to do; "" otherwise.
func (p *pacer) overBudget(now time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.held) == 0 || now.Sub(p.heldSince) < budgetWindow {
		return ""
	}
	held := 0
	for _, n := range p.held {
		held += n
	}
	sent := 0
	for _, s := range p.sent {
		sent += s.events
	}
	clear(p.held)
	budget := "unknown (Doow answered 429)"
	if b := p.budget(); b > 0 {
		budget = strconv.Itoa(b) + " events a minute"
	}
	return fmt.Sprintf("over Doow's event budget: %d events offered in the last minute (%d sent, %d waiting in the sending queue), budget %s; "+
		"usage is delayed, not lost. To fit the budget: aggregate over a longer window (aggregation.window), use fewer attribution keys "+
		"(each combination is its own event), or send through the gateway tier (docs/collector.md)", sent+held, sent, held, budget)
}

// rateLimit is one category of X-Doow-Rate-Limits.
type rateLimit struct {
	limit, current, retryAfter float64
	hasCurrent                 bool
}

// rateLimits reads X-Doow-Rate-Limits: {"<category>": {"limit", "current",
// "retry_after"}}; numbers that are missing, negative or unreadable are left at 0.
func rateLimits(header http.Header) map[string]rateLimit {
	var categories map[string]map[string]json.RawMessage
	value := header.Get("X-Doow-Rate-Limits")
	if value == "" || json.Unmarshal([]byte(value), &categories) != nil {
		return nil
	}
	number := func(raw json.RawMessage) (float64, bool) {
		raw = bytes.TrimSpace(raw)
		if !isJSONNumber(raw) {
			return 0, false
		}
		f, err := strconv.ParseFloat(string(raw), 64)
		if (err != nil && !math.IsInf(f, 0)) || f < 0 {
			return 0, false
		}
		return f, true
	}
	out := make(map[string]rateLimit, len(categories))
	for name, fields := range categories {
		var c rateLimit
		c.limit, _ = number(fields["limit"])
		c.current, c.hasCurrent = number(fields["current"])
		c.retryAfter, _ = number(fields["retry_after"])
		out[name] = c
	}
	return out
}
