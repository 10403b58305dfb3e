package doowexporter

import (
	"github.com/google/uuid"
)

// Rule R of docs/conversion.md: a 207 that rejects one measurement of a packed event
// rejects that measurement only; the event's other measurements go again, as a new
// event whose id derives from the rejected event's id and the metric.

var nsRepacked = uuid.MustParse("8e2d4a17-5c3b-4f96-a0d8-1b7e6c9f2a54")

// repackRejected returns the events to send again for rejections that name a metric
// of a sent event with other measurements, and marks what each rejection refused: a
// rejection of one measurement keeps its metric (and says its quantity); one of a whole
// event names no metric (a metric the event does not have, or its only one).
func repackRejected(sent []event, rejected []rejection) []event {
	byID := make(map[string]*event, len(sent))
	for i := range sent {
		byID[sent[i].eventID] = &sent[i]
	}
	var again []event
	for i := range rejected {
		r := &rejected[i]
		e := byID[r.EventID]
		if e == nil {
			continue
		}
		if r.Metric == "" || len(e.more) == 0 || !e.hasMetric(r.Metric) {
			r.Metric, r.refused = "", e.measurementsText("")
			continue
		}
		r.refused = e.measurementsText(r.Metric)
		again = append(again, e.without(r.Metric))
	}
	return again
}

// measurementsText lists the event's measurements (only metric's, when given) as
// metric=quantity, for the report of a rejection.
func (e *event) measurementsText(metric string) string {
	var text []byte
	for _, m := range append([]measurement{{e.metric, e.quantity}}, e.more...) {
		if metric == "" || m.metric == metric {
			if len(text) > 0 {
				text = append(text, ' ')
			}
			text = appendQuantity(append(append(text, m.metric...), '='), m.quantity)
		}
	}
	return string(text)
}

func (e *event) hasMetric(metric string) bool {
	if e.metric == metric {
		return true
	}
	for _, m := range e.more {
		if m.metric == metric {
			return true
		}
	}
	return false
}

// without is the event without the measurement of metric, under the id rule R gives it.
func (e *event) without(metric string) event {
	out := *e
	out.eventID = uuid.NewSHA1(nsRepacked, appendEncStr(appendEncStr(nil, e.eventID), metric)).String()
	kept := make([]measurement, 0, len(e.more))
	for _, m := range append([]measurement{{e.metric, e.quantity}}, e.more...) {
		if m.metric != metric {
			kept = append(kept, m)
		}
	}
	out.metric, out.quantity, out.more = kept[0].metric, kept[0].quantity, kept[1:]
	if len(out.more) == 0 {
		out.more = nil
	}
	return out
}
