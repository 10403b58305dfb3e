package doowexporter

import (
	"compress/gzip"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/doow/doow-otel/exporter/doowexporter/internal/metadata"
)

const testGatewayToken = "fleet-token-0123456789"

// With gateway.endpoint, the exporter forwards the OTLP it receives to the gateway, with
// the fleet's token, and needs no api_key; a 503 is retried, a 400 refused for good, and
// the token is in no log line or error.
func TestAForwarderSendsTheOTLPToTheGateway(t *testing.T) {
	var mu sync.Mutex
	var points []int
	answers := []int{503, 202}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, "/v1/metrics", r.URL.Path)
		require.Equal(t, "Bearer "+testGatewayToken, r.Header.Get("Authorization"))
		gz, err := gzip.NewReader(r.Body)
		require.NoError(t, err)
		body, _ := io.ReadAll(gz)
		request := pmetricotlp.NewExportRequest()
		require.NoError(t, request.UnmarshalProto(body))
		points = append(points, request.Metrics().DataPointCount())
		status := 202
		if len(answers) > 0 {
			status, answers = answers[0], answers[1:]
		}
		w.WriteHeader(status)
		_, _ = w.Write([]byte("echo " + r.Header.Get("Authorization")))
	}))
	t.Cleanup(server.Close)
	factory := NewFactory()
	cfg := factory.CreateDefaultConfig().(*Config)
	cfg.Gateway = GatewayConfig{Endpoint: server.URL, Token: testGatewayToken}
	cfg.RetryConfig.InitialInterval = 10 * time.Millisecond
	require.NoError(t, cfg.Validate(), "no api_key needed")
	core, logs := observer.New(zap.DebugLevel)
	set := exportertest.NewNopSettings(metadata.Type)
	set.Logger = zap.New(core)
	ctx := context.Background()
	exp, err := factory.CreateMetrics(ctx, set, cfg)
	require.NoError(t, err)
	require.NoError(t, exp.Start(ctx, componenttest.NewNopHost()))
	require.NoError(t, exp.ConsumeMetrics(ctx, usage(3)))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(points)
		mu.Unlock()
		if n == 2 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	require.NoError(t, exp.Shutdown(ctx))
	require.Equal(t, []int{3, 3}, points, "the 503 was retried")
	for _, entry := range logs.All() {
		require.NotContains(t, entry.Message+" "+stringFields(entry.ContextMap()), testGatewayToken)
	}

	e, err := newExporter(cfg, exportertest.NewNopSettings(metadata.Type))
	require.NoError(t, err)
	require.NoError(t, e.startForwarding(ctx, nil))
	refused := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(400)
		_, _ = w.Write([]byte("bad " + r.Header.Get("Authorization")))
	}))
	t.Cleanup(refused.Close)
	e.cfg.Gateway.Endpoint = refused.URL
	err = e.forwardMetrics(ctx, usage(1))
	require.True(t, consumererror.IsPermanent(err), "%v", err)
	require.NotContains(t, err.Error(), testGatewayToken)
}

func stringFields(fields map[string]any) string {
	var out strings.Builder
	for key, value := range fields {
		out.WriteString(key + "=")
		if s, ok := value.(string); ok {
			out.WriteString(s)
		}
		out.WriteString(" ")
	}
	return out.String()
}
