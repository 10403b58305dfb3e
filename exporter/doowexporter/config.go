package doowexporter

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
	"unicode"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/confighttp"
	"go.opentelemetry.io/collector/config/configopaque"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/config/configretry"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
)

// Config is the doow exporter's configuration: the standard HTTP client settings
// (confighttp: endpoint, tls, proxy_url, headers, auth, compression, keepalive,
// timeout, ...), the sending queue and retries, and Doow's own options.
type Config struct {
	// ClientConfig: endpoint is Doow's API, https://api.doow.co by default; events go
	// to <endpoint>/telemetry/events.
	confighttp.ClientConfig `mapstructure:",squash"`
	// APIKey is the Doow SDK key (dk_...). Opaque: it is never logged.
	APIKey configopaque.String `mapstructure:"api_key"`
	// AllowInsecure permits http:// to hosts other than loopback.
	AllowInsecure bool `mapstructure:"allow_insecure"`

	// DefaultLicenseID completes usage that names no license (docs/conversion.md).
	DefaultLicenseID string `mapstructure:"default_license_id"`
	// UsageMetrics lists metric names that are usage even without a license attribute.
	UsageMetrics []string `mapstructure:"usage_metrics"`
	// ResourceAttributes are the resource attributes copied into attribution.
	ResourceAttributes []string `mapstructure:"resource_attributes"`
	// HistogramQuantity is what a delta histogram bills: "sum" (default) or "count".
	HistogramQuantity string `mapstructure:"histogram_quantity"`
	// GenAIWithoutLicense bills GenAI spans without a license to the default license.
	GenAIWithoutLicense bool `mapstructure:"genai_without_license"`
	// EventsPerMinute is the organisation's event budget the exporter paces its sends to
	// (pacer.go); 0 learns it from Doow's X-Doow-Rate-Limits and 429s.
	EventsPerMinute int `mapstructure:"events_per_minute"`

	// Gateway, when its endpoint is set, forwards what the exporter receives to a
	// gateway tier as OTLP/HTTP instead of sending it to Doow (forward.go).
	Gateway GatewayConfig `mapstructure:"gateway"`

	// Aggregation, when set, sums usage per stream and clock-aligned window in the
	// storage extension and sends one event per stream and window (aggregator.go).
	Aggregation configoptional.Optional[AggregationConfig] `mapstructure:"aggregation"`

	RetryConfig configretry.BackOffConfig                                `mapstructure:"retry_on_failure"`
	QueueConfig configoptional.Optional[exporterhelper.QueueBatchConfig] `mapstructure:"sending_queue"`
}

var _ component.Config = (*Config)(nil)

// AggregationConfig: rule W of docs/conversion.md, in the collector.
type AggregationConfig struct {
	// Window is the window's length: windows are [k*window, (k+1)*window) in Unix time.
	Window time.Duration `mapstructure:"window"`
	// Grace is how long after its end a window still takes points; then it is sealed.
	Grace time.Duration `mapstructure:"grace"`
	// DedupHorizon is how long the ids of applied points are kept: a point sent again
	// within it (a sender's retry after a lost answer) is not counted again.
	DedupHorizon time.Duration `mapstructure:"dedup_horizon"`
	// Storage is the storage extension (file_storage) that holds the windows, the
	// applied ids and the queue of sealed windows' events.
	Storage component.ID `mapstructure:"storage"`
}

// GatewayConfig: where a forwarder sends (a gateway's OTLP/HTTP endpoint, e.g.
// https://gateway.internal:4318), the fleet's token, and the CA of the gateways'
// certificates (empty: the system's).
type GatewayConfig struct {
	Endpoint string              `mapstructure:"endpoint"`
	Token    configopaque.String `mapstructure:"token"`
	CAFile   string              `mapstructure:"ca_file"`
}

func defaultAggregationConfig() AggregationConfig {
	return AggregationConfig{Window: time.Minute, Grace: 10 * time.Second, DedupHorizon: 10 * time.Minute}
}

// Validate names the field that is wrong and how to fix it. (The collector also runs
// confighttp's own checks, of compression_params for one.)
func (cfg *Config) Validate() error {
	var errs []error
	if cfg.Gateway.Endpoint != "" {
		return cfg.validateForwarding()
	}
	if cfg.APIKey == "" {
		errs = append(errs, errors.New("api_key: required; set it to your Doow SDK key, e.g. ${env:DOOW_API_KEY}"))
	} else if !strings.HasPrefix(string(cfg.APIKey), "dk_") || strings.IndexFunc(string(cfg.APIKey), unicode.IsSpace) >= 0 {
		errs = append(errs, errors.New("api_key: a Doow SDK key starts with dk_ and has no spaces"))
	}
	if err := checkEndpoint(cfg.Endpoint, cfg.AllowInsecure); err != nil {
		errs = append(errs, err)
	}
	if cfg.ProxyURL != "" {
		if u, err := url.ParseRequestURI(cfg.ProxyURL); err != nil || u.Host == "" {
			errs = append(errs, errors.New("proxy_url: not a URL; e.g. http://proxy.internal:3128"))
		}
	}
	for name := range cfg.Headers.Iter {
		if strings.EqualFold(name, "Authorization") {
			errs = append(errs, errors.New("headers: Authorization is set from api_key; remove it from headers"))
		}
	}
	if cfg.HistogramQuantity != "sum" && cfg.HistogramQuantity != "count" {
		errs = append(errs, fmt.Errorf("histogram_quantity: %q must be sum or count", cfg.HistogramQuantity))
	}
	if cfg.Aggregation.HasValue() {
		a := cfg.Aggregation.Get()
		if a.Window < time.Second || time.Hour%a.Window != 0 && a.Window%time.Hour != 0 {
			errs = append(errs, fmt.Errorf("aggregation.window: %s; use a length of at least 1s that divides an hour, e.g. 60s", a.Window))
		}
		if a.Grace < 0 {
			errs = append(errs, errors.New("aggregation.grace: must not be negative, e.g. 10s"))
		}
		if a.DedupHorizon < a.Window+a.Grace {
			errs = append(errs, errors.New("aggregation.dedup_horizon: at least window + grace, e.g. 10m"))
		}
		if a.Storage == (component.ID{}) {
			errs = append(errs, errors.New("aggregation.storage: required; name a file_storage extension, e.g. file_storage"))
		}
	}
	if cfg.EventsPerMinute < 0 {
		errs = append(errs, errors.New("events_per_minute: must be 0 (learn Doow's budget) or the budget, e.g. 1000"))
	}
	if cfg.Timeout <= 0 {
		errs = append(errs, errors.New("timeout: must be positive, e.g. 10s (a request without a bound would stall the queue)"))
	}
	return errors.Join(errs...)
}

// validateForwarding: a forwarder needs no api_key (the gateways hold it) and does not
// aggregate (the gateways do).
func (cfg *Config) validateForwarding() error {
	var errs []error
	if err := checkEndpoint(cfg.Gateway.Endpoint, cfg.AllowInsecure); err != nil {
		errs = append(errs, errors.New("gateway."+err.Error()))
	}
	if cfg.Gateway.Token == "" {
		errs = append(errs, errors.New("gateway.token: required; the fleet's token, which the gateways check (DOOW_GATEWAY_TOKEN)"))
	}
	if cfg.Aggregation.HasValue() {
		errs = append(errs, errors.New("aggregation: a forwarder does not aggregate (its gateways do); remove aggregation or gateway.endpoint"))
	}
	if cfg.Timeout <= 0 {
		errs = append(errs, errors.New("timeout: must be positive, e.g. 10s (a request without a bound would stall the queue)"))
	}
	return errors.Join(errs...)
}

func checkEndpoint(endpoint string, allowInsecure bool) error {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("endpoint: %q is not an http(s) URL, e.g. https://api.doow.co", endpoint)
	}
	if u.Scheme == "http" && !allowInsecure && !isLoopback(u.Hostname()) {
		return fmt.Errorf("endpoint: %q sends the API key unencrypted; use https (http only to loopback, or set allow_insecure)", endpoint)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (cfg *Config) conversionOptions() conversionOptions {
	usage := make(map[string]bool, len(cfg.UsageMetrics))
	for _, name := range cfg.UsageMetrics {
		usage[name] = true
	}
	return conversionOptions{
		defaultLicenseID:    cfg.DefaultLicenseID,
		usageMetrics:        usage,
		resourceAttributes:  cfg.ResourceAttributes,
		histogramCount:      cfg.HistogramQuantity == "count",
		genaiWithoutLicense: cfg.GenAIWithoutLicense,
	}
}
