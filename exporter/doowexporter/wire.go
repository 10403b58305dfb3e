package doowexporter

import (
	"bytes"
	"strings"
	"sync"

	"github.com/google/uuid"

	"github.com/klauspost/compress/gzip"
	"go.opentelemetry.io/collector/config/configcompression"
	"go.opentelemetry.io/collector/config/confighttp"
)

// Batches as the Python package's wire module makes them: at most 500 events and
// about 450 KB, a batch id derived from the event ids (the same events always travel
// under the same batch_id).

const (
	maxBatchEvents = 500
	maxBatchBytes  = 450 * 1024
)

var batchNamespace = uuid.MustParse("5b1d6f0e-3c52-4c8e-9f0e-6f1c2d7a9b10")

type batch struct {
	id       string
	eventIDs []string
	events   [][]byte // each event's JSON
	encoded  []byte   // the body, when makeBatches wrote it (events are slices of it)
	source   []event  // the events, when makeBatches made it (a 207 may repack one)
}

func newBatch(ids []string, events [][]byte) batch {
	return batch{id: batchID(ids), eventIDs: ids, events: events}
}

// batchID is uuid5 of the event ids joined with ",".
func batchID(ids []string) string {
	return uuid5(batchNamespace, strings.Join(ids, ","))
}

// The body: {"batch_id":"<36>","sdk_version":"<version>","events":[...]}
const (
	bodyStart   = `{"batch_id":"`
	bodyHeadLen = len(bodyStart) + 36 + len(`","sdk_version":"`+version+`","events":[`)
)

func appendBodyHead(buf []byte, id string) []byte {
	buf = append(append(buf, bodyStart...), id...)
	return append(buf, `","sdk_version":"`+version+`","events":[`...)
}

// body is the batch as POST /telemetry/events takes it.
func (b batch) body() []byte {
	if b.encoded != nil {
		return b.encoded
	}
	size := bodyHeadLen + 2
	for _, e := range b.events {
		size += len(e) + 1
	}
	buf := appendBodyHead(make([]byte, 0, size), b.id)
	for i, e := range b.events {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, e...)
	}
	return append(buf, `]}`...)
}

func (b batch) halves() (batch, batch) {
	middle := len(b.events) / 2
	left, right := newBatch(b.eventIDs[:middle], b.events[:middle]), newBatch(b.eventIDs[middle:], b.events[middle:])
	if b.source != nil {
		left.source, right.source = b.source[:middle], b.source[middle:]
	}
	return left, right
}

// makeBatches writes each batch's body as its events are encoded: the body's head is
// reserved and filled in once the batch's event ids, and so its id, are known.
func makeBatches(events []event) []batch {
	var batches []batch
	var times timeText
	var buf []byte
	var ends []int // where each event of the batch ends in buf
	first, size := 0, 0
	for i := range events {
		if buf == nil {
			buf = newBody(320, len(events)-i)
		}
		start := len(buf)
		if i > first {
			buf = append(buf, ',')
		}
		buf = events[i].appendTo(buf, &times)
		length := len(buf) - start
		if i > first {
			length-- // the comma
		}
		if i > first && (i-first >= maxBatchEvents || size+length+1 > maxBatchBytes) {
			// this event opens the next batch
			next := append(newBody(size/(i-first), len(events)-i), buf[len(buf)-length:]...)
			batches = append(batches, finishBatch(buf[:start], ends, events[first:i]))
			buf, ends, first, size = next, ends[:0:0], i, 0
		}
		ends = append(ends, len(buf))
		size += length + 1
	}
	if buf != nil {
		batches = append(batches, finishBatch(buf, ends, events[first:]))
	}
	return batches
}

// newBody makes room for the head and up to a batch of events of about eventSize.
func newBody(eventSize, events int) []byte {
	size := bodyHeadLen + 2 + min((eventSize+8)*min(events, maxBatchEvents), maxBatchBytes+4096)
	if b, ok := bodies.Get().([]byte); ok && cap(b) >= size {
		return b[:bodyHeadLen]
	}
	return make([]byte, bodyHeadLen, size)
}

func finishBatch(buf []byte, ends []int, events []event) batch {
	ids := make([]string, len(events))
	encoded := make([][]byte, len(events))
	start := bodyHeadLen
	for i := range events {
		ids[i] = events[i].eventID
		encoded[i] = buf[start:ends[i]:ends[i]]
		start = ends[i] + 1 // past the comma
	}
	b := newBatch(ids, encoded)
	b.source = events
	appendBodyHead(buf[:0], b.id)
	b.encoded = append(buf, `]}`...)
	return b
}

// gzipWriters holds reusable writers per level (1-9): each holds about a megabyte of
// state.
var gzipWriters [gzip.BestCompression + 1]sync.Pool

// ownGzip says whether the exporter gzips bodies itself, and at which level: gzip at
// levels 1-9, with klauspost's gzip (a dependency of the collector already), which
// takes half the CPU of the standard library's that confighttp uses. confighttp
// compresses the rest, and leaves a body that has a Content-Encoding be.
func ownGzip(client confighttp.ClientConfig) (int, bool) {
	level := int(client.CompressionParams.Level)
	return level, client.Compression == configcompression.TypeGzip && level >= gzip.BestSpeed && level <= gzip.BestCompression
}

func gzipBody(body []byte, level int) []byte {
	buf := bytes.NewBuffer(make([]byte, 0, len(body)/6+64))
	w, _ := gzipWriters[level].Get().(*gzip.Writer)
	if w == nil {
		w, _ = gzip.NewWriterLevel(buf, level)
	} else {
		w.Reset(buf)
	}
	_, _ = w.Write(body)
	_ = w.Close()
	gzipWriters[level].Put(w)
	return buf.Bytes()
}

// bodies are the buffers of batches whose push is over and that went out as gzipped
// copies: the next push writes its batches into them.
var bodies sync.Pool

// releaseBodies hands the batches' buffers on; nothing may use the batches after.
func releaseBodies(batches []batch) {
	for _, b := range batches {
		if b.encoded != nil {
			bodies.Put(b.encoded[:0])
		}
	}
}
