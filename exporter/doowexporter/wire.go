package doowexporter

import (
	"bytes"
	"compress/gzip"
	"strings"
	"sync"
)

// Batches as the Python package's wire module makes them: at most 500 events and
// about 450 KB, a batch id derived from the event ids (the same events always travel
// under the same batch_id), gzip above 1 KB.

const (
	maxBatchEvents = 500
	maxBatchBytes  = 450 * 1024
	gzipAboveBytes = 1024
)

var batchNamespace = mustUUID("5b1d6f0e-3c52-4c8e-9f0e-6f1c2d7a9b10")

type batch struct {
	id       string
	eventIDs []string
	events   [][]byte
}

func newBatch(ids []string, events [][]byte) batch {
	return batch{id: uuid5(batchNamespace, strings.Join(ids, ",")), eventIDs: ids, events: events}
}

func (b batch) body() []byte {
	size := 128
	for _, e := range b.events {
		size += len(e) + 1
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	buf.WriteString(`{"batch_id":"` + b.id + `","sdk_version":"` + version + `","events":[`)
	buf.Write(bytes.Join(b.events, []byte(",")))
	buf.WriteString(`]}`)
	return buf.Bytes()
}

func (b batch) halves() (batch, batch) {
	middle := len(b.events) / 2
	return newBatch(b.eventIDs[:middle], b.events[:middle]), newBatch(b.eventIDs[middle:], b.events[middle:])
}

func makeBatches(events []event) []batch {
	var batches []batch
	var ids []string
	var encoded [][]byte
	size := 0
	for i := range events {
		data := events[i].encode()
		if len(encoded) > 0 && (len(encoded) >= maxBatchEvents || size+len(data)+1 > maxBatchBytes) {
			batches = append(batches, newBatch(ids, encoded))
			ids, encoded, size = nil, nil, 0
		}
		ids = append(ids, events[i].eventID)
		encoded = append(encoded, data)
		size += len(data) + 1
	}
	if len(encoded) > 0 {
		batches = append(batches, newBatch(ids, encoded))
	}
	return batches
}

// gzip writers hold about a megabyte of state each: reuse them.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return w
}}

// compress gzips bodies above 1 KB; it returns the body and its Content-Encoding.
// Level 1: usage JSON is repetitive, so it still shrinks about tenfold, at a fraction
// of the CPU of higher levels.
func compress(body []byte) ([]byte, string) {
	if len(body) <= gzipAboveBytes {
		return body, ""
	}
	buf := bytes.NewBuffer(make([]byte, 0, len(body)/6))
	w := gzipWriters.Get().(*gzip.Writer)
	w.Reset(buf)
	_, _ = w.Write(body)
	_ = w.Close()
	gzipWriters.Put(w)
	return buf.Bytes(), "gzip"
}
