package doowlambdaextension

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/extension"
)

// Type is the extension's name in collector configs: `extensions: [doow_lambda]`.
var Type = component.MustNewType("doow_lambda")

// Config of the doow_lambda extension.
type Config struct {
	// DrainTimeout bounds the wait, once the function has posted its response, for the
	// invocation's usage to leave the doow exporter before the environment may freeze.
	// The wait adds to billed duration, never to the response; what misses it stays in
	// the persistent queue and goes out while the next invocations run.
	DrainTimeout time.Duration `mapstructure:"drain_timeout"`
}

// Validate names the field and the fix.
func (c *Config) Validate() error {
	if c.DrainTimeout <= 0 {
		return errors.New("drain_timeout: must be positive (for example 2s)")
	}
	return nil
}

// NewFactory creates the factory of the doow_lambda extension.
func NewFactory() extension.Factory {
	return extension.NewFactory(Type, createDefaultConfig, create, component.StabilityLevelAlpha)
}

func createDefaultConfig() component.Config {
	return &Config{DrainTimeout: 2 * time.Second}
}

func create(_ context.Context, set extension.Settings, cfg component.Config) (extension.Extension, error) {
	return newLambdaExtension(cfg.(*Config), set.Logger), nil
}
