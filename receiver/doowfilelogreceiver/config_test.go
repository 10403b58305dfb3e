package doowfilelogreceiver

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/collector/confmap"
)

// The filelog receiver's keys, as collector/sidecar.yaml sets them.
func TestTheFilelogReceiversConfigurationKeys(t *testing.T) {
	factory := NewFactory()
	cfg := factory.CreateDefaultConfig().(*Config)
	conf := confmap.NewFromStringMap(map[string]any{
		"include":                    []any{"/var/log/app/usage.log*"},
		"start_at":                   "beginning",
		"storage":                    "file_storage",
		"poll_interval":              "200ms",
		"include_file_name":          false,
		"include_file_path":          true,
		"include_file_record_offset": true,
		"max_log_size":               "64KiB",
		"on_truncate":                "read_whole_file",
		"attributes":                 map[string]any{"event.name": "doow.usage"},
	})
	require.NoError(t, conf.Unmarshal(cfg))
	require.NoError(t, confmap.Validate(cfg))
	require.Equal(t, []string{"/var/log/app/usage.log*"}, cfg.InputConfig.Include)
	require.Equal(t, "read_whole_file", cfg.InputConfig.OnTruncate)
	require.True(t, cfg.InputConfig.IncludeFileRecordOffset)
	require.Equal(t, "file_storage", cfg.StorageID.String())

	require.Error(t, confmap.NewFromStringMap(map[string]any{"no_such_key": 1}).Unmarshal(factory.CreateDefaultConfig()))
}
