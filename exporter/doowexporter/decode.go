package doowexporter

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"
)

// decodeEvent reads an event as POST /telemetry/events takes it (as appendTo writes it):
// the sealed windows' events come back this way from their queue. Numbers written with a
// fraction or an exponent are doubles, others integers, as the encoder writes them.
func decodeEvent(data []byte) (event, error) {
	var w struct {
		EventID         string                     `json:"event_id"`
		LicenseID       string                     `json:"license_id"`
		OccurredAt      string                     `json:"occurred_at"`
		SourceSystem    string                     `json:"source_system"`
		Kind            string                     `json:"kind"`
		Unit            string                     `json:"unit"`
		Attribution     map[string]any             `json:"attribution"`
		Metadata        map[string]any             `json:"metadata"`
		MetricTupleHint map[string]json.RawMessage `json:"metric_tuple_hint"`
		Measurements    []struct {
			MetricName string      `json:"metric_name"`
			Quantity   json.Number `json:"quantity"`
		} `json:"measurements"`
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	if err := decoder.Decode(&w); err != nil {
		return event{}, err
	}
	if len(w.Metadata) > 0 || len(w.MetricTupleHint) > 0 || len(w.Measurements) == 0 {
		return event{}, errors.New("not an event of usage: metadata, a hint or no measurement")
	}
	at, err := time.Parse(time.RFC3339Nano, w.OccurredAt)
	if err != nil {
		return event{}, err
	}
	e := event{eventID: w.EventID, licenseID: w.LicenseID, nanos: uint64(at.UnixNano()), unit: w.Unit,
		adjustment: w.Kind == "ADJUSTMENT"}
	if w.SourceSystem != "sdk" {
		e.sourceSystem = w.SourceSystem
	}
	for i, m := range w.Measurements {
		q, err := numberQuantity(m.Quantity)
		if err != nil {
			return event{}, err
		}
		if i == 0 {
			e.metric, e.quantity = m.MetricName, q
		} else {
			e.more = append(e.more, measurement{m.MetricName, q})
		}
	}
	for key, value := range w.Attribution {
		var v attrValue
		switch x := value.(type) {
		case string:
			v = strValue(x)
		case bool:
			v = boolValue(x)
		case json.Number:
			q, err := numberQuantity(x)
			if err != nil {
				return event{}, err
			}
			if q.isInt {
				v = intValue(q.i)
			} else {
				v = doubleValue(q.f)
			}
		default:
			return event{}, errors.New("attribution " + key + ": not a string, number or boolean")
		}
		e.attribution = append(e.attribution, attr{key, v})
	}
	slices.SortFunc(e.attribution, byKey)
	return e, nil
}

func numberQuantity(n json.Number) (quantity, error) {
	if !strings.ContainsAny(string(n), ".eE") {
		i, err := n.Int64()
		return quantity{isInt: true, i: i}, err
	}
	f, err := n.Float64()
	return quantity{f: f}, err
}
