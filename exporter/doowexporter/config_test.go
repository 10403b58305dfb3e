package doowexporter

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configcompression"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/confmap/confmaptest"

	"github.com/doow/doow-otel/exporter/doowexporter/internal/metadata"
)

// load reads one configuration of testdata/config.yaml over the defaults.
func load(t *testing.T, name string) *Config {
	t.Helper()
	cm, err := confmaptest.LoadConf(filepath.Join("testdata", "config.yaml"))
	require.NoError(t, err)
	cfg := createDefaultConfig().(*Config)
	sub, err := cm.Sub(component.MustNewIDWithName(metadata.Type.String(), "").String() + name)
	require.NoError(t, err)
	require.NoError(t, sub.Unmarshal(cfg))
	return cfg
}

func TestDefaults(t *testing.T) {
	cfg := load(t, "")
	require.NoError(t, confmap.Validate(cfg))
	assert.Equal(t, "https://api.doow.co", cfg.Endpoint)
	assert.Equal(t, configcompression.TypeGzip, cfg.Compression)
	assert.EqualValues(t, 1, cfg.CompressionParams.Level, "gzip's fastest level")
	assert.Equal(t, 10*time.Second, cfg.Timeout)
	assert.True(t, cfg.RetryConfig.Enabled)
	assert.Zero(t, cfg.RetryConfig.MaxElapsedTime, "usage is retried until delivered")
	assert.True(t, cfg.QueueConfig.HasValue())
	assert.Equal(t, DefaultResourceAttributes, cfg.ResourceAttributes)
}

func TestDoowOptions(t *testing.T) {
	cfg := load(t, "/custom")
	require.NoError(t, confmap.Validate(cfg))
	assert.Equal(t, "lic_default", cfg.DefaultLicenseID)
	assert.Equal(t, "count", cfg.HistogramQuantity)
	assert.Equal(t, 3*time.Second, cfg.Timeout)
	assert.Equal(t, time.Minute, cfg.RetryConfig.MaxElapsedTime)
	require.True(t, cfg.QueueConfig.HasValue())
	assert.NotNil(t, cfg.QueueConfig.Get().StorageID)
	assert.Equal(t, []string{"service.name", "k8s.namespace.name"}, cfg.ResourceAttributes)
}

func TestTheStandardHTTPClientSettings(t *testing.T) {
	cfg := load(t, "/http_client")
	require.NoError(t, confmap.Validate(cfg))
	assert.Equal(t, "/etc/ssl/doow-ca.pem", cfg.TLS.CAFile)
	assert.Equal(t, "1.3", cfg.TLS.MinVersion)
	assert.Equal(t, "http://proxy.internal:3128", cfg.ProxyURL)
	value, ok := cfg.Headers.Get("X-Team")
	assert.True(t, ok)
	assert.EqualValues(t, "billing", value)
	assert.Equal(t, configcompression.TypeZstd, cfg.Compression)
	require.True(t, cfg.Keepalive.HasValue())
	assert.Equal(t, 30*time.Second, cfg.Keepalive.Get().IdleConnTimeout)
	assert.Equal(t, 8, cfg.Keepalive.Get().MaxIdleConnsPerHost)
	assert.Equal(t, 16, cfg.MaxConnsPerHost)
	assert.Equal(t, 20*time.Second, cfg.Timeout)

	none := load(t, "/no_compression")
	require.NoError(t, confmap.Validate(none))
	assert.False(t, none.Compression.IsCompressed())
}

func TestBadConfigurationsNameTheFieldAndTheFix(t *testing.T) {
	for name, want := range map[string]string{
		"/plain_http":              "endpoint: \"http://doow.example.com\" sends the API key unencrypted; use https",
		"/bad_key":                 "api_key: a Doow SDK key starts with dk_",
		"/missing_key":             "api_key: required; set it to your Doow SDK key",
		"/not_a_url":               "endpoint: \"api.doow.co\" is not an http(s) URL, e.g. https://api.doow.co",
		"/bad_proxy":               "proxy_url: not a URL; e.g. http://proxy.internal:3128",
		"/authorization_header":    "headers: Authorization is set from api_key; remove it from headers",
		"/bad_histogram":           "histogram_quantity: \"max\" must be sum or count",
		"/no_timeout":              "timeout: must be positive, e.g. 10s",
		"/bad_compression_level":   "unsupported parameters",
		"/bad_window":              "aggregation.window: 7s; use a length of at least 1s that divides an hour",
		"/no_aggregation_storage":  "aggregation.storage: required",
		"/short_horizon":           "aggregation.dedup_horizon: at least window + grace",
		"/forwarder_without_token": "gateway.token: required",
		"/forwarder_aggregating":   "aggregation: a forwarder does not aggregate",
	} {
		t.Run(name, func(t *testing.T) {
			err := confmap.Validate(load(t, name))
			require.Error(t, err)
			assert.Contains(t, err.Error(), want)
			assert.NotContains(t, err.Error(), "sk_live_123")
			assert.NotContains(t, err.Error(), "dk_other_0123456789")
		})
	}
	require.NoError(t, confmap.Validate(load(t, "/insecure_allowed")))
}

func TestAggregationAndForwardingSettings(t *testing.T) {
	cfg := load(t, "/aggregating")
	require.NoError(t, confmap.Validate(cfg))
	require.True(t, cfg.Aggregation.HasValue())
	assert.Equal(t, defaultAggregationConfig().Window, cfg.Aggregation.Get().Window, "the defaults fill what is not set")
	assert.Equal(t, 10*time.Minute, cfg.Aggregation.Get().DedupHorizon)
	assert.False(t, load(t, "").Aggregation.HasValue(), "off unless configured")
	forwarder := load(t, "/forwarder")
	require.NoError(t, confmap.Validate(forwarder), "a forwarder needs no api_key")
}

func TestFactory(t *testing.T) {
	factory := NewFactory()
	assert.Equal(t, "doow", factory.Type().String())
	assert.Equal(t, component.StabilityLevelAlpha, factory.MetricsStability())
	assert.Equal(t, component.StabilityLevelAlpha, factory.TracesStability())
	assert.Equal(t, component.StabilityLevelAlpha, factory.LogsStability())
	err := confmap.Validate(factory.CreateDefaultConfig())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "api_key: required")
}

func TestTheUserAgentNamesTheDistribution(t *testing.T) {
	build := component.BuildInfo{Command: "otelcol-doow", Description: "d", Version: "1.2.3"}
	assert.Equal(t, "otelcol-doow/1.2.3 doowexporter/"+version, userAgent(build))
}

// Settings that can lose usage, or that Doow may refuse, are named at start.
func TestRiskySettingsAreWarnedAboutAtStart(t *testing.T) {
	cases := map[string]struct {
		change func(*Config)
		warns  string
	}{
		"zstd":             {func(c *Config) { c.Compression = configcompression.TypeZstd }, "Doow's ingest API documents gzip only"},
		"no retries":       {func(c *Config) { c.RetryConfig.Enabled = false }, "retry_on_failure is disabled"},
		"max_elapsed_time": {func(c *Config) { c.RetryConfig.MaxElapsedTime = time.Minute }, "set it to 0 to retry until delivered"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, logs, _ := start(t, &fakeDoow{}, c.change)
			warned := false
			for _, entry := range logs.All() {
				warned = warned || strings.Contains(entry.Message, c.warns)
			}
			assert.True(t, warned, "logs: %+v", logs.All())
		})
	}
	_, logs, _ := start(t, &fakeDoow{})
	assert.Empty(t, logs.All(), "the defaults are safe")
}
