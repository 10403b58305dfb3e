package doowexporter

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/extension/xextension/storage"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/doow/doow-otel/exporter/doowexporter/internal/metadata"
)

// memStorageExtension hands out memStorage clients, one per component and name, kept
// across restarts of the exporter (as file_storage's files are).
type memStorageExtension struct {
	component.StartFunc
	component.ShutdownFunc
	mu      sync.Mutex
	clients map[string]*memStorage
}

func (m *memStorageExtension) GetClient(_ context.Context, kind component.Kind, id component.ID, name string) (storage.Client, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := kind.String() + "/" + id.String() + "/" + name
	if m.clients[key] == nil {
		m.clients[key] = newMemStorage()
	}
	return m.clients[key], nil
}

var storageID = component.MustNewID("file_storage")

func deltaPoint(license, metric string, value int64, start time.Time) pmetric.Metrics {
	md := pmetric.NewMetrics()
	m := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	m.SetName(metric)
	sum := m.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	p := sum.DataPoints().AppendEmpty()
	p.SetIntValue(value)
	p.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	p.SetTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Millisecond)))
	p.Attributes().PutStr("doow.license_id", license)
	return md
}

// Through the factory, exporterhelper and a storage extension: points of one stream in
// one window, from several pushes (one of them sent twice), reach Doow as one event
// with their sum, after the window's end.
func TestTheExporterAggregatesPerStreamAndWindow(t *testing.T) {
	server, requests := answeringDoow(t, func(int, []sentEvent) (int, string) { return 202, `{"accepted": 1}` })
	factory := NewFactory()
	cfg := factory.CreateDefaultConfig().(*Config)
	cfg.Endpoint, cfg.APIKey = server.URL, testKey
	cfg.RetryConfig.InitialInterval = 10 * time.Millisecond
	agg := defaultAggregationConfig()
	agg.Window, agg.Grace, agg.Storage = time.Second, 0, storageID
	cfg.Aggregation.GetOrInsertDefault()
	*cfg.Aggregation.Get() = agg
	queue := cfg.QueueConfig.Get()
	queue.StorageID = &storageID
	require.NoError(t, cfg.Validate())

	ctx := context.Background()
	host := hostWith{map[component.ID]component.Component{
		storageID: &memStorageExtension{clients: map[string]*memStorage{}}}}
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	set := exportertest.NewNopSettings(metadata.Type)
	set.TelemetrySettings = tel.NewTelemetrySettings()
	exp, err := factory.CreateMetrics(ctx, set, cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(ctx, host))
	// a window that starts in a second and a half: the pushes land in it
	start := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(start))
	once := deltaPoint("lic_a", "api_calls", 2, start)
	for _, md := range []pmetric.Metrics{once, once, deltaPoint("lic_a", "api_calls", 3, start.Add(100*time.Millisecond)),
		deltaPoint("lic_a", "tokens", 40, start.Add(200*time.Millisecond)), deltaPoint("lic_b", "tokens", 1, start)} {
		require.NoError(t, exp.ConsumeMetrics(ctx, md))
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && countEvents(requests) < 2 {
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, exp.Shutdown(ctx))
	var got []string
	for _, batch := range *requests {
		for _, e := range batch {
			got = append(got, e.metrics())
		}
	}
	require.ElementsMatch(t, []string{"api_calls=5 tokens=40", "tokens=1"}, got, strings.Join(got, "; "))
	// four points into the windows, the one sent twice counted once; two events out
	require.EqualValues(t, 4, counted(t, tel, "doow.exporter.point.aggregated"))
	require.EqualValues(t, 1, counted(t, tel, "doow.exporter.point.repeated"))
	require.EqualValues(t, 2, delivered(t, tel))
}

func countEvents(requests *[][]sentEvent) int {
	n := 0
	for _, batch := range *requests {
		n += len(batch)
	}
	return n
}

// The aggregating exporter answers a push only once its points are stored: with the
// storage failing, the push fails (the sender sends it again) rather than being taken
// into a queue in front.
func TestAnAggregatingPushFailsWhenItsPointsAreNotStored(t *testing.T) {
	factory := NewFactory()
	cfg := factory.CreateDefaultConfig().(*Config)
	cfg.Endpoint, cfg.APIKey = "http://127.0.0.1:1", testKey
	agg := defaultAggregationConfig()
	agg.Storage = storageID
	cfg.Aggregation.GetOrInsertDefault()
	*cfg.Aggregation.Get() = agg
	queue := cfg.QueueConfig.Get()
	queue.StorageID = &storageID
	ext := &memStorageExtension{clients: map[string]*memStorage{}}
	ctx := context.Background()
	set := exportertest.NewNopSettings(metadata.Type)
	exp, err := factory.CreateMetrics(ctx, set, cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(ctx, hostWith{map[component.ID]component.Component{storageID: ext}}))
	defer func() { require.NoError(t, exp.Shutdown(ctx)) }()
	store, _ := ext.GetClient(ctx, component.KindExporter, set.ID, "aggregation")
	store.(*memStorage).failBatches = 1
	require.Error(t, exp.ConsumeMetrics(ctx, deltaPoint("lic_a", "api_calls", 1, time.Now())))
	require.NoError(t, exp.ConsumeMetrics(ctx, deltaPoint("lic_a", "api_calls", 1, time.Now())))
}
