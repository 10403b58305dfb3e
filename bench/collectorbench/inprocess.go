package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/config/configoptional"
	"go.opentelemetry.io/collector/exporter"
	"go.opentelemetry.io/collector/exporter/exporterhelper"
	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/exporter/otlphttpexporter"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"

	"github.com/doow/doow-otel/exporter/doowexporter"
)

// alone is one exporter measured in this process, without the collector around it.
type alone struct {
	name                          string
	allocsPerEvent, bytesPerEvent float64
	microsPerEvent                float64
}

// exporterAlone pushes pushes copies of one 500-point request through an exporter made
// by its factory (no queue) to the sink, and counts the heap allocations per event.
func exporterAlone(name string, factory exporter.Factory, cfg component.Config, md pmetric.Metrics, pushes int) alone {
	ctx := context.Background()
	exp, err := factory.CreateMetrics(ctx, exportertest.NewNopSettings(factory.Type()), cfg)
	if err != nil {
		panic(err)
	}
	if err := exp.Start(ctx, componenttest.NewNopHost()); err != nil {
		panic(err)
	}
	defer func() { _ = exp.Shutdown(ctx) }()
	_ = exp.ConsumeMetrics(ctx, md) // connections and pools warm
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	started := time.Now()
	for i := 0; i < pushes; i++ {
		if err := exp.ConsumeMetrics(ctx, md); err != nil {
			panic(err)
		}
	}
	elapsed := time.Since(started)
	runtime.ReadMemStats(&after)
	events := float64(pushes * md.DataPointCount())
	return alone{
		name:           name,
		allocsPerEvent: float64(after.Mallocs-before.Mallocs) / events,
		bytesPerEvent:  float64(after.TotalAlloc-before.TotalAlloc) / events,
		microsPerEvent: float64(elapsed.Microseconds()) / events,
	}
}

// discard answers every request as Doow or an OTLP receiver would, reading nothing
// into memory: what is counted is the exporter's.
func discard(w http.ResponseWriter, r *http.Request) {
	buf := buffers.Get().(*[]byte)
	for {
		if _, err := r.Body.Read(*buf); err != nil {
			break
		}
	}
	buffers.Put(buf)
	if strings.HasPrefix(r.URL.Path, "/telemetry/events") {
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"accepted": 1}`))
		return
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

var buffers = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func exportersAlone() []alone {
	server := httptest.NewServer(http.HandlerFunc(discard))
	defer server.Close()
	sinkURL := server.URL
	req := pmetricotlp.NewExportRequest()
	if err := req.UnmarshalProto(request(500, 0)); err != nil {
		panic(err)
	}
	md := req.Metrics()
	otlp := otlphttpexporter.NewFactory()
	otlpCfg := otlp.CreateDefaultConfig().(*otlphttpexporter.Config)
	otlpCfg.ClientConfig.Endpoint = sinkURL
	otlpCfg.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
	doow := doowexporter.NewFactory()
	doowCfg := doow.CreateDefaultConfig().(*doowexporter.Config)
	doowCfg.Endpoint = sinkURL
	doowCfg.APIKey = "dk_bench_0123456789"
	doowCfg.QueueConfig = configoptional.None[exporterhelper.QueueBatchConfig]()
	return []alone{
		exporterAlone("otlphttp (stock)", otlp, otlpCfg, md, 200),
		exporterAlone("doow", doow, doowCfg, md, 200),
	}
}

func printAlone(results []alone) {
	fmt.Printf("\nThe exporter alone, in this process (requests of 500 points, one at a time, to a sink that reads nothing\ninto memory; compression included)\n")
	fmt.Printf("%-18s %18s %16s %16s\n", "exporter", "allocations/event", "bytes/event", "µs/event (wall)")
	for _, r := range results {
		fmt.Printf("%-18s %18.2f %16.0f %16.2f\n", r.name, r.allocsPerEvent, r.bytesPerEvent, r.microsPerEvent)
	}
}
