package doowexporter

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"

	"github.com/doow/doow-otel/exporter/doowexporter/internal/metadata"
)

// recordingDrain is what the Lambda extension implements (drainListener).
type recordingDrain struct {
	mu                 sync.Mutex
	accepted, finished int
	failed             int
}

func (r *recordingDrain) Start(context.Context, component.Host) error { return nil }
func (r *recordingDrain) Shutdown(context.Context) error              { return nil }
func (r *recordingDrain) Accepted(n int)                              { r.add(&r.accepted, n) }
func (r *recordingDrain) Finished(n int)                              { r.add(&r.finished, n) }
func (r *recordingDrain) Failed()                                     { r.add(&r.failed, 1) }
func (r *recordingDrain) add(field *int, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	*field += n
}

func (r *recordingDrain) counts() (int, int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted, r.finished, r.failed
}

type hostWith struct {
	extensions map[component.ID]component.Component
}

func (h hostWith) GetExtensions() map[component.ID]component.Component { return h.extensions }

// Through the factory, with the sending queue: what enters the queue is reported as
// accepted, a retried attempt as failed, and the delivery as finished.
func TestTheExporterReportsAcceptedFailedAndFinishedToADrainListener(t *testing.T) {
	f := &fakeDoow{answers: []func(http.ResponseWriter, int){status(503, "Retry-After", "0")}}
	server := httptest.NewServer(f)
	t.Cleanup(server.Close)
	factory := NewFactory()
	cfg := factory.CreateDefaultConfig().(*Config)
	cfg.Endpoint = server.URL
	cfg.APIKey = testKey
	cfg.RetryConfig.InitialInterval = 10 * time.Millisecond
	ctx := context.Background()
	exp, err := factory.CreateMetrics(ctx, exportertest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	listener := &recordingDrain{}
	host := hostWith{map[component.ID]component.Component{component.MustNewID("doow_lambda"): listener}}
	require.NoError(t, exp.Start(ctx, host))
	require.NoError(t, exp.ConsumeMetrics(ctx, usage(3)))
	require.Eventually(t, func() bool { _, finished, _ := listener.counts(); return finished == 3 },
		5*time.Second, 5*time.Millisecond)
	require.NoError(t, exp.Shutdown(ctx))
	accepted, finished, failed := listener.counts()
	assert.Equal(t, []int{3, 3, 1}, []int{accepted, finished, failed})
	assert.Equal(t, 2, f.count())
}

// A refusal for good finishes the items too: nothing is left to wait for.
func TestARefusedPushIsFinishedForTheDrainListener(t *testing.T) {
	f := &fakeDoow{answers: []func(http.ResponseWriter, int){status(400)}}
	server := httptest.NewServer(f)
	t.Cleanup(server.Close)
	factory := NewFactory()
	cfg := factory.CreateDefaultConfig().(*Config)
	cfg.Endpoint = server.URL
	cfg.APIKey = testKey
	ctx := context.Background()
	exp, err := factory.CreateLogs(ctx, exportertest.NewNopSettings(metadata.Type), cfg)
	require.NoError(t, err)
	listener := &recordingDrain{}
	host := hostWith{map[component.ID]component.Component{component.MustNewID("doow_lambda"): listener}}
	require.NoError(t, exp.Start(ctx, host))
	logs := usageLogs(2)
	require.NoError(t, exp.ConsumeLogs(ctx, logs))
	require.Eventually(t, func() bool { _, finished, _ := listener.counts(); return finished == 2 },
		5*time.Second, 5*time.Millisecond)
	require.NoError(t, exp.Shutdown(ctx))
	accepted, _, failed := listener.counts()
	assert.Equal(t, 2, accepted)
	assert.Equal(t, 0, failed)
}

func usageLogs(records int) plog.Logs {
	ld := plog.NewLogs()
	sl := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty()
	for i := 0; i < records; i++ {
		r := sl.LogRecords().AppendEmpty()
		r.SetEventName("doow.usage")
		r.SetTimestamp(pcommon.Timestamp(1_795_515_300_000_000_000 + i))
		r.Attributes().PutStr("doow.metric", "api_calls")
		r.Attributes().PutInt("doow.quantity", 1)
		r.Attributes().PutStr("doow.license_id", "lic_1")
	}
	return ld
}
