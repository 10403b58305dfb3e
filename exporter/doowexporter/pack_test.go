package doowexporter

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The shared packing vectors (tests/vectors/packing/), also run by the Python tests:
// the same events in, the same packed events out, ids included.
func TestPackingVectors(t *testing.T) {
	paths, _ := filepath.Glob(filepath.Join("..", "..", "tests", "vectors", "packing", "*.json"))
	if len(paths) < 8 {
		t.Fatalf("expected at least 8 packing vectors, found %d", len(paths))
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var v struct {
				Description string `json:"description"`
				Input       []struct {
					Packable bool            `json:"packable"`
					Event    json.RawMessage `json:"event"`
				} `json:"input"`
				Expected []json.RawMessage `json:"expected"`
			}
			if err := json.Unmarshal(data, &v); err != nil {
				t.Fatal(err)
			}
			var events []event
			for _, in := range v.Input {
				e := wireEvent(t, in.Event)
				e.packable = in.Packable
				events = append(events, e)
			}
			got := pack(events)
			if len(got) != len(v.Expected) {
				t.Fatalf("%s\ngot %d events, want %d", v.Description, len(got), len(v.Expected))
			}
			for i := range got {
				if g, w := parsedJSON(t, got[i].encode()), parsedJSON(t, v.Expected[i]); !reflect.DeepEqual(g, w) {
					t.Errorf("%s\nevent %d\n got: %s\nwant: %s", v.Description, i, got[i].encode(), v.Expected[i])
				}
			}
		})
	}
}

// Packing never reaches across ScopeMetrics: what the sending queue merges into one
// push (whole ResourceMetrics of other requests) packs as each request alone would.
func TestPackingStaysWithinAScopeMetrics(t *testing.T) {
	stream := func(scope int32, id, metric string) event {
		return event{eventID: id, licenseID: "lic", nanos: 1_795_515_300_123_000_000, metric: metric,
			quantity: quantity{isInt: true, i: 1}, packable: true, scope: scope}
	}
	alone := pack([]event{stream(1, "id-1", "a"), stream(1, "id-2", "b")})
	merged := pack([]event{stream(1, "id-1", "a"), stream(1, "id-2", "b"), stream(2, "id-3", "c"), stream(3, "id-4", "a")})
	if len(alone) != 1 || len(merged) != 3 || merged[0].eventID != alone[0].eventID ||
		merged[1].eventID != "id-3" || merged[2].eventID != "id-4" {
		t.Fatalf("alone %+v\nmerged %+v", alone, merged)
	}
}

// wireEvent reads an event as POST /telemetry/events takes it.
func wireEvent(t *testing.T, raw json.RawMessage) event {
	t.Helper()
	e, err := decodeEvent(raw)
	if err != nil {
		t.Fatal(err)
	}
	return e
}
