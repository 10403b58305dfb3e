package doowexporter

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/collector/extension/xextension/storage"
)

// Rule W of docs/conversion.md in the collector: usage points are summed per stream
// (license, unit, attribution; kind USAGE) and clock-aligned window, and each window,
// once sealed, becomes one event per stream (packed, as rule P). No Collector component
// does this (the interval processor keeps its state in memory and knows neither Doow's
// streams nor the ids that make a re-sent input count once), so the exporter does it,
// over the Collector's storage extension:
//
//   - apply: a push's points are written as one entry (their ids and the sums they add
//     to each stream and window) in one storage operation; only then does the push
//     succeed, so an acknowledged input is never lost. A point whose id was seen within
//     dedup_horizon (a sender's retry after a lost answer) is not counted again, and is
//     kept for another horizon. The windows' sums live in memory, rebuilt from the
//     entries at a start.
//   - seal: a window is sealed at its end plus grace. Its number is stored first (no
//     point enters it after, even across a restart), then its events go into the sealed
//     queue (exporterhelper's persistent queue and retry), then "done" is stored for
//     it. A crash in between seals it again: the same ids (from the gateway's identity,
//     the window and the stream), the same content.
//   - a point for a sealed window goes into the earliest open one.
//   - entries are deleted once past the horizon and their windows are done.
//
// One write per push, not one per stream: a push of 1,000 points of 1,000 streams is
// one entry of about 90 KB, where a key per stream cost 1,000 JSON encodings and writes
// (bench/collectorbench, per 1,000 points: 15.7 ms of CPU with a key per stream, about
// 4 ms with an entry per push, the stock otlphttp exporter about 2.9).
//
// Storage keys: "gateway" (this gateway's identity, made once), "sealed" (windows that
// start before it take no points), "done/<window>" (its events are queued), and
// "log/<applied at>/<random>" (one push's entry, aggregatorlog.go).

var nsWindow = uuid.MustParse("c4a1e7d2-6b3f-4e58-9a0c-2d7f1b8e6a35")

type aggregator struct {
	cfg     AggregationConfig
	client  storage.Client
	now     func() time.Time
	enqueue func(context.Context, []event) error // into the sealed queue

	mu      sync.Mutex
	gateway string
	sealed  int64                        // windows that start before it are sealed (Unix ns)
	done    map[int64]bool               // windows whose events are queued
	windows map[int64]map[string]*stream // open (or sealed, not yet queued) windows' sums
	applied map[uuid.UUID]int64          // id -> its latest entry's time
	entries []logEntry                   // in the order applied
}

// stream is one stream's sums in one window.
type stream struct {
	licenseID   string
	unit        string
	attribution []attr
	sums        map[string]quantity
}

// logEntry is what is kept in memory of a stored entry: enough to forget it.
type logEntry struct {
	key     string
	at      int64
	ids     []uuid.UUID
	windows []int64
}

func newAggregator(cfg AggregationConfig, client storage.Client, now func() time.Time,
	enqueue func(context.Context, []event) error) *aggregator {
	return &aggregator{cfg: cfg, client: client, now: now, enqueue: enqueue, done: map[int64]bool{},
		windows: map[int64]map[string]*stream{}, applied: map[uuid.UUID]int64{}}
}

// load rebuilds the state from what a previous run stored, and makes the gateway's
// identity the first time.
func (a *aggregator) load(ctx context.Context) error {
	walker, ok := a.client.(storage.Walker)
	if !ok {
		return errors.New("aggregation.storage: this storage extension cannot list its keys; use file_storage")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	type stored struct {
		key   string
		entry decodedEntry
	}
	var found []stored
	err := walker.Walk(ctx, func(key string, value []byte) ([]*storage.Operation, error) {
		switch {
		case key == "gateway":
			a.gateway = string(value)
		case key == "sealed":
			a.sealed, _ = strconv.ParseInt(string(value), 10, 64)
		case strings.HasPrefix(key, "done/"):
			w, _ := strconv.ParseInt(strings.TrimPrefix(key, "done/"), 10, 64)
			a.done[w] = true
		case strings.HasPrefix(key, "log/"):
			entry, err := decodeEntry(value)
			if err != nil {
				return nil, fmt.Errorf("aggregation state %s: %w", key, err)
			}
			found = append(found, stored{key, entry})
		}
		return nil, nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(found, func(x, y stored) int { return int(x.entry.at - y.entry.at) })
	for _, f := range found {
		kept := logEntry{key: f.key, at: f.entry.at, ids: f.entry.ids}
		for _, id := range f.entry.ids {
			a.applied[id] = f.entry.at
		}
		var key []byte
		for i := range f.entry.deltas {
			d := &f.entry.deltas[i]
			kept.windows = appendWindow(kept.windows, d.window)
			if !a.done[d.window] {
				key = appendStreamKey(key[:0], &d.point)
				a.add(d.window, key, &d.point)
			}
		}
		a.entries = append(a.entries, kept)
	}
	if a.gateway == "" {
		a.gateway = uuid.NewString()
		return a.client.Set(ctx, "gateway", []byte(a.gateway))
	}
	return nil
}

func appendWindow(windows []int64, w int64) []int64 {
	if !slices.Contains(windows, w) {
		windows = append(windows, w)
	}
	return windows
}

// add adds a point's quantity to its stream's sum in a window (in memory); key is the
// stream's canonical encoding. What the state keeps is copied: a push's memory is reused.
func (a *aggregator) add(w int64, key []byte, e *event) {
	streams := a.windows[w]
	if streams == nil {
		streams = map[string]*stream{}
		a.windows[w] = streams
	}
	held := streams[string(key)]
	if held == nil {
		held = &stream{licenseID: strings.Clone(e.licenseID), unit: strings.Clone(e.unit),
			attribution: cloneAttribution(e.attribution), sums: map[string]quantity{}}
		streams[string(key)] = held
	}
	if sum, ok := held.sums[e.metric]; ok {
		held.sums[e.metric] = addQuantity(sum, e.quantity)
	} else {
		held.sums[strings.Clone(e.metric)] = e.quantity
	}
}

// window is the start of the window a point of start and time belongs to: its start's
// when it has one, else its time's; the earliest open window when that one is sealed.
func (a *aggregator) window(start, at uint64, now time.Time) int64 {
	length := int64(a.cfg.Window)
	t := int64(at)
	if start > 0 {
		t = int64(start)
	}
	w := t - t%length
	if open := a.firstOpen(now); w < open {
		w = open
	}
	return w
}

// firstOpen is the start of the earliest window still taking points: not sealed, and
// its end plus grace not passed.
func (a *aggregator) firstOpen(now time.Time) int64 {
	length := int64(a.cfg.Window)
	passed := now.UnixNano() - int64(a.cfg.Grace) - length // windows starting at or before it are due
	open := passed - passed%length + length
	return max(open, a.sealed)
}

// apply adds the points (a metrics push's events, all packable) to their windows,
// skipping those seen within the horizon, as one stored entry; the state changes only
// once it is stored. It says how many points it added, and how many it had seen.
func (a *aggregator) apply(ctx context.Context, events []event) (added, repeated int, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	entry := entryWriter{idList: make([]uuid.UUID, 0, len(events)), buf: make([]byte, 0, 96*len(events))}
	seen := make(map[uuid.UUID]bool, len(events))
	type counted struct {
		window int64
		event  *event
	}
	var fresh []counted
	for i := range events {
		e := &events[i]
		if !e.packable {
			return 0, 0, fmt.Errorf("event %s is not a metric point: it cannot be aggregated", e.eventID)
		}
		id, err := uuid.Parse(e.eventID)
		if err != nil {
			return 0, 0, fmt.Errorf("event id %q: %w", e.eventID, err)
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		entry.id(id)
		if _, done := a.applied[id]; done {
			repeated++ // a sender's retry: not counted, and kept for another horizon
			continue
		}
		w := a.window(e.start, e.nanos, now)
		entry.delta(w, e)
		fresh = append(fresh, counted{w, e})
	}
	if len(seen) == 0 {
		return 0, 0, nil
	}
	ids := entry.ids()
	kept := logEntry{key: "log/" + strconv.FormatInt(now.UnixNano(), 10) + "/" + uuid.NewString(), at: now.UnixNano(), ids: ids}
	if err := a.client.Set(ctx, kept.key, entry.bytes(now.UnixNano())); err != nil {
		return 0, 0, fmt.Errorf("storing usage in aggregation.storage: %w", err)
	}
	var key []byte
	for _, c := range fresh {
		kept.windows = appendWindow(kept.windows, c.window)
		key = appendStreamKey(key[:0], c.event)
		a.add(c.window, key, c.event)
	}
	for _, id := range ids {
		a.applied[id] = kept.at
	}
	a.entries = append(a.entries, kept)
	return len(fresh), repeated, nil
}

// sealDue seals the windows whose end plus grace has passed (all of them when
// everything is true: a gateway shutting down), oldest first, and forgets what is past
// the horizon.
func (a *aggregator) sealDue(ctx context.Context, everything bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	open := a.firstOpen(now)
	starts := make([]int64, 0, len(a.windows))
	for w := range a.windows {
		if w < open || everything {
			starts = append(starts, w)
		}
	}
	slices.Sort(starts)
	for _, w := range starts {
		if err := a.seal(ctx, w); err != nil {
			return err
		}
	}
	if err := a.markSealed(ctx, open); err != nil {
		return err
	}
	return a.forget(ctx, now)
}

// seal sends one window's events to the sealed queue: its number is stored first (no
// point enters it after), "done" last (a crash in between seals it again, alike).
func (a *aggregator) seal(ctx context.Context, w int64) error {
	if err := a.markSealed(ctx, w+int64(a.cfg.Window)); err != nil {
		return err
	}
	if events := a.windowEvents(w, a.windows[w]); len(events) > 0 {
		if err := a.enqueue(ctx, events); err != nil {
			return fmt.Errorf("queueing the events of the window at %s: %w", time.Unix(0, w).UTC().Format(time.RFC3339), err)
		}
	}
	if err := a.client.Set(ctx, "done/"+strconv.FormatInt(w, 10), nil); err != nil {
		return err
	}
	a.done[w] = true
	delete(a.windows, w)
	return nil
}

func (a *aggregator) markSealed(ctx context.Context, upTo int64) error {
	if upTo <= a.sealed {
		return nil
	}
	if err := a.client.Set(ctx, "sealed", []byte(strconv.FormatInt(upTo, 10))); err != nil {
		return err
	}
	a.sealed = upTo
	return nil
}

// forget deletes the entries past the horizon whose windows are all done, and the
// "done" marks no entry refers to any more.
func (a *aggregator) forget(ctx context.Context, now time.Time) error {
	var ops []*storage.Operation
	var gone []logEntry
	kept := a.entries[:0:0]
	for _, entry := range a.entries {
		if now.UnixNano()-entry.at > int64(a.cfg.DedupHorizon) && a.allDone(entry.windows) {
			ops = append(ops, storage.DeleteOperation(entry.key))
			gone = append(gone, entry)
		} else {
			kept = append(kept, entry)
		}
	}
	referred := map[int64]bool{}
	for _, entry := range kept {
		for _, w := range entry.windows {
			referred[w] = true
		}
	}
	var doneGone []int64
	for w := range a.done {
		if !referred[w] {
			ops = append(ops, storage.DeleteOperation("done/"+strconv.FormatInt(w, 10)))
			doneGone = append(doneGone, w)
		}
	}
	if len(ops) == 0 {
		return nil
	}
	if err := a.client.Batch(ctx, ops...); err != nil {
		return err
	}
	for _, entry := range gone {
		for _, id := range entry.ids {
			if a.applied[id] == entry.at { // not seen again since
				delete(a.applied, id)
			}
		}
	}
	for _, w := range doneGone {
		delete(a.done, w)
	}
	a.entries = kept
	return nil
}

func (a *aggregator) allDone(windows []int64) bool {
	for _, w := range windows {
		if !a.done[w] {
			return false
		}
	}
	return true
}

// windowEvents: per stream, its measurements in metric name order, at most
// maxMeasurements an event; the event id derives from the gateway, the window, the
// stream and the event's place among the stream's.
func (a *aggregator) windowEvents(w int64, streams map[string]*stream) []event {
	keys := make([]string, 0, len(streams))
	for key := range streams {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	var events []event
	for _, key := range keys {
		s := streams[key]
		metrics := make([]string, 0, len(s.sums))
		for metric := range s.sums {
			metrics = append(metrics, metric)
		}
		slices.Sort(metrics)
		for part := 0; part*maxMeasurements < len(metrics); part++ {
			chunk := metrics[part*maxMeasurements : min((part+1)*maxMeasurements, len(metrics))]
			name := appendEncStr(nil, a.gateway)
			name = appendEncInt(name, w)
			name = appendEncInt(append(name, key...), int64(part))
			e := event{eventID: uuid.NewSHA1(nsWindow, name).String(), licenseID: s.licenseID, nanos: uint64(w),
				unit: s.unit, attribution: s.attribution, metric: chunk[0], quantity: s.sums[chunk[0]]}
			for _, metric := range chunk[1:] {
				e.more = append(e.more, measurement{metric, s.sums[metric]})
			}
			events = append(events, e)
		}
	}
	return events
}

// streamKeyOf is a stream's canonical encoding: license, unit, attribution (typed).

// appendStreamKey appends a point's stream's canonical encoding: license, unit,
// attribution (typed).
func appendStreamKey(key []byte, e *event) []byte {
	key = appendEncStr(appendEncStr(key, e.licenseID), e.unit)
	return appendEncAttribution(key, e.attribution)
}

func cloneAttribution(attribution []attr) []attr {
	out := make([]attr, len(attribution))
	for i, a := range attribution {
		out[i] = attr{key: strings.Clone(a.key), value: a.value}
		out[i].value.str = strings.Clone(a.value.str)
	}
	return out
}

// addQuantity sums two quantities: integers stay integers while they fit in int64.
func addQuantity(a, b quantity) quantity {
	if sum := a.i + b.i; a.isInt && b.isInt && (sum > a.i) == (b.i > 0) {
		return quantity{isInt: true, i: sum}
	}
	return quantity{f: a.float() + b.float()}
}
