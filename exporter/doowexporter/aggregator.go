package doowexporter

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
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
//   - apply: a push's points are added in one storage batch (one transaction with
//     file_storage) with their ids; only then does the push succeed, so an acknowledged
//     input is never lost. A point whose id was seen within dedup_horizon (a sender's
//     retry after a lost answer) is not counted again, and is kept for another horizon.
//   - seal: a window is sealed at its end plus grace. Its number is stored first (no
//     point enters it after, even across a restart), then its events go into the
//     sealed queue (exporterhelper's persistent queue and retry), then its state is
//     deleted. A crash in between seals it again: the same ids (from the gateway's
//     identity, the window and the stream), the same content.
//   - a point for a sealed window goes into the earliest open one.
//
// Storage keys: "gateway" (this gateway's identity, made once), "sealed" (windows that
// start before it are sealed), "s/<window>/<stream hash>" (a stream's sums in a window),
// "a/<applied at>/<first id>" (the ids of one push's points, 16 bytes each).

var nsWindow = uuid.MustParse("c4a1e7d2-6b3f-4e58-9a0c-2d7f1b8e6a35")

type aggregator struct {
	cfg     AggregationConfig
	client  storage.Client
	now     func() time.Time
	enqueue func(context.Context, []event) error // into the sealed queue

	mu       sync.Mutex
	gateway  string
	sealed   int64                        // windows that start before it are sealed (Unix ns)
	windows  map[int64]map[string]*stream // window start -> stream key -> sums
	applied  map[uuid.UUID]int64          // id -> when last seen (its latest applied batch)
	appliedB []appliedBatch               // in the order applied
}

// stream is one stream's sums in one window.
type stream struct {
	licenseID   string
	unit        string
	attribution []attr
	sums        map[string]quantity
}

type appliedBatch struct {
	key string
	at  int64
	ids []uuid.UUID
}

// storedStream is a stream as the storage holds it (attribution and sums typed).
type storedStream struct {
	LicenseID   string      `json:"license_id"`
	Unit        string      `json:"unit,omitempty"`
	Attribution [][3]string `json:"attribution"` // key, type (s, b, i, d), value
	Sums        [][3]string `json:"sums"`        // metric, type (i, d), value
}

func newAggregator(cfg AggregationConfig, client storage.Client, now func() time.Time,
	enqueue func(context.Context, []event) error) *aggregator {
	return &aggregator{cfg: cfg, client: client, now: now, enqueue: enqueue,
		windows: map[int64]map[string]*stream{}, applied: map[uuid.UUID]int64{}}
}

// load reads the state a previous run left, and makes the gateway's identity the first
// time.
func (a *aggregator) load(ctx context.Context) error {
	walker, ok := a.client.(storage.Walker)
	if !ok {
		return errors.New("aggregation.storage: this storage extension cannot list its keys; use file_storage")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	err := walker.Walk(ctx, func(key string, value []byte) ([]*storage.Operation, error) {
		switch {
		case key == "gateway":
			a.gateway = string(value)
		case key == "sealed":
			a.sealed, _ = strconv.ParseInt(string(value), 10, 64)
		case strings.HasPrefix(key, "s/"):
			window, _ := strconv.ParseInt(strings.Split(key, "/")[1], 10, 64)
			s, err := decodeStream(value)
			if err != nil {
				return nil, fmt.Errorf("aggregation state %s: %w", key, err)
			}
			a.streams(window)[s.key()] = s
		case strings.HasPrefix(key, "a/"):
			at, _ := strconv.ParseInt(strings.Split(key, "/")[1], 10, 64)
			b := appliedBatch{key: key, at: at}
			for i := 0; i+16 <= len(value); i += 16 {
				id := uuid.UUID(value[i : i+16])
				b.ids = append(b.ids, id)
				a.applied[id] = max(a.applied[id], at)
			}
			a.appliedB = append(a.appliedB, b)
		}
		return nil, nil
	})
	if err != nil {
		return err
	}
	slices.SortFunc(a.appliedB, func(x, y appliedBatch) int { return int(x.at - y.at) })
	if a.gateway == "" {
		a.gateway = uuid.NewString()
		return a.client.Set(ctx, "gateway", []byte(a.gateway))
	}
	return nil
}

func (a *aggregator) streams(window int64) map[string]*stream {
	if a.windows[window] == nil {
		a.windows[window] = map[string]*stream{}
	}
	return a.windows[window]
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

// apply adds the points (packable events) to their windows, skipping those applied
// within the horizon, in one storage batch; the state changes only once it is stored.
func (a *aggregator) apply(ctx context.Context, events []event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	type change struct {
		window    int64
		streamKey string
		sums      *stream
	}
	changed := map[string]*change{} // storage key -> the stream's new sums
	var ids []uuid.UUID
	fresh := map[uuid.UUID]bool{}
	for i := range events {
		e := &events[i]
		id, err := uuid.Parse(e.eventID)
		if err != nil {
			return fmt.Errorf("event id %q: %w", e.eventID, err)
		}
		if fresh[id] {
			continue
		}
		fresh[id] = true
		ids = append(ids, id)
		if _, done := a.applied[id]; done {
			// applied before: a sender's retry (not counted). Seen again, it is kept for
			// another horizon: a sender that keeps retrying (an agent whose other
			// gateway is down resends the whole request) is recognised every time.
			continue
		}
		w := a.window(e.start, e.nanos, now)
		streamKey := streamKeyOf(e)
		storeKey := streamStorageKey(w, streamKey)
		c := changed[storeKey]
		if c == nil {
			s := a.streams(w)[streamKey].clone()
			if s == nil {
				s = &stream{licenseID: strings.Clone(e.licenseID), unit: strings.Clone(e.unit),
					attribution: cloneAttribution(e.attribution), sums: map[string]quantity{}}
			}
			c = &change{w, streamKey, s}
			changed[storeKey] = c
		}
		if sum, ok := c.sums.sums[e.metric]; ok {
			c.sums.sums[e.metric] = addQuantity(sum, e.quantity)
		} else {
			c.sums.sums[strings.Clone(e.metric)] = e.quantity
		}
	}
	if len(ids) == 0 {
		return nil
	}
	ops := make([]*storage.Operation, 0, len(changed)+1)
	for key, c := range changed {
		ops = append(ops, storage.SetOperation(key, c.sums.encode()))
	}
	batch := appliedBatch{key: "a/" + strconv.FormatInt(now.UnixNano(), 10) + "/" + ids[0].String(), at: now.UnixNano(), ids: ids}
	packed := make([]byte, 0, 16*len(ids))
	for _, id := range ids {
		packed = append(packed, id[:]...)
	}
	ops = append(ops, storage.SetOperation(batch.key, packed))
	if err := a.client.Batch(ctx, ops...); err != nil {
		return fmt.Errorf("storing usage in aggregation.storage: %w", err)
	}
	for _, c := range changed {
		a.streams(c.window)[c.streamKey] = c.sums
	}
	for _, id := range ids {
		a.applied[id] = batch.at
	}
	a.appliedB = append(a.appliedB, batch)
	return nil
}

// sealDue seals the windows whose end plus grace has passed (all of them when
// everything is true: a gateway shutting down), oldest first, and forgets applied ids
// past the horizon.
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
// point enters it after), its state deleted last (a crash in between seals it again,
// alike).
func (a *aggregator) seal(ctx context.Context, w int64) error {
	if err := a.markSealed(ctx, w+int64(a.cfg.Window)); err != nil {
		return err
	}
	streams := a.windows[w]
	events := a.windowEvents(w, streams)
	if err := a.enqueueAll(ctx, events); err != nil {
		return fmt.Errorf("queueing the events of the window at %s: %w", time.Unix(0, w).UTC().Format(time.RFC3339), err)
	}
	ops := make([]*storage.Operation, 0, len(streams))
	for key := range streams {
		ops = append(ops, storage.DeleteOperation(streamStorageKey(w, key)))
	}
	if len(ops) > 0 {
		if err := a.client.Batch(ctx, ops...); err != nil {
			return err
		}
	}
	delete(a.windows, w)
	return nil
}

func (a *aggregator) enqueueAll(ctx context.Context, events []event) error {
	if len(events) == 0 {
		return nil
	}
	return a.enqueue(ctx, events)
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

// forget drops the applied ids of pushes older than the horizon.
func (a *aggregator) forget(ctx context.Context, now time.Time) error {
	old := 0
	for old < len(a.appliedB) && now.UnixNano()-a.appliedB[old].at > int64(a.cfg.DedupHorizon) {
		old++
	}
	if old == 0 {
		return nil
	}
	ops := make([]*storage.Operation, old)
	for i, b := range a.appliedB[:old] {
		ops[i] = storage.DeleteOperation(b.key)
	}
	if err := a.client.Batch(ctx, ops...); err != nil {
		return err
	}
	for _, b := range a.appliedB[:old] {
		for _, id := range b.ids {
			if a.applied[id] == b.at { // not seen again since
				delete(a.applied, id)
			}
		}
	}
	a.appliedB = slices.Delete(a.appliedB, 0, old)
	return nil
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
func streamKeyOf(e *event) string {
	key := appendEncStr(appendEncStr(nil, e.licenseID), e.unit)
	return string(appendEncAttribution(key, e.attribution))
}

func (s *stream) key() string {
	return streamKeyOf(&event{licenseID: s.licenseID, unit: s.unit, attribution: s.attribution})
}

func streamStorageKey(window int64, streamKey string) string {
	sum := sha1.Sum([]byte(streamKey))
	return "s/" + strconv.FormatInt(window, 10) + "/" + hex.EncodeToString(sum[:])
}

func (s *stream) clone() *stream {
	if s == nil {
		return nil
	}
	out := *s
	out.sums = make(map[string]quantity, len(s.sums)+1)
	for metric, q := range s.sums {
		out.sums[metric] = q
	}
	return &out
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

func (s *stream) encode() []byte {
	stored := storedStream{LicenseID: s.licenseID, Unit: s.unit, Attribution: [][3]string{}, Sums: [][3]string{}}
	for _, a := range s.attribution {
		switch a.value.kind {
		case kindStr:
			stored.Attribution = append(stored.Attribution, [3]string{a.key, "s", a.value.str})
		case kindBool:
			stored.Attribution = append(stored.Attribution, [3]string{a.key, "b", strconv.FormatUint(a.value.bits, 10)})
		case kindInt:
			stored.Attribution = append(stored.Attribution, [3]string{a.key, "i", strconv.FormatInt(int64(a.value.bits), 10)})
		case kindDouble:
			stored.Attribution = append(stored.Attribution, [3]string{a.key, "d", strconv.FormatUint(a.value.bits, 16)})
		}
	}
	for metric, q := range s.sums {
		if q.isInt {
			stored.Sums = append(stored.Sums, [3]string{metric, "i", strconv.FormatInt(q.i, 10)})
		} else {
			stored.Sums = append(stored.Sums, [3]string{metric, "d", strconv.FormatUint(math.Float64bits(q.f), 16)})
		}
	}
	data, _ := json.Marshal(stored)
	return data
}

func decodeStream(data []byte) (*stream, error) {
	var stored storedStream
	if err := json.Unmarshal(data, &stored); err != nil {
		return nil, err
	}
	s := &stream{licenseID: stored.LicenseID, unit: stored.Unit, sums: map[string]quantity{}}
	for _, a := range stored.Attribution {
		var v attrValue
		switch a[1] {
		case "s":
			v = strValue(a[2])
		case "b":
			v = boolValue(a[2] == "1")
		case "i":
			n, err := strconv.ParseInt(a[2], 10, 64)
			if err != nil {
				return nil, err
			}
			v = intValue(n)
		case "d":
			bits, err := strconv.ParseUint(a[2], 16, 64)
			if err != nil {
				return nil, err
			}
			v = attrValue{kind: kindDouble, bits: bits}
		default:
			return nil, fmt.Errorf("attribution %s: unknown type %q", a[0], a[1])
		}
		s.attribution = append(s.attribution, attr{a[0], v})
	}
	for _, m := range stored.Sums {
		switch m[1] {
		case "i":
			n, err := strconv.ParseInt(m[2], 10, 64)
			if err != nil {
				return nil, err
			}
			s.sums[m[0]] = quantity{isInt: true, i: n}
		case "d":
			bits, err := strconv.ParseUint(m[2], 16, 64)
			if err != nil {
				return nil, err
			}
			s.sums[m[0]] = quantity{f: math.Float64frombits(bits)}
		default:
			return nil, fmt.Errorf("sum %s: unknown type %q", m[0], m[1])
		}
	}
	return s, nil
}
