// Replaces the builder's main_others.go in the Lambda build (build-lambda-layer.sh):
// Lambda starts /opt/extensions/otelcol-doow with no arguments, so the config comes
// from DOOW_EXTENSION_CONFIG, else the layer's /opt/otelcol-doow/config.yaml.

package main

import (
	"os"
	"path/filepath"
	"strings"

	"go.opentelemetry.io/collector/otelcol"
)

func run(params otelcol.CollectorSettings) error {
	cmd := otelcol.NewCommand(params)
	if !hasConfigFlag(os.Args[1:]) {
		cmd.SetArgs(append([]string{"--config", defaultConfig()}, os.Args[1:]...))
	}
	return cmd.Execute()
}

func hasConfigFlag(args []string) bool {
	for _, arg := range args {
		if arg == "--config" || strings.HasPrefix(arg, "--config=") {
			return true
		}
	}
	return false
}

func defaultConfig() string {
	if config := os.Getenv("DOOW_EXTENSION_CONFIG"); config != "" {
		return config
	}
	exe, err := os.Executable()
	if err != nil {
		return "/opt/otelcol-doow/config.yaml"
	}
	// /opt/extensions/otelcol-doow -> /opt/otelcol-doow/config.yaml
	return filepath.Join(filepath.Dir(filepath.Dir(exe)), "otelcol-doow", "config.yaml")
}
