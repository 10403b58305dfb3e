package doowfilelogreceiver

import (
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/receiver"

	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/adapter"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/operator"
	"github.com/open-telemetry/opentelemetry-collector-contrib/pkg/stanza/operator/input/file"

	"github.com/doow/doow-otel/receiver/doowfilelogreceiver/internal/metadata"
)

// NewFactory creates the doowfilelog receiver's factory.
func NewFactory() receiver.Factory {
	return adapter.NewFactory(receiverType{}, metadata.LogsStability)
}

// Config is the filelog receiver's configuration, key for key.
type Config struct {
	InputConfig        file.Config `mapstructure:",squash"`
	adapter.BaseConfig `mapstructure:",squash"`

	_ struct{}
}

type receiverType struct{}

var _ adapter.LogReceiverTypeWithScope = receiverType{}

func (receiverType) Type() component.Type { return metadata.Type }

func (receiverType) ScopeName() string { return metadata.ScopeName }

func (receiverType) CreateDefaultConfig() component.Config {
	cfg := &Config{InputConfig: *file.NewConfig()}
	cfg.Operators = []operator.Config{}
	// the filelog receiver's retry defaults (its consumerretry package is internal to contrib)
	cfg.RetryOnFailure.Enabled = false
	cfg.RetryOnFailure.InitialInterval = time.Second
	cfg.RetryOnFailure.MaxInterval = 30 * time.Second
	cfg.RetryOnFailure.MaxElapsedTime = 5 * time.Minute
	return cfg
}

func (receiverType) BaseConfig(cfg component.Config) adapter.BaseConfig {
	return cfg.(*Config).BaseConfig
}

func (receiverType) InputConfig(cfg component.Config) operator.Config {
	return operator.NewConfig(&inputConfig{Config: cfg.(*Config).InputConfig})
}
