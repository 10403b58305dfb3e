package doowexporter

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/google/uuid"
)

// An aggregation entry: one push's points as the storage keeps them (aggregator.go),
// in a compact binary form (a push writes one, a start reads them all back):
//
//	version 1, applied at (varint), ids (count, 16 bytes each), deltas (count, each:
//	window (varint), license, unit, attribution (count, each: key, kind, value),
//	metric, quantity (kind, 8 bytes)); strings as a uvarint length and their bytes.

const entryVersion = 1

// delta is what one point adds to its stream's sum in a window: the point's license,
// unit, attribution, metric and quantity.
type delta struct {
	window int64
	point  event
}

type entryWriter struct {
	idList []uuid.UUID
	buf    []byte
	deltas int
}

func (w *entryWriter) id(id uuid.UUID) { w.idList = append(w.idList, id) }

func (w *entryWriter) ids() []uuid.UUID { return w.idList }

func (w *entryWriter) delta(window int64, e *event) {
	w.deltas++
	b := binary.AppendVarint(w.buf, window)
	b = appendBinaryString(appendBinaryString(b, e.licenseID), e.unit)
	b = binary.AppendUvarint(b, uint64(len(e.attribution)))
	for _, a := range e.attribution {
		b = append(appendBinaryString(b, a.key), byte(a.value.kind))
		if a.value.kind == kindStr {
			b = appendBinaryString(b, a.value.str)
		} else {
			b = binary.BigEndian.AppendUint64(b, a.value.bits)
		}
	}
	b = appendBinaryString(b, e.metric)
	w.buf = appendBinaryQuantity(b, e.quantity)
}

func (w *entryWriter) bytes(at int64) []byte {
	out := make([]byte, 0, 16+16*len(w.idList)+len(w.buf))
	out = binary.AppendVarint(append(out, entryVersion), at)
	out = binary.AppendUvarint(out, uint64(len(w.idList)))
	for _, id := range w.idList {
		out = append(out, id[:]...)
	}
	out = binary.AppendUvarint(out, uint64(w.deltas))
	return append(out, w.buf...)
}

func appendBinaryString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

func appendBinaryQuantity(b []byte, q quantity) []byte {
	if q.isInt {
		return binary.BigEndian.AppendUint64(append(b, 'i'), uint64(q.i))
	}
	return binary.BigEndian.AppendUint64(append(b, 'd'), math.Float64bits(q.f))
}

type decodedEntry struct {
	at     int64
	ids    []uuid.UUID
	deltas []delta
}

var errBadEntry = errors.New("not an aggregation entry")

// entryReader reads an entry's fields in order; the first problem sticks.
type entryReader struct {
	data []byte
	err  error
}

func (r *entryReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.data)
	if n <= 0 {
		r.err, r.data = errBadEntry, nil
		return 0
	}
	r.data = r.data[n:]
	return v
}

func (r *entryReader) varint() int64 {
	v, n := binary.Varint(r.data)
	if n <= 0 {
		r.err, r.data = errBadEntry, nil
		return 0
	}
	r.data = r.data[n:]
	return v
}

func (r *entryReader) take(n uint64) []byte {
	if uint64(len(r.data)) < n {
		r.err, r.data = errBadEntry, nil
		return make([]byte, n)
	}
	out := r.data[:n]
	r.data = r.data[n:]
	return out
}

func (r *entryReader) string() string { return string(r.take(r.uvarint())) }

func (r *entryReader) uint64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }

func decodeEntry(data []byte) (decodedEntry, error) {
	r := &entryReader{data: data}
	if version := r.take(1)[0]; version != entryVersion {
		return decodedEntry{}, errBadEntry
	}
	e := decodedEntry{at: r.varint()}
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		e.ids = append(e.ids, uuid.UUID(r.take(16)))
	}
	for n := r.uvarint(); n > 0 && r.err == nil; n-- {
		d := delta{window: r.varint(), point: event{licenseID: r.string(), unit: r.string()}}
		for a := r.uvarint(); a > 0 && r.err == nil; a-- {
			key, kind := r.string(), valueKind(r.take(1)[0])
			v := attrValue{kind: kind}
			if kind == kindStr {
				v.str = r.string()
			} else {
				v.bits = r.uint64()
			}
			d.point.attribution = append(d.point.attribution, attr{key, v})
		}
		d.point.metric = r.string()
		switch kind := r.take(1)[0]; kind {
		case 'i':
			d.point.quantity = quantity{isInt: true, i: int64(r.uint64())}
		case 'd':
			d.point.quantity = quantity{f: math.Float64frombits(r.uint64())}
		default:
			r.err = errBadEntry
		}
		e.deltas = append(e.deltas, d)
	}
	if r.err != nil || len(r.data) > 0 {
		return decodedEntry{}, errBadEntry
	}
	return e, nil
}
