package doowexporter

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
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
	Options     vectorOptions   `json:"options"`
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

func (o vectorOptions) conversion() conversionOptions {
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

// canonical decodes JSON keeping numbers as written, so 1 and 1.0 stay different.
func canonical(t *testing.T, data []byte) any {
	t.Helper()
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	var out any
	if err := decoder.Decode(&out); err != nil {
		t.Fatalf("bad JSON %s: %v", data, err)
	}
	return out
}

func convertVector(t *testing.T, v vector) conversion {
	t.Helper()
	opts := v.Options.conversion()
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
				got := canonical(t, result.events[i].encode())
				want := canonical(t, v.Expected.Events[i])
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s\nevent %d\n got: %s\nwant: %s", v.Description, i, result.events[i].encode(), v.Expected.Events[i])
				}
			}
			if !reflect.DeepEqual(result.dropped, v.Expected.Dropped) && !(len(result.dropped) == 0 && len(v.Expected.Dropped) == 0) {
				t.Errorf("%s\ndropped %v, want %v", v.Description, result.dropped, v.Expected.Dropped)
			}
		})
	}
}

func TestBatchIDMatchesPython(t *testing.T) {
	// the id Python's wire.Batch.of gives the same ids: uuid5(BATCH_NAMESPACE, "a,b")
	b := newBatch([]string{"a", "b"}, [][]byte{[]byte("{}"), []byte("{}")})
	if b.id != "c918f11d-990b-540e-9ac4-745f24d4e827" {
		t.Fatalf("batch id %s", b.id)
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
