package doowexporter

import (
	"compress/gzip"
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configcompression"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"

	"github.com/doow/doow-otel/exporter/doowexporter/internal/metadata"
)

// DefaultResourceAttributes are copied into attribution unless configured otherwise.
var DefaultResourceAttributes = []string{"service.name", "deployment.environment", "faas.name", "cloud.region"}

// NewFactory creates the factory of the doow exporter.
func NewFactory() exporter.Factory {
	return exporter.NewFactory(
		metadata.Type,
		createDefaultConfig,
		exporter.WithMetrics(createMetrics, metadata.MetricsStability),
		exporter.WithTraces(createTraces, metadata.TracesStability),
		exporter.WithLogs(createLogs, metadata.LogsStability),
	)
}

func createDefaultConfig() component.Config {
	client := confighttp.NewDefaultClientConfig()
	client.Endpoint = "https://api.doow.co"
	client.Timeout = 10 * time.Second
	client.Compression = configcompression.TypeGzip
	// usage JSON is repetitive: the fastest level still shrinks it about tenfold, at a
	// fraction of the CPU of the default level
	client.CompressionParams.Level = configcompression.Level(gzip.BestSpeed)
	// the queue's consumers post in parallel: keep a connection for each
	client.Keepalive.Get().MaxIdleConnsPerHost = 64
	retry := configretry.NewDefaultBackOffConfig()
	// usage is retried until delivered: a failure longer than max_elapsed_time (a
	// revoked key, an outage) would otherwise drop it from the queue
	retry.MaxElapsedTime = 0
	return &Config{
		ClientConfig:       client,
		ResourceAttributes: append([]string(nil), DefaultResourceAttributes...),
		HistogramQuantity:  "sum",
		RetryConfig:        retry,
		QueueConfig:        configoptional.Some(exporterhelper.NewDefaultQueueConfig()),
		Aggregation:        configoptional.Default(defaultAggregationConfig()),
	}
}

func helperOptions(cfg *Config, e *doowExporter) []exporterhelper.Option {
	return helperOptionsWith(cfg, e, cfg.QueueConfig, cfg.RetryConfig)
}

func helperOptionsWith(cfg *Config, e *doowExporter, queue configoptional.Optional[exporterhelper.QueueBatchConfig],
	retry configretry.BackOffConfig) []exporterhelper.Option {
	return []exporterhelper.Option{
		exporterhelper.WithStart(e.start),
		exporterhelper.WithShutdown(e.shutdown),
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		exporterhelper.WithTimeout(exporterhelper.TimeoutConfig{Timeout: 0}), // each request has its own
		exporterhelper.WithRetry(retry),
		exporterhelper.WithQueue(queue),
	}
}

func createMetrics(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Metrics, error) {
	cfg := c.(*Config)
	e, err := newExporter(cfg, set)
	if err != nil {
		return nil, err
	}
	h := &drainHook{} // reports to the Lambda extension, when there is one (drain.go)
	push := e.pushMetrics
	options := helperOptions(cfg, e)
	switch {
	case cfg.Gateway.Endpoint != "":
		push = e.forwardMetrics
		options = append(options, exporterhelper.WithStart(e.startForwarding))
	case cfg.Aggregation.HasValue():
		// the aggregation's storage is the durable queue: a push is answered once its
		// points are stored (or fails, and the sender sends it again); a sending queue
		// in front would store every request a second time, for nothing
		options = helperOptionsWith(cfg, e, configoptional.None[exporterhelper.QueueBatchConfig](), configretry.BackOffConfig{})
		options = append(options, exporterhelper.WithStart(func(ctx context.Context, host component.Host) error {
			if err := e.start(ctx, host); err != nil {
				return err
			}
			return e.startAggregation(ctx, host)
		}))
	}
	return h.metrics(exporterhelper.NewMetrics(ctx, set, cfg, h.pushMetrics(push), options...))
}

func createTraces(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Traces, error) {
	cfg := c.(*Config)
	e, err := newExporter(cfg, set)
	if err != nil {
		return nil, err
	}
	h := &drainHook{} // reports to the Lambda extension, when there is one (drain.go)
	if cfg.Gateway.Endpoint != "" {
		options := append(helperOptions(cfg, e), exporterhelper.WithStart(e.startForwarding))
		return h.traces(exporterhelper.NewTraces(ctx, set, cfg, h.pushTraces(e.forwardTraces), options...))
	}
	return h.traces(exporterhelper.NewTraces(ctx, set, cfg, h.pushTraces(e.pushTraces), helperOptions(cfg, e)...))
}

func createLogs(ctx context.Context, set exporter.Settings, c component.Config) (exporter.Logs, error) {
	cfg := c.(*Config)
	e, err := newExporter(cfg, set)
	if err != nil {
		return nil, err
	}
	h := &drainHook{} // reports to the Lambda extension, when there is one (drain.go)
	if cfg.Gateway.Endpoint != "" {
		options := append(helperOptions(cfg, e), exporterhelper.WithStart(e.startForwarding))
		return h.logs(exporterhelper.NewLogs(ctx, set, cfg, h.pushLogs(e.forwardLogs), options...))
	}
	return h.logs(exporterhelper.NewLogs(ctx, set, cfg, h.pushLogs(e.pushLogs), helperOptions(cfg, e)...))
}
