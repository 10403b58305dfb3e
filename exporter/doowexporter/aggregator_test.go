package doowexporter

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/extension/xextension/storage"
)

// memStorage is a storage client in memory (as file_storage: batches all or nothing,
// keys listed by Walk); failBatches makes the next batches fail.
type memStorage struct {
	mu          sync.Mutex
	data        map[string][]byte
	failBatches int
	failPrefix  string // the next batch whose first key starts with it fails
}

func newMemStorage() *memStorage { return &memStorage{data: map[string][]byte{}} }

func (m *memStorage) Get(_ context.Context, key string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.data[key], nil
}

func (m *memStorage) Set(ctx context.Context, key string, value []byte) error {
	return m.Batch(ctx, storage.SetOperation(key, value))
}

func (m *memStorage) Delete(ctx context.Context, key string) error {
	return m.Batch(ctx, storage.DeleteOperation(key))
}

func (m *memStorage) Batch(_ context.Context, ops ...*storage.Operation) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.failBatches > 0 {
		m.failBatches--
		return errors.New("disk full")
	}
	if m.failPrefix != "" && len(ops) > 0 && strings.HasPrefix(ops[0].Key, m.failPrefix) {
		m.failPrefix = ""
		return errors.New("killed")
	}
	for _, op := range ops {
		switch op.Type {
		case storage.Set:
			m.data[op.Key] = append([]byte(nil), op.Value...)
		case storage.Delete:
			delete(m.data, op.Key)
		case storage.Get:
			op.Value = m.data[op.Key]
		}
	}
	return nil
}

func (m *memStorage) Walk(_ context.Context, visit storage.WalkFunc) error {
	m.mu.Lock()
	data := maps.Clone(m.data)
	m.mu.Unlock()
	for key, value := range data {
		if _, err := visit(key, value); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStorage) Close(context.Context) error { return nil }

// aggregation is an aggregator on a clock the test moves and a sealed queue it reads.
type aggregation struct {
	*aggregator
	clock  time.Time
	queued [][]event
	fail   error // the sealed queue's answer
}

var window0 = time.Date(2026, 11, 24, 10, 15, 0, 0, time.UTC) // a window's start

func newAggregation(t *testing.T, store *memStorage, clock time.Time) *aggregation {
	t.Helper()
	g := &aggregation{clock: clock}
	cfg := defaultAggregationConfig()
	g.aggregator = newAggregator(cfg, store, func() time.Time { return g.clock },
		func(_ context.Context, events []event) error {
			if g.fail != nil {
				return g.fail
			}
			g.queued = append(g.queued, events)
			return nil
		})
	require.NoError(t, g.load(context.Background()))
	return g
}

// point is a packable event of a delta point started at start.
func point(id int, license, metric string, q int64, start time.Time, attribution ...attr) event {
	return event{eventID: fmt.Sprintf("00000000-0000-5000-8000-%012d", id), licenseID: license, metric: metric,
		quantity: quantity{isInt: true, i: q}, start: uint64(start.UnixNano()), nanos: uint64(start.Add(10 * time.Second).UnixNano()),
		attribution: attribution, packable: true}
}

func (g *aggregation) at(t *testing.T, when time.Time) {
	t.Helper()
	g.clock = when
	require.NoError(t, g.sealDue(context.Background(), false))
}

func texts(events []event) []string {
	var out []string
	for i := range events {
		e := &events[i]
		out = append(out, fmt.Sprintf("%s %s %s", e.licenseID, formatTime(e.nanos), e.measurementsText("")))
	}
	return out
}

func TestAWindowIsSealedAtItsEndPlusGraceIntoOneEventPerStream(t *testing.T) {
	g := newAggregation(t, newMemStorage(), window0.Add(5*time.Second))
	ctx := context.Background()
	g.mustApply(t, ctx, []event{
		point(1, "lic_a", "tokens", 5, window0), point(2, "lic_a", "api_calls", 1, window0.Add(time.Second)),
		point(3, "lic_b", "tokens", 7, window0),
	})
	g.mustApply(t, ctx, []event{point(4, "lic_a", "tokens", 10, window0.Add(30*time.Second))})
	g.at(t, window0.Add(69*time.Second))
	require.Empty(t, g.queued, "not before the end plus grace")
	g.at(t, window0.Add(70*time.Second))
	require.Len(t, g.queued, 1)
	require.Equal(t, []string{
		"lic_a 2026-11-24T10:15:00.000Z api_calls=1 tokens=15",
		"lic_b 2026-11-24T10:15:00.000Z tokens=7",
	}, sorted(texts(g.queued[0])))
	require.Empty(t, g.windows, "a sealed window leaves the memory")
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestALatePointGoesIntoTheEarliestOpenWindowNeverASealedOne(t *testing.T) {
	g := newAggregation(t, newMemStorage(), window0.Add(5*time.Second))
	ctx := context.Background()
	g.mustApply(t, ctx, []event{point(1, "lic_a", "tokens", 5, window0)})
	g.at(t, window0.Add(71*time.Second))
	require.Len(t, g.queued, 1)
	// a point of the sealed window, and one of a window whose grace has passed unsealed
	g.mustApply(t, ctx, []event{point(2, "lic_a", "tokens", 3, window0.Add(2*time.Second)),
		point(3, "lic_a", "tokens", 4, window0.Add(-time.Hour))})
	g.at(t, window0.Add(131*time.Second))
	require.Len(t, g.queued, 2)
	require.Equal(t, []string{"lic_a 2026-11-24T10:16:00.000Z tokens=7"}, texts(g.queued[1]))
}

func TestAPointAppliedAgainWithinTheHorizonCountsOnce(t *testing.T) {
	store := newMemStorage()
	g := newAggregation(t, store, window0.Add(5*time.Second))
	ctx := context.Background()
	input := []event{point(1, "lic_a", "tokens", 5, window0), point(2, "lic_a", "tokens", 6, window0)}
	added, repeated := g.mustApply(t, ctx, input)
	require.Equal(t, [2]int{2, 0}, [2]int{added, repeated})
	added, repeated = g.mustApply(t, ctx, input) // the sender's retry after a lost answer
	require.Equal(t, [2]int{0, 2}, [2]int{added, repeated})
	// and after a restart: the applied ids are stored
	g = newAggregation(t, store, window0.Add(6*time.Second))
	added, repeated = g.mustApply(t, ctx, append(input, point(3, "lic_a", "tokens", 100, window0)))
	require.Equal(t, [2]int{1, 2}, [2]int{added, repeated})
	g.at(t, window0.Add(70*time.Second))
	require.Equal(t, []string{"lic_a 2026-11-24T10:15:00.000Z tokens=111"}, texts(g.queued[0]))
	// past the horizon the ids are forgotten (stated in docs/collector.md)
	g.at(t, window0.Add(11*time.Minute))
	require.Empty(t, g.applied)
	require.Empty(t, keysWith(store, "log/"))
	require.Empty(t, keysWith(store, "done/"))
}

func keysWith(store *memStorage, prefix string) []string {
	var out []string
	for key := range store.data {
		if strings.HasPrefix(key, prefix) {
			out = append(out, key)
		}
	}
	return out
}

func TestAStorageFailureLeavesNothingAppliedAndTheRetryCountsOnce(t *testing.T) {
	store := newMemStorage()
	g := newAggregation(t, store, window0.Add(5*time.Second))
	ctx := context.Background()
	input := []event{point(1, "lic_a", "tokens", 5, window0)}
	store.failBatches = 1
	requireApplyFails(t, g, input, "the push fails: the input stays in the queue")
	g.mustApply(t, ctx, input)
	g.at(t, window0.Add(70*time.Second))
	require.Equal(t, []string{"lic_a 2026-11-24T10:15:00.000Z tokens=5"}, texts(g.queued[0]))
}

// A crash between queueing a sealed window's events and storing it done seals it
// again after the restart, under the same ids with the same content; points that come
// meanwhile for it go to the next window.
func TestACrashBetweenQueueingAndMarkingDoneSealsTheSameEventsAgain(t *testing.T) {
	store := newMemStorage()
	g := newAggregation(t, store, window0.Add(5*time.Second))
	ctx := context.Background()
	g.mustApply(t, ctx, []event{point(1, "lic_a", "tokens", 5, window0), point(2, "lic_a", "pages", 2, window0),
		point(3, "lic_b", "tokens", 1, window0, attr{"k", intValue(1)})})
	g.clock = window0.Add(70 * time.Second)
	store.failPrefix = "done/" // what follows the queueing (the process dies there)
	err := g.sealDue(ctx, false)
	require.Error(t, err)
	require.Len(t, g.queued, 1)
	first := g.queued[0]

	restarted := newAggregation(t, store, window0.Add(75*time.Second))
	require.Equal(t, g.gateway, restarted.gateway, "the gateway's identity is stored")
	restarted.mustApply(t, ctx, []event{point(4, "lic_a", "tokens", 50, window0.Add(time.Second))})
	restarted.at(t, window0.Add(76*time.Second))
	require.Len(t, restarted.queued, 1)
	again := restarted.queued[0]
	require.Equal(t, encodeAll(conversion{events: first}), encodeAll(conversion{events: again}), "same ids, same content")
	restarted.at(t, window0.Add(131*time.Second))
	require.Equal(t, []string{"lic_a 2026-11-24T10:16:00.000Z tokens=50"}, texts(restarted.queued[1]))
}

// A sealed queue that refuses (full) keeps the window, which is sealed on a later tick.
func TestAWindowTheQueueRefusedIsSealedLater(t *testing.T) {
	g := newAggregation(t, newMemStorage(), window0.Add(5*time.Second))
	ctx := context.Background()
	g.mustApply(t, ctx, []event{point(1, "lic_a", "tokens", 5, window0)})
	g.fail = errors.New("sending queue is full")
	g.clock = window0.Add(70 * time.Second)
	require.Error(t, g.sealDue(ctx, false))
	g.mustApply(t, ctx, []event{point(2, "lic_a", "tokens", 1, window0)})
	g.fail = nil
	g.at(t, window0.Add(71*time.Second))
	require.Equal(t, []string{"lic_a 2026-11-24T10:15:00.000Z tokens=5"}, texts(g.queued[0]), "the late point is not in the sealed window")
}

func TestAStreamOfMoreThan100MetricsIsTwoEventsAndTypedAttributionApart(t *testing.T) {
	g := newAggregation(t, newMemStorage(), window0.Add(5*time.Second))
	var input []event
	for i := 0; i < 101; i++ {
		input = append(input, point(i, "lic_a", fmt.Sprintf("m%03d", i), 1, window0))
	}
	input = append(input, point(200, "lic_a", "m", 1, window0, attr{"k", intValue(1)}),
		point(201, "lic_a", "m", 1, window0, attr{"k", doubleValue(1)}), point(202, "lic_a", "m", 1, window0, attr{"k", boolValue(true)}))
	g.mustApply(t, context.Background(), input)
	g.at(t, window0.Add(70*time.Second))
	events := g.queued[0]
	require.Len(t, events, 5)
	ids := map[string]bool{}
	for _, e := range events {
		ids[e.eventID] = true
		require.LessOrEqual(t, len(e.more)+1, maxMeasurements)
	}
	require.Len(t, ids, 5)
}

func TestShutdownSealsEveryOpenWindow(t *testing.T) {
	g := newAggregation(t, newMemStorage(), window0.Add(5*time.Second))
	ctx := context.Background()
	g.mustApply(t, ctx, []event{point(1, "lic_a", "tokens", 5, window0)})
	require.NoError(t, g.sealDue(ctx, true))
	require.Len(t, g.queued, 1)
	g.mustApply(t, ctx, []event{point(2, "lic_a", "tokens", 5, window0)})
	require.Equal(t, window0.Add(time.Minute).UnixNano(), g.windowStarts()[0], "after a shutdown's seal, points go to the next window")
}

func (a *aggregator) windowStarts() []int64 {
	var out []int64
	for w := range a.windows {
		out = append(out, w)
	}
	return out
}

// An agent whose other gateway is down resends its whole request until that one takes
// it: a point seen again within the horizon is kept for another, and never counted again.
func TestAPointResentEveryFewMinutesIsRecognisedPastTheFirstHorizon(t *testing.T) {
	g := newAggregation(t, newMemStorage(), window0.Add(5*time.Second))
	ctx := context.Background()
	input := []event{point(1, "lic_a", "tokens", 5, window0)}
	for minutes := 0; minutes <= 24; minutes += 8 {
		g.at(t, window0.Add(5*time.Second+time.Duration(minutes)*time.Minute))
		g.mustApply(t, ctx, input)
	}
	var all []string
	for _, events := range g.queued {
		all = append(all, texts(events)...)
	}
	require.Equal(t, []string{"lic_a 2026-11-24T10:15:00.000Z tokens=5"}, all)
}

// A gateway killed with open windows rebuilds them from its entries: typed attribution
// and double quantities as they were.
func TestARestartRebuildsTheOpenWindowsFromTheEntries(t *testing.T) {
	store := newMemStorage()
	g := newAggregation(t, store, window0.Add(5*time.Second))
	ctx := context.Background()
	p := point(1, "lic_a", "gb", 0, window0, attr{"k", doubleValue(1)}, attr{"s", strValue("x")}, attr{"t", boolValue(true)})
	p.quantity = quantity{f: 0.25}
	g.mustApply(t, ctx, []event{p, point(2, "lic_a", "n", 3, window0, attr{"k", intValue(1)})})
	before := encodeAll(conversion{events: g.windowEvents(window0.UnixNano(), g.windows[window0.UnixNano()])})
	restarted := newAggregation(t, store, window0.Add(6*time.Second))
	after := encodeAll(conversion{events: restarted.windowEvents(window0.UnixNano(), restarted.windows[window0.UnixNano()])})
	require.Equal(t, before, after)
	require.Contains(t, after, `"quantity":0.25`)
	_, err := decodeEntry([]byte{entryVersion, 2, 1})
	require.Error(t, err, "a cut entry is refused, not misread")
}

// mustApply applies the points and says how many it added and had seen before.
func (g *aggregation) mustApply(t *testing.T, ctx context.Context, events []event) (added, repeated int) {
	t.Helper()
	added, repeated, err := g.apply(ctx, events)
	require.NoError(t, err)
	return added, repeated
}

func requireApplyFails(t *testing.T, g *aggregation, input []event, why string) {
	t.Helper()
	_, _, err := g.apply(context.Background(), input)
	require.Error(t, err, why)
}
