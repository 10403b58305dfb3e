package doowexporter

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
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
