package doowexporter

import (
	"bytes"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// The shared vectors (tests/vectors/), also run by the Python tests: the same OTLP in,
// the same Doow events out, with byte-identical event ids.

type vector struct {
	Description string          `json:"description"`
	Signal      string          `json:"signal"`
	Options     json.RawMessage `json:"options"`
	OTLP        json.RawMessage `json:"otlp"`
	Expected    struct {
		Events  []json.RawMessage `json:"events"`
		Dropped map[string]int    `json:"dropped"`
	} `json:"expected"`
}

type vectorOptions struct {
	DefaultLicenseID    string    `json:"default_license_id"`
	UsageMetrics        []string  `json:"usage_metrics"`
	ResourceAttributes  *[]string `json:"resource_attributes"`
	HistogramQuantity   string    `json:"histogram_quantity"`
	GenAIWithoutLicense bool      `json:"genai_without_license"`
}

// batchIDsFromPython: the batch ids Python's wire.make_batches gives these vectors'
// events, and their first halves (wire.Batch.halves, as after a 413).
var batchIDsFromPython = map[string][2]string{
	"01-metric-delta-sum-int.json":           {"116b4b98-5147-59d3-a40c-7b3ea9289ca2"},
	"24-metric-two-points-distinct-ids.json": {"650402ac-830f-5352-8c48-a1c52f2a2b34", "d566ce9a-0030-5146-9ab5-cbf509a3e29f"},
	"35-span-event-and-genai.json":           {"e85b51eb-2999-5815-a027-4f57b36403fe", "301d3997-4104-5643-ad5c-97171e384711"},
}

// options reads a vector's options; one the Go side does not know fails the test.
func options(t *testing.T, raw json.RawMessage) conversionOptions {
	t.Helper()
	var o vectorOptions
	decoder := json.NewDecoder(bytes.NewReader(raw))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(&o); err != nil {
		t.Fatalf("options: %v", err)
	}
	cfg := createDefaultConfig().(*Config)
	cfg.DefaultLicenseID = o.DefaultLicenseID
	cfg.UsageMetrics = o.UsageMetrics
	if o.ResourceAttributes != nil {
		cfg.ResourceAttributes = *o.ResourceAttributes
	}
	if o.HistogramQuantity != "" {
		cfg.HistogramQuantity = o.HistogramQuantity
	}
	cfg.GenAIWithoutLicense = o.GenAIWithoutLicense
	return cfg.conversionOptions()
}

// parsedJSON decodes JSON for comparison: the same JSON value compares equal however it
// is written (Python and Go need not write the same bytes, only the same values), with
// numbers compared by their exact value (2 and 2.0 alike, 1e+16 and 10000000000000000).
func parsedJSON(t *testing.T, data []byte) any {
	t.Helper()
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	var out any
	if err := decoder.Decode(&out); err != nil {
		t.Fatalf("bad JSON %s: %v", data, err)
	}
	return exactNumbers(out)
}

func exactNumbers(value any) any {
	switch v := value.(type) {
	case json.Number:
		if r, ok := new(big.Rat).SetString(string(v)); ok {
			return "number " + r.RatString()
		}
	case map[string]any:
		for key, item := range v {
			v[key] = exactNumbers(item)
		}
	case []any:
		for i, item := range v {
			v[i] = exactNumbers(item)
		}
	}
	return value
}

func convertVector(t *testing.T, v vector) conversion {
	t.Helper()
	opts := options(t, v.Options)
	switch v.Signal {
	case "metrics":
		md, err := (&pmetric.JSONUnmarshaler{}).UnmarshalMetrics(v.OTLP)
		if err != nil {
			t.Fatal(err)
		}
		return convertMetrics(md, opts)
	case "traces":
		td, err := (&ptrace.JSONUnmarshaler{}).UnmarshalTraces(v.OTLP)
		if err != nil {
			t.Fatal(err)
		}
		return convertTraces(td, opts)
	case "logs":
		ld, err := (&plog.JSONUnmarshaler{}).UnmarshalLogs(v.OTLP)
		if err != nil {
			t.Fatal(err)
		}
		return convertLogs(ld, opts)
	}
	t.Fatalf("unknown signal %q", v.Signal)
	return conversion{}
}

func TestVectors(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join("..", "..", "tests", "vectors", "*.json"))
	if err != nil || len(paths) < 25 {
		t.Fatalf("expected at least 25 vectors, found %d (%v)", len(paths), err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var v vector
			if err := json.Unmarshal(data, &v); err != nil {
				t.Fatal(err)
			}
			result := convertVector(t, v)
			if len(result.events) != len(v.Expected.Events) {
				t.Fatalf("%s\ngot %d events, want %d", v.Description, len(result.events), len(v.Expected.Events))
			}
			for i := range result.events {
				got := parsedJSON(t, result.events[i].encode())
				want := parsedJSON(t, v.Expected.Events[i])
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s\nevent %d\n got: %s\nwant: %s", v.Description, i, result.events[i].encode(), v.Expected.Events[i])
				}
			}
			if ids, ok := batchIDsFromPython[filepath.Base(path)]; ok {
				batches := makeBatches(result.events)
				if len(batches) != 1 || batches[0].id != ids[0] {
					t.Errorf("batch id differs from Python's: %+v", batches)
				} else if first, _ := batches[0].halves(); ids[1] != "" && first.id != ids[1] {
					t.Errorf("first half's batch id %s, Python's %s", first.id, ids[1])
				}
			}
			if !reflect.DeepEqual(result.dropped, v.Expected.Dropped) && !(len(result.dropped) == 0 && len(v.Expected.Dropped) == 0) {
				t.Errorf("%s\ndropped %v, want %v", v.Description, result.dropped, v.Expected.Dropped)
			}
		})
	}
}

func TestPyFloat(t *testing.T) {
	cases := map[float64]string{1.25: "1.25", 100: "100.0", 1e16: "1e+16", 1e-5: "1e-05",
		0.0001: "0.0001", 1e6: "1000000.0", 1.5e-7: "1.5e-07", 123456789.125: "123456789.125"}
	for f, want := range cases {
		if got := pyFloat(f); got != want {
			t.Errorf("pyFloat(%v) = %s, want %s", f, got, want)
		}
	}
}

// The converter reuses pooled scratch and carves ids from shared blocks: conversions
// running at once (as the queue's consumers do) must give what each gives alone.
func TestParallelConversionsGiveWhatEachGivesAlone(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("..", "..", "tests", "vectors", "*.json"))
	var vectors []vector
	var want []string
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var v vector
		if err := json.Unmarshal(data, &v); err != nil {
			t.Fatal(err)
		}
		vectors = append(vectors, v)
		want = append(want, encodeAll(convertVector(t, v)))
	}
	var wg sync.WaitGroup
	failures := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20*len(vectors); i++ {
				n := (i*7 + g) % len(vectors)
				got := encodeAll(convertVector(t, vectors[n]))
				if got != want[n] {
					failures <- filepath.Base(paths[n])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(failures)
	for name := range failures {
		t.Errorf("%s converted differently when converted in parallel", name)
	}
}

func encodeAll(result conversion) string {
	var out []byte
	for i := range result.events {
		out = append(append(out, result.events[i].encode()...), '\n')
	}
	for _, b := range makeBatches(result.events) {
		out = append(append(out, b.body()...), '\n')
	}
	return string(out)
}
