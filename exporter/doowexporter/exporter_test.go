package doowexporter

import (
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configcompression"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/require"

	"github.com/doow/doow-otel/exporter/doowexporter/internal/metadata"
)

const testKey = "dk_test_secret_0123456789"

// fakeDoow answers with the statuses given, one per request, then 202; it records bodies.
type fakeDoow struct {
	mu       sync.Mutex
	answers  []func(w http.ResponseWriter, events int)
	requests []received
}

type received struct {
	batchID string
	events  int
	auth    string
	header  http.Header
}

func (f *fakeDoow) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var reader io.Reader = r.Body
	switch r.Header.Get("Content-Encoding") {
	case "gzip":
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		reader = gz
	case "zstd":
		zr, err := zstd.NewReader(r.Body)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		defer zr.Close()
		reader = zr
	}
	var body struct {
		BatchID string            `json:"batch_id"`
		Events  []json.RawMessage `json:"events"`
	}
	_ = json.NewDecoder(reader).Decode(&body)
	f.mu.Lock()
	f.requests = append(f.requests, received{body.BatchID, len(body.Events), r.Header.Get("Authorization"), r.Header.Clone()})
	var answer func(http.ResponseWriter, int)
	if len(f.answers) > 0 {
		answer, f.answers = f.answers[0], f.answers[1:]
	}
	f.mu.Unlock()
	if answer == nil {
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"accepted": 1}`))
		return
	}
	answer(w, len(body.Events))
}

func (f *fakeDoow) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.requests)
}

func status(code int, headers ...string) func(http.ResponseWriter, int) {
	return func(w http.ResponseWriter, _ int) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"message": "answer"}`))
	}
}

func usage(points int) pmetric.Metrics {
	md := pmetric.NewMetrics()
	metric := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	metric.SetName("api_calls")
	sum := metric.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	for i := 0; i < points; i++ {
		p := sum.DataPoints().AppendEmpty()
		p.SetIntValue(1)
		p.SetTimestamp(1_795_515_300_000_000_000)
		p.Attributes().PutStr("doow.license_id", "lic_"+strings.Repeat("x", i%7)+string(rune('a'+i%26)))
		p.Attributes().PutInt("i", int64(i))
	}
	return md
}

// start runs the exporter (without exporterhelper) against f, with logs and metrics
// kept for the test.
func start(t *testing.T, f *fakeDoow, configure ...func(*Config)) (*doowExporter, *observer.ObservedLogs, *componenttest.Telemetry) {
	t.Helper()
	tel := componenttest.NewTelemetry()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	server := httptest.NewServer(f)
	t.Cleanup(server.Close)
	core, logs := observer.New(zap.DebugLevel)
	cfg := createDefaultConfig().(*Config)
	cfg.Endpoint = server.URL
	cfg.APIKey = testKey
	for _, change := range configure {
		change(cfg)
	}
	set := exportertest.NewNopSettings(metadata.Type)
	set.BuildInfo = component.BuildInfo{Command: "otelcol-doow", Version: "9.8.7"}
	set.TelemetrySettings = tel.NewTelemetrySettings()
	set.Logger = zap.New(core)
	e, err := newExporter(cfg, set)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	return e, logs, tel
}

func TestDeliversInBatchesOf500WithTheKey(t *testing.T) {
	f := &fakeDoow{}
	e, _, _ := start(t, f)
	if err := e.pushMetrics(context.Background(), usage(1200)); err != nil {
		t.Fatal(err)
	}
	if len(f.requests) != 3 || f.requests[0].events != 500 || f.requests[2].events != 200 {
		t.Fatalf("requests %+v", f.requests)
	}
	if f.requests[0].auth != "Bearer "+testKey {
		t.Fatal("missing bearer key")
	}
}

// The standard HTTP client settings reach the wire: compression (gzip by default, zstd
// when configured, the body still Doow's JSON), custom headers, and a User-Agent that
// names the distribution.
func TestTheHTTPClientComesFromTheStandardSettings(t *testing.T) {
	for _, compression := range []configcompression.Type{"", configcompression.TypeZstd, "none"} {
		t.Run(string(compression), func(t *testing.T) {
			f := &fakeDoow{}
			e, _, _ := start(t, f, func(cfg *Config) {
				if compression != "" {
					cfg.Compression = compression
				}
				cfg.Headers.Set("X-Team", "billing")
			})
			require.NoError(t, e.pushMetrics(context.Background(), usage(3)))
			require.Len(t, f.requests, 1)
			got := f.requests[0]
			require.Equal(t, 3, got.events, "the body decodes to Doow's JSON")
			want := map[configcompression.Type]string{"": "gzip", "zstd": "zstd", "none": ""}[compression]
			require.Equal(t, want, got.header.Get("Content-Encoding"))
			require.Equal(t, "billing", got.header.Get("X-Team"))
			require.Equal(t, "otelcol-doow/9.8.7 doowexporter/"+version, got.header.Get("User-Agent"))
			require.Equal(t, "Bearer "+testKey, got.auth)
		})
	}
}

func TestRetryingTheSamePushResendsTheSameBatchIDs(t *testing.T) {
	f := &fakeDoow{answers: []func(http.ResponseWriter, int){status(503)}}
	e, _, _ := start(t, f)
	_ = e.pushMetrics(context.Background(), usage(3))
	_ = e.pushMetrics(context.Background(), usage(3))
	if f.requests[0].batchID == "" || f.requests[0].batchID != f.requests[1].batchID {
		t.Fatalf("batch ids differ across retries: %+v", f.requests)
	}
}

func body(code int, text string, headers ...string) func(http.ResponseWriter, int) {
	return func(w http.ResponseWriter, _ int) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte(text))
	}
}

// Each decision of the shared table (status.go) on the collector's machinery: only a
// refusal is permanent; a wrong key or endpoint keeps the usage queued.
func TestAnswersMapOntoTheRetryMachinery(t *testing.T) {
	cases := []struct {
		name      string
		answer    func(http.ResponseWriter, int)
		failed    bool
		permanent bool
		throttled bool
		fix       string // named in the error and the log
	}{
		{"202 is done", body(202, `{"accepted": 2}`), false, false, false, ""},
		{"207 is done", body(207, `{"accepted": 1, "rejections": []}`), false, false, false, ""},
		{"400 is permanent", status(400), true, true, false, ""},
		{"401 keeps the usage", status(401), true, false, false, "api_key"},
		{"403 keeps the usage", status(403), true, false, false, "api_key"},
		{"404 keeps the usage", status(404), true, false, false, "endpoint"},
		{"a 200 HTML page keeps the usage", body(200, "<html>hi</html>"), true, false, false, "endpoint"},
		{"a redirect is not followed", body(302, "", "Location", "/elsewhere"), true, false, false, "endpoint"},
		{"408 is retryable", status(408), true, false, false, ""},
		{"429 is throttled", status(429, "Retry-After", "7"), true, false, true, ""},
		{"503 with an HTTP date is throttled", status(503, "Retry-After", time.Now().Add(time.Minute).UTC().Format(http.TimeFormat)), true, false, true, ""},
		{"429 with rate limits", status(429, "X-Doow-Rate-Limits", `{"events": {"limit": 1, "current": 2, "retry_after": 3}}`), true, false, true, ""},
		{"500 is retryable", status(500), true, false, false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &fakeDoow{answers: []func(http.ResponseWriter, int){c.answer}}
			e, logs, _ := start(t, f)
			err := e.pushMetrics(context.Background(), usage(2))
			require.Equal(t, c.failed, err != nil, "err = %v", err)
			require.Equal(t, c.permanent, consumererror.IsPermanent(err), "permanent: %v", err)
			if c.throttled {
				require.Contains(t, strings.ToLower(err.Error()), "throttle")
			}
			if c.fix != "" {
				require.Contains(t, err.Error(), c.fix)
				logged := logs.FilterMessage("Doow exporter misconfigured: usage is not delivered").All()
				require.Len(t, logged, 1)
				require.Contains(t, fmt.Sprint(logged[0].ContextMap()), c.fix)
			}
			require.Equal(t, 1, f.count(), "one request: redirects are not followed")
			for _, entry := range logs.All() {
				require.NotContains(t, fmt.Sprint(entry.Message, entry.ContextMap()), testKey)
			}
			if err != nil {
				require.NotContains(t, err.Error(), testKey)
			}
		})
	}
}

// A wrong key is logged once, not on every retry, and its recovery once.
func TestAWrongKeyIsLoggedOnceUntilItRecovers(t *testing.T) {
	f := &fakeDoow{answers: []func(http.ResponseWriter, int){status(401), status(401), status(401)}}
	e, logs, _ := start(t, f)
	for range 3 {
		require.Error(t, e.pushMetrics(context.Background(), usage(2)))
	}
	require.NoError(t, e.pushMetrics(context.Background(), usage(2)))
	require.Len(t, logs.FilterMessage("Doow exporter misconfigured: usage is not delivered").All(), 1)
	require.Len(t, logs.FilterMessage("Doow accepts the exporter's configuration again; kept usage is being delivered").All(), 1)
}

// A refused batch is dropped, counted and logged with Doow's reason, once per push.
func TestARefusedBatchIsCountedWithItsReason(t *testing.T) {
	f := &fakeDoow{answers: []func(http.ResponseWriter, int){body(400, `{"message": "events[0].quantity: not a number"}`)}}
	e, logs, tel := start(t, f)
	err := e.pushMetrics(context.Background(), usage(3))
	require.True(t, consumererror.IsPermanent(err), "err = %v", err)
	require.Contains(t, err.Error(), "HTTP 400: events[0].quantity: not a number")
	require.EqualValues(t, 3, counted(t, tel, exported, refusedType))
	require.Zero(t, delivered(t, tel))
	logged := logs.FilterMessage("Doow refused a batch; its events are dropped").All()
	require.Len(t, logged, 1)
	require.Equal(t, "HTTP 400: events[0].quantity: not a number", logged[0].ContextMap()["reason"])
}

func TestOneRetryableBatchMakesThePushRetryable(t *testing.T) {
	// 1000 points are two batches: the first is refused (400), the second hits a 503
	f := &fakeDoow{answers: []func(http.ResponseWriter, int){status(400), status(503)}}
	e, logs, _ := start(t, f)
	err := e.pushMetrics(context.Background(), usage(1000))
	if err == nil || consumererror.IsPermanent(err) {
		t.Fatalf("err = %v, want a retryable error", err)
	}
	if len(logs.FilterMessage("Doow refused a batch; it is resent with the rest of the push").All()) != 1 {
		t.Fatalf("the refused batch was not logged: %+v", logs.All())
	}
}

// Through the factory and the collector's exporterhelper: the queue hands the push
// over, a 503 with Retry-After is retried, and the retry carries the same batch id.
func TestThrottledPushIsRetriedByTheCollector(t *testing.T) {
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
	if err != nil {
		t.Fatal(err)
	}
	if err := exp.Start(ctx, componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	if err := exp.ConsumeMetrics(ctx, usage(3)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.count() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := exp.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if f.count() != 2 || f.requests[0].batchID != f.requests[1].batchID || f.requests[1].events != 3 {
		t.Fatalf("requests %+v", f.requests)
	}
}

func TestRejectionsAreLoggedWithTheirReasons(t *testing.T) {
	sent := convertMetrics(usage(2), createDefaultConfig().(*Config).conversionOptions()).events
	require.Len(t, sent, 2)
	f := &fakeDoow{answers: []func(http.ResponseWriter, int){body(207, `{"accepted": 1, "rejected": 2, "rejections": [
		{"event_id": "`+sent[1].eventID+`", "reason": "quantity: must be greater than 0"},
		{"event_id": "not-sent", "reason": "ignored"}]}`)}}
	e, logs, tel := start(t, f)
	if err := e.pushMetrics(context.Background(), usage(2)); err != nil {
		t.Fatal(err)
	}
	found := logs.FilterMessage("event rejected").All()
	if len(found) != 1 || found[0].ContextMap()["reason"] != "quantity: must be greater than 0" {
		t.Fatalf("logs %+v", logs.All())
	}
	if len(f.requests) != 1 {
		t.Fatal("rejected events were resent")
	}
	// one event delivered, one rejected: both finished, neither resent
	require.EqualValues(t, 1, counted(t, tel, exported, rejectedType))
	require.EqualValues(t, 1, delivered(t, tel))
}

// The exporter's own metrics, named as the Python client's (doow_otel.self_metrics).
const (
	exported  = "doow.exporter.event.exported"
	notBilled = "doow.exporter.usage.not_billed"
)

var (
	rejectedType = attribute.String("error.type", "rejected")
	refusedType  = attribute.String("error.type", "refused")
)

// delivered reads doow.exporter.event.exported without error.type: the events Doow kept.
func delivered(t *testing.T, tel *componenttest.Telemetry) int64 {
	t.Helper()
	m, err := tel.GetMetric(exported)
	if err != nil {
		return 0
	}
	var total int64
	for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
		if !p.Attributes.HasValue("error.type") {
			total += p.Value
		}
	}
	return total
}

// counted reads a counter of the exporter's telemetry: its points with the attributes given.
func counted(t *testing.T, tel *componenttest.Telemetry, name string, attrs ...attribute.KeyValue) int64 {
	t.Helper()
	m, err := tel.GetMetric(name)
	if err != nil {
		return 0
	}
	var total int64
	for _, p := range m.Data.(metricdata.Sum[int64]).DataPoints {
		matches := true
		for _, a := range attrs {
			if v, ok := p.Attributes.Value(a.Key); !ok || v != a.Value {
				matches = false
			}
		}
		if matches {
			total += p.Value
		}
	}
	return total
}

func TestDropsAreCountedOncePerPushAndStrippedKeysLoggedOnce(t *testing.T) {
	md := usage(2)
	md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Sum().DataPoints().At(0).Attributes().PutStr("session_id", "s-1")
	cumulative := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().AppendEmpty()
	cumulative.SetName("pages")
	cumulative.SetEmptySum().SetIsMonotonic(true)
	cumulative.Sum().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
	p := cumulative.Sum().DataPoints().AppendEmpty()
	p.SetIntValue(3)
	p.Attributes().PutStr("doow.license_id", "lic_a")

	f := &fakeDoow{answers: []func(http.ResponseWriter, int){status(503)}}
	e, logs, tel := start(t, f)
	if err := e.pushMetrics(context.Background(), md); err == nil {
		t.Fatal("the 503 was not returned")
	}
	if n := counted(t, tel, notBilled); n != 0 {
		t.Fatalf("counted %d drops on a push that will be retried", n)
	}
	for range 2 {
		if err := e.pushMetrics(context.Background(), md); err != nil {
			t.Fatal(err)
		}
	}
	if n := counted(t, tel, notBilled, attribute.String("error.type", "cumulative_temporality")); n != 2 {
		t.Fatalf("%s = %d, want 2", notBilled, n)
	}
	stripped := logs.FilterMessage("attribution stripped").All()
	if len(stripped) != 1 || stripped[0].ContextMap()["key"] != "session_id" {
		t.Fatalf("stripped keys logged: %+v", stripped)
	}
	for _, entry := range logs.All() {
		if strings.Contains(fmt.Sprint(entry.ContextMap()), "s-1") {
			t.Fatal("a stripped value was logged")
		}
	}
}

func TestA413SplitsTheBatchAndSendsTheHalves(t *testing.T) {
	tooBig := func(w http.ResponseWriter, events int) { w.WriteHeader(413) }
	f := &fakeDoow{answers: []func(http.ResponseWriter, int){tooBig}}
	e, _, _ := start(t, f)
	if err := e.pushMetrics(context.Background(), usage(10)); err != nil {
		t.Fatal(err)
	}
	if len(f.requests) != 3 || f.requests[1].events != 5 || f.requests[2].events != 5 {
		t.Fatalf("requests %+v", f.requests)
	}
}
