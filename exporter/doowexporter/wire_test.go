package doowexporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/collector/exporter/exportertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/doow/doow-otel/exporter/doowexporter/internal/metadata"
)

// makeBatches writes bodies in place; this checks them against the plain definition
// (each event encoded alone, split at 500 events or about 450 KB, joined with ",").
func TestBatchesAreSplitAndWrittenAsDefined(t *testing.T) {
	for _, width := range []int{0, 200, 900} {
		var events []event
		for i := 0; i < 1700; i++ {
			events = append(events, event{
				eventID:   "00000000-0000-5000-8000-" + strings.Repeat("0", 12-len(strconv.Itoa(i))) + strconv.Itoa(i),
				licenseID: "lic_" + strconv.Itoa(i), nanos: 1795515300000000000 + uint64(i)*1e6, metric: "m",
				quantity:    quantity{isInt: true, i: int64(i + 1)},
				attribution: []attr{{"note", strValue(strings.Repeat("x", width%(i%7+1)+width/2))}},
			})
		}
		var want [][]int // event indexes per batch
		size := 0
		for i := range events {
			n := len(events[i].encode())
			if len(want) == 0 || len(want[len(want)-1]) >= maxBatchEvents || size+n+1 > maxBatchBytes {
				want, size = append(want, nil), 0
			}
			want[len(want)-1] = append(want[len(want)-1], i)
			size += n + 1
		}
		got := makeBatches(events)
		if len(got) != len(want) {
			t.Fatalf("width %d: %d batches, want %d", width, len(got), len(want))
		}
		for b, indexes := range want {
			var ids []string
			var encoded [][]byte
			for _, i := range indexes {
				ids = append(ids, events[i].eventID)
				encoded = append(encoded, events[i].encode())
			}
			reference := newBatch(ids, encoded)
			if got[b].id != reference.id || !bytes.Equal(got[b].body(), reference.body()) {
				t.Fatalf("width %d, batch %d differs from its definition", width, b)
			}
			left, right := got[b].halves()
			wantLeft, wantRight := reference.halves()
			if !bytes.Equal(left.body(), wantLeft.body()) || !bytes.Equal(right.body(), wantRight.body()) {
				t.Fatalf("width %d, batch %d: halves differ", width, b)
			}
		}
	}
}

// Batch buffers are reused once a push is over (the bodies went out gzipped): pushes
// running at once, as the queue's consumers run them, still send each event once, in
// bodies whose batch id is their events'.
func TestPushesAtOnceSendEachEventOnceInSoundBodies(t *testing.T) {
	var mu sync.Mutex
	sent := map[string]int{}
	unsound := 0
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			BatchID string `json:"batch_id"`
			Events  []struct {
				EventID string `json:"event_id"`
			} `json:"events"`
		}
		gz, err := gzip.NewReader(r.Body)
		if err == nil {
			err = json.NewDecoder(gz).Decode(&body)
		}
		var ids []string
		for _, e := range body.Events {
			ids = append(ids, e.EventID)
		}
		mu.Lock()
		if err != nil || body.BatchID != batchID(ids) {
			unsound++
		}
		for _, id := range ids {
			sent[id]++
		}
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"accepted": 1}`))
	}))
	defer server.Close()
	cfg := createDefaultConfig().(*Config)
	cfg.Endpoint, cfg.APIKey = server.URL, testKey
	e, err := newExporter(cfg, exportertest.NewNopSettings(metadata.Type))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	var wg sync.WaitGroup
	for g := 0; g < 6; g++ {
		var pushes []pmetric.Metrics
		for n := 0; n < 8; n++ {
			md := usage(700 + 37*n)
			points := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics().At(0).Sum().DataPoints()
			for i := 0; i < points.Len(); i++ {
				points.At(i).SetTimestamp(pcommon.Timestamp(1_795_515_300_000_000_000 + g*1000 + n))
			}
			for _, ev := range convertMetrics(md, e.opts).events {
				want[ev.eventID]++
			}
			pushes = append(pushes, md)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, md := range pushes {
				if err := e.pushMetrics(context.Background(), md); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if unsound > 0 || len(sent) != len(want) {
		t.Fatalf("%d unsound bodies; %d events sent, want %d", unsound, len(sent), len(want))
	}
	for id, n := range sent {
		if n != 1 || want[id] != 1 {
			t.Fatalf("event %s sent %d times", id, n)
		}
	}
}
