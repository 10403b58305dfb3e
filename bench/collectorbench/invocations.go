package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

// Doow events a minute for 2,000 invocations a minute from 50 environments of one
// function over 50 licenses: each invocation pushes its usage (api_calls and tokens
// for one license) as the Lambda extension does, straight to Doow (the doow exporter,
// one push per invocation) or through an aggregating gateway. The minute is compressed
// tenfold: 2,000 invocations in one 6 s window, so a window's events are a minute's at
// 60 s windows.

const (
	invocationsPerMinute = 2000
	environments         = 50
	licenses             = 50
	compressedMinute     = 6 * time.Second
)

// invocation is one invocation's OTLP push: its environment's resource, one license.
func invocation(n int, at time.Time) []byte {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "summarise")
	rm.Resource().Attributes().PutStr("faas.name", "summarise")
	rm.Resource().Attributes().PutStr("faas.instance", "env-"+strconv.Itoa(n%environments))
	metrics := rm.ScopeMetrics().AppendEmpty().Metrics()
	for _, name := range []string{"api_calls", "tokens"} {
		m := metrics.AppendEmpty()
		m.SetName(name)
		sum := m.SetEmptySum()
		sum.SetIsMonotonic(true)
		sum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
		p := sum.DataPoints().AppendEmpty()
		p.SetIntValue(int64(1 + n%3))
		p.Attributes().PutStr("doow.license_id", "lic_"+strconv.Itoa(n%licenses))
		p.SetStartTimestamp(pcommon.NewTimestampFromTime(at))
		p.SetTimestamp(pcommon.NewTimestampFromTime(at.Add(time.Duration(n) + time.Millisecond)))
	}
	data, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	return data
}

type invocationResult struct {
	route     string
	events    int64
	delivered bool
}

func eventsPerMinute(binary, dir, sinkURL, route, exporterYAML, extensions, extensionNames string) invocationResult {
	port, telemetryPort := freePort(), freePort()
	config := filepath.Join(dir, "invocations-"+route+".yaml")
	yaml := fmt.Sprintf(configTemplate, extensions, port, exporterYAML, extensionNames, telemetryPort, "batch", "doow")
	_ = os.WriteFile(config, []byte(yaml), 0o600)
	cmd := exec.Command(binary, "--config", config)
	if log, err := os.Create(config + ".log"); err == nil {
		defer log.Close()
		cmd.Stdout, cmd.Stderr = log, log
	}
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	defer func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }()
	waitListening(port)
	counter.count.Store(0)
	counter.quantity.Store(0)
	// start at a window's start: the compressed minute is one window
	start := time.Now().Truncate(compressedMinute).Add(compressedMinute)
	time.Sleep(time.Until(start))
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/metrics", port)
	var want int64
	// within the window's first 90%: the last pushes land in it, not the next
	every := compressedMinute * 9 / 10 / invocationsPerMinute
	for n := 0; n < invocationsPerMinute; n++ {
		time.Sleep(time.Until(start.Add(time.Duration(n) * every)))
		resp, err := http.Post(url, "application/x-protobuf", bytes.NewReader(invocation(n, time.Now())))
		if err != nil {
			panic(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		want += 2 * int64(1+n%3)
	}
	deadline := time.Now().Add(30 * time.Second)
	for counter.quantity.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	return invocationResult{route, counter.count.Load(), counter.quantity.Load() == want}
}

func waitListening(port int) {
	for i := 0; i < 300; i++ {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port)); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func invocationsTable(binary, dir, sinkURL string) []invocationResult {
	direct := fmt.Sprintf("doow:\n    endpoint: %s\n    api_key: dk_bench_0123456789\n    sending_queue:\n      enabled: false", sinkURL)
	gateway := fmt.Sprintf("doow:\n    endpoint: %s\n    api_key: dk_bench_0123456789\n    aggregation:\n      window: %s\n      grace: 0s\n      storage: file_storage",
		sinkURL, compressedMinute)
	storage := fmt.Sprintf("extensions:\n  file_storage:\n    directory: %s\n    create_directory: true", filepath.Join(dir, "invocations"))
	results := []invocationResult{
		eventsPerMinute(binary, dir, sinkURL, "direct", direct, "", ""),
		eventsPerMinute(binary, dir, sinkURL, "gateway", gateway, storage, "file_storage"),
	}
	fmt.Printf("\nDoow events a minute: %d invocations a minute from %d environments over %d licenses (api_calls and\n"+
		"tokens each), each invocation's usage pushed as the Lambda extension does; the minute compressed tenfold\n"+
		"(a minute's invocations in one %s window). Doow's budget: 1,000 events a minute per organisation.\n",
		invocationsPerMinute, environments, licenses, compressedMinute)
	fmt.Printf("%-36s %16s %10s\n", "route", "events a minute", "exact")
	for _, r := range results {
		label := map[string]string{"direct": "direct (the extension to Doow)", "gateway": "through an aggregating gateway"}[r.route]
		fmt.Printf("%-36s %16d %10v\n", label, r.events, r.delivered)
	}
	return results
}
