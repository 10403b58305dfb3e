// Command collectorbench measures usage events per second through otelcol-doow (OTLP
// in, Doow batches out) and the collector's CPU per thousand events, side by side in
// one run with the same data through the stock otlphttp exporter. Both send to a sink
// in this process that only counts what arrives, so the receiver is not what is
// measured.
//
//	go run . [-points 200000] [-per-request 1000] [-senders 4]
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
)

var eventMarker = []byte(`"event_id":`)

// sink counts Doow events (in JSON batches) and OTLP data points (in protobuf), and sums
// their quantities: an aggregating gateway sends fewer events than it took points, the
// same usage.
type sink struct{ count, quantity atomic.Int64 }

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(r.Body)
		if err != nil {
			w.WriteHeader(400)
			return
		}
		body = gz
	}
	data, _ := io.ReadAll(body)
	if strings.HasPrefix(r.URL.Path, "/telemetry/events") {
		s.count.Add(int64(bytes.Count(data, eventMarker)))
		var batch struct {
			Events []struct {
				Measurements []struct {
					Quantity int64 `json:"quantity"`
				} `json:"measurements"`
			} `json:"events"`
		}
		_ = json.Unmarshal(data, &batch)
		for _, e := range batch.Events {
			for _, m := range e.Measurements {
				s.quantity.Add(m.Quantity)
			}
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"accepted": 1}`))
		return
	}
	req := pmetricotlp.NewExportRequest()
	if err := req.UnmarshalProto(data); err == nil {
		s.count.Add(int64(req.Metrics().DataPointCount()))
		s.quantity.Add(otlpQuantity(req.Metrics()))
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.WriteHeader(http.StatusOK)
}

func otlpQuantity(md pmetric.Metrics) int64 {
	var total int64
	for i := 0; i < md.ResourceMetrics().Len(); i++ {
		scopes := md.ResourceMetrics().At(i).ScopeMetrics()
		for j := 0; j < scopes.Len(); j++ {
			metrics := scopes.At(j).Metrics()
			for k := 0; k < metrics.Len(); k++ {
				points := metrics.At(k).Sum().DataPoints()
				for p := 0; p < points.Len(); p++ {
					total += points.At(p).IntValue()
				}
			}
		}
	}
	return total
}

// quantityOf is the usage of n points as request makes them.
func quantityOf(n int) int64 {
	var total int64
	for i := 0; i < n; i++ {
		total += int64(1 + i%5)
	}
	return total
}

func freePort() int {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// request builds one OTLP request of n delta usage points, each with its own license.
func request(n, seq int) []byte {
	md := pmetric.NewMetrics()
	rm := md.ResourceMetrics().AppendEmpty()
	rm.Resource().Attributes().PutStr("service.name", "bench")
	metric := rm.ScopeMetrics().AppendEmpty().Metrics().AppendEmpty()
	metric.SetName("api_calls")
	sum := metric.SetEmptySum()
	sum.SetIsMonotonic(true)
	sum.SetAggregationTemporality(pmetric.AggregationTemporalityDelta)
	now := uint64(time.Now().UnixNano())
	for i := 0; i < n; i++ {
		p := sum.DataPoints().AppendEmpty()
		p.SetIntValue(int64(1 + i%5))
		p.Attributes().PutStr("doow.license_id", "lic_"+strconv.Itoa(i))
		p.Attributes().PutStr("route", "/v1/summarise")
		p.SetStartTimestamp(0)
		p.SetTimestamp(pcommon.Timestamp(now + uint64(seq)))
	}
	data, _ := pmetricotlp.NewExportRequestFromMetrics(md).MarshalProto()
	return data
}

func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	user, _ := strconv.ParseFloat(fields[11], 64)
	system, _ := strconv.ParseFloat(fields[12], 64)
	return (user + system) / 100 // USER_HZ
}

const configTemplate = `
%s
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
processors:
  batch:
    send_batch_size: 500
    timeout: 200ms
exporters:
  %s
service:
  extensions: [%s]
  telemetry:
    metrics:
      level: basic
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: %d
  pipelines:
    metrics:
      receivers: [otlp]
      processors: [%s]
      exporters: [%s]
`

// contender is an exporter configuration and what its pipeline needs around it.
type contender struct {
	name, exporter, yaml string
	extensions           string // the extensions section, or ""
	extensionNames       string
	processors           string
}

type result struct {
	name                 string
	eventsPerSecond      float64 // input points a second
	cpuMillisPerThousand float64 // per 1000 input points
	allocKBPerThousand   float64
	delivered            bool // the sink got all the usage sent
	eventsOut            int64
}

// allocatedBytes reads the collector's own cumulative heap allocation (its telemetry,
// refreshed each second: the idle collector allocates little meanwhile).
func allocatedBytes(port int) float64 {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(data), "\n") {
		if value, ok := strings.CutPrefix(line, "otelcol_process_runtime_total_alloc_bytes "); ok {
			bytes, _ := strconv.ParseFloat(value, 64)
			return bytes
		}
	}
	return 0
}

func run(binary, dir string, c contender, points, perRequest, senders int) result {
	name := c.name
	port, telemetryPort := freePort(), freePort()
	config := filepath.Join(dir, strings.ReplaceAll(c.exporter, "/", "-")+".yaml")
	yaml := fmt.Sprintf(configTemplate, c.extensions, port, c.yaml, c.extensionNames, telemetryPort, c.processors, c.exporter)
	_ = os.WriteFile(config, []byte(yaml), 0o600)
	cmd := exec.Command(binary, "--config", config)
	logPath := strings.TrimSuffix(config, ".yaml") + ".log"
	if log, err := os.Create(logPath); err == nil {
		defer log.Close()
		cmd.Stdout, cmd.Stderr = log, log
	}
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	defer func() { _ = cmd.Process.Kill(); _, _ = cmd.Process.Wait() }()
	url := fmt.Sprintf("http://127.0.0.1:%d/v1/metrics", port)
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			break
		}
		if i == 300 {
			output, _ := os.ReadFile(logPath)
			fmt.Fprintf(os.Stderr, "%s: the collector did not start:\n%s\n", name, output)
			os.Exit(1)
		}
		time.Sleep(20 * time.Millisecond)
	}
	requests := points / perRequest
	bodies := make([][]byte, requests)
	for i := range bodies {
		bodies[i] = request(perRequest, i)
	}
	counter.count.Store(0)
	counter.quantity.Store(0)
	allocBefore := allocatedBytes(telemetryPort)
	for i := 0; i < 300 && allocBefore == 0; i++ { // the telemetry server starts last
		time.Sleep(20 * time.Millisecond)
		allocBefore = allocatedBytes(telemetryPort)
	}
	cpuBefore := cpuSeconds(cmd.Process.Pid)
	started := time.Now()
	var wg sync.WaitGroup
	next := atomic.Int64{}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	for s := 0; s < senders; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				resp, err := client.Post(url, "application/x-protobuf", bytes.NewReader(bodies[i]))
				if err != nil {
					panic(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	want := int64(requests) * quantityOf(perRequest)
	deadline := time.Now().Add(60 * time.Second)
	for counter.quantity.Load() < want && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(started)
	cpu := cpuSeconds(cmd.Process.Pid) - cpuBefore
	time.Sleep(1500 * time.Millisecond) // the collector refreshes its process metrics each second
	allocated := allocatedBytes(telemetryPort) - allocBefore
	got := counter.quantity.Load()
	if got != want {
		fmt.Fprintf(os.Stderr, "%s: the sink got %d of the usage's %d\n", name, got, want)
	}
	sent := requests * perRequest
	thousands := float64(sent) / 1000
	return result{name, float64(sent) / elapsed.Seconds(), cpu * 1000 / thousands, allocated / 1024 / thousands, got == want,
		counter.count.Load()}
}

var counter = &sink{}

func main() {
	points := flag.Int("points", 200_000, "usage data points to send")
	perRequest := flag.Int("per-request", 1000, "points per OTLP request")
	senders := flag.Int("senders", 4, "concurrent OTLP senders")
	binary := flag.String("collector", "../../collector/_build/otelcol-doow", "otelcol-doow binary")
	only := flag.String("only", "", "run one exporter (otlphttp, doow or doow/gateway), for profiling")
	jsonPath := flag.String("json", "", "also write the figures there, for bench/run.py")
	flag.Parse()

	sinkPort := freePort()
	go func() { _ = http.ListenAndServe(fmt.Sprintf("127.0.0.1:%d", sinkPort), counter) }()
	dir, _ := os.MkdirTemp("", "collectorbench")
	defer os.RemoveAll(dir)
	sinkURL := fmt.Sprintf("http://127.0.0.1:%d", sinkPort)

	doow := fmt.Sprintf("doow:\n    endpoint: %s\n    api_key: dk_bench_0123456789\n    sending_queue:\n      enabled: false", sinkURL)
	otlphttp := fmt.Sprintf("otlphttp:\n    endpoint: %s\n    sending_queue:\n      enabled: false", sinkURL)
	// as collector/gateway.yaml: no batch processor, a file_storage queue that batches
	gateway := fmt.Sprintf(`doow/gateway:
    endpoint: %s
    api_key: dk_bench_0123456789
    sending_queue:
      enabled: true
      storage: file_storage
      queue_size: 1000000
      sizer: items
      num_consumers: 8
      batch:
        flush_timeout: 200ms
        min_size: 500
        max_size: 500`, sinkURL)
	// as collector/gateway.yaml now: aggregation per stream and window (1 s here, so the
	// run ends soon after the last push), a file_storage queue, no max_size
	aggregating := fmt.Sprintf(`doow/aggregating:
    endpoint: %s
    api_key: dk_bench_0123456789
    aggregation:
      window: 1s
      grace: 0s
      storage: file_storage
    sending_queue:
      enabled: true
      storage: file_storage
      queue_size: 1000000
      sizer: items
      num_consumers: 8
      batch:
        flush_timeout: 200ms
        min_size: 500`, sinkURL)
	storage := fmt.Sprintf("extensions:\n  file_storage:\n    directory: %s\n    create_directory: true", filepath.Join(dir, "queue"))
	contenders := []contender{
		{name: "otlphttp (stock)", exporter: "otlphttp", yaml: otlphttp, processors: "batch"},
		{name: "doow", exporter: "doow", yaml: doow, processors: "batch"},
		{name: "doow, disk queue", exporter: "doow/gateway", yaml: gateway, extensions: storage, extensionNames: "file_storage"},
		{name: "doow, aggregating gateway", exporter: "doow/aggregating", yaml: aggregating, extensions: storage, extensionNames: "file_storage"},
	}
	var results []result
	for _, c := range contenders {
		if *only == "" || strings.HasPrefix(c.exporter, *only) && (*only != "doow" || c.exporter == "doow") {
			results = append(results, run(*binary, dir, c, *points, *perRequest, *senders))
		}
	}
	fmt.Printf("\nThrough otelcol-doow: %d delta usage points in OTLP requests of %d, %d senders, batches of 500 (one run;\n"+
		"\"disk queue\": a file_storage queue that batches, no batch processor; \"aggregating gateway\": as\n"+
		"collector/gateway.yaml, points summed per stream and 1 s window in file_storage, one event per stream\n"+
		"and window out; its points/s include waiting for the last window to seal)\n",
		*points, *perRequest, *senders)
	fmt.Printf("%-26s %12s %18s %18s %14s %12s %12s\n", "exporter", "points/s", "collector CPU ms", "collector alloc", "CPU per point", "throughput", "Doow events")
	fmt.Printf("%-26s %12s %18s %18s %14s %12s %12s\n", "", "", "per 1000 points", "KB per 1000", "vs stock", "vs stock", "out")
	base := results[0]
	for _, r := range results {
		fmt.Printf("%-26s %12.0f %18.2f %18.0f %13.2fx %11.2fx %12d\n", r.name, r.eventsPerSecond, r.cpuMillisPerThousand,
			r.allocKBPerThousand, r.cpuMillisPerThousand/base.cpuMillisPerThousand, r.eventsPerSecond/base.eventsPerSecond, r.eventsOut)
	}
	var alone []alone
	var invocations []invocationResult
	if *only == "" {
		alone = exportersAlone()
		printAlone(alone)
		invocations = invocationsTable(*binary, dir, sinkURL)
	}
	if *jsonPath != "" {
		if err := writeFigures(*jsonPath, results, alone, invocations); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}

// figures is what -json writes: per exporter row (named as in the tables), its figures.
type figures struct {
	Through     map[string]through           `json:"through"`
	Alone       map[string]aloneFigures      `json:"alone"`
	Invocations map[string]invocationFigures `json:"doow_events_a_minute"`
}

// invocationFigures: per route ("direct", "gateway"), the Doow events of the compressed
// minute and whether the sink got all the usage.
type invocationFigures struct {
	Events    int64 `json:"events"`
	Delivered bool  `json:"delivered"`
}

type through struct {
	EventsPerSecond      float64 `json:"events_per_second"`
	CPUMillisPerThousand float64 `json:"cpu_ms_per_1000_events"`
	AllocKBPerThousand   float64 `json:"alloc_kb_per_1000_events"`
	Delivered            bool    `json:"delivered"`
}

type aloneFigures struct {
	AllocsPerEvent float64 `json:"allocations_per_event"`
	BytesPerEvent  float64 `json:"bytes_per_event"`
	MicrosPerEvent float64 `json:"us_per_event"`
}

func writeFigures(path string, results []result, alone []alone, invocations []invocationResult) error {
	out := figures{Through: map[string]through{}, Alone: map[string]aloneFigures{}, Invocations: map[string]invocationFigures{}}
	for _, r := range invocations {
		out.Invocations[r.route] = invocationFigures{r.events, r.delivered}
	}
	for _, r := range results {
		out.Through[r.name] = through{r.eventsPerSecond, r.cpuMillisPerThousand, r.allocKBPerThousand, r.delivered}
	}
	for _, a := range alone {
		out.Alone[a.name] = aloneFigures{a.allocsPerEvent, a.bytesPerEvent, a.microsPerEvent}
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
