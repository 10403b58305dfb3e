package doowexporter

import (
	"context"
	"fmt"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/consumer/consumererror"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/pdata/plog"
)

// The sealed windows' events wait for Doow in exporterhelper's persistent queue, with
// its retry, like any other push: an exporterhelper logs exporter of our own whose log
// records are the events' JSON, queued in the aggregation's storage extension. (No
// queue of the Collector takes anything but pdata; log bodies carry the events as
// they go on the wire, and are read back when they are sent.)

// newSealedQueue makes the queue for e's sealed windows; its component id is e's with
// "sealed" added to the name, which names its file in the storage extension.
func newSealedQueue(ctx context.Context, set exporter.Settings, cfg *Config, e *doowExporter) (exporter.Logs, error) {
	queue := exporterhelper.NewDefaultQueueConfig()
	storageID := cfg.Aggregation.Get().Storage
	queue.StorageID = &storageID
	queue.NumConsumers = 2
	queue.QueueSize = 100_000 // sealed windows, each one push
	queue.Batch = configoptional.None[exporterhelper.BatchConfig]()
	name := "sealed"
	if set.ID.Name() != "" {
		name = set.ID.Name() + "_sealed"
	}
	set.ID = component.NewIDWithName(set.ID.Type(), name)
	return exporterhelper.NewLogs(ctx, set, cfg, e.pushSealed,
		exporterhelper.WithCapabilities(consumer.Capabilities{MutatesData: false}),
		exporterhelper.WithTimeout(exporterhelper.TimeoutConfig{Timeout: 0}),
		exporterhelper.WithRetry(cfg.RetryConfig),
		exporterhelper.WithQueue(configoptional.Some(queue)))
}

// sealedLogs carries events as log records whose bodies are their JSON.
func sealedLogs(events []event) plog.Logs {
	ld := plog.NewLogs()
	records := ld.ResourceLogs().AppendEmpty().ScopeLogs().AppendEmpty().LogRecords()
	records.EnsureCapacity(len(events))
	for i := range events {
		records.AppendEmpty().Body().SetStr(string(events[i].encode()))
	}
	return ld
}

// pushSealed sends a sealed window's events.
func (e *doowExporter) pushSealed(ctx context.Context, ld plog.Logs) error {
	var events []event
	for i := 0; i < ld.ResourceLogs().Len(); i++ {
		scopes := ld.ResourceLogs().At(i).ScopeLogs()
		for j := 0; j < scopes.Len(); j++ {
			records := scopes.At(j).LogRecords()
			for k := 0; k < records.Len(); k++ {
				ev, err := decodeEvent([]byte(records.At(k).Body().Str()))
				if err != nil {
					return consumererror.NewPermanent(fmt.Errorf("a sealed window's event in the queue: %w", err))
				}
				events = append(events, ev)
			}
		}
	}
	return e.deliver(ctx, conversion{events: events})
}
