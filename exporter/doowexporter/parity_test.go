package doowexporter

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestParity converts the random OTLP that scripts/parity_fuzz.py ran through the
// Python conversion, and wants Python's result: the events as parsed JSON (the same
// values, however each side writes them), the drops by reason and the batch ids. It runs when DOOW_PARITY_DIR names the cases
// (scripts/go-check.sh writes them).
func TestParity(t *testing.T) {
	dir := os.Getenv("DOOW_PARITY_DIR")
	if dir == "" {
		t.Skip("DOOW_PARITY_DIR is not set")
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no cases in %s", dir)
	}
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var c struct {
			vector
			Wire     []string       `json:"wire"`
			Dropped  map[string]int `json:"dropped"`
			BatchIDs []string       `json:"batch_ids_of_3"`
		}
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		result := convertVector(t, c.vector)
		var wire []any
		ids := []string{}
		var chunk []string
		for i := range result.events {
			wire = append(wire, parsedJSON(t, result.events[i].encode()))
			chunk = append(chunk, result.events[i].eventID)
			if len(chunk) == 3 || i == len(result.events)-1 {
				ids = append(ids, newBatch(chunk, nil).id)
				chunk = nil
			}
		}
		var python []any
		for _, event := range c.Wire {
			python = append(python, parsedJSON(t, []byte(event)))
		}
		if !reflect.DeepEqual(wire, python) {
			t.Errorf("%s: events differ\n  Go: %v\nPython: %v", path, wire, python)
		}
		if !reflect.DeepEqual(ids, append([]string{}, c.BatchIDs...)) {
			t.Errorf("%s: batch ids differ\n  Go: %v\nPython: %v", path, ids, c.BatchIDs)
		}
		if len(result.dropped)+len(c.Dropped) > 0 && !reflect.DeepEqual(result.dropped, c.Dropped) {
			t.Errorf("%s: drops differ\n  Go: %v\nPython: %v", path, result.dropped, c.Dropped)
		}
	}
}
